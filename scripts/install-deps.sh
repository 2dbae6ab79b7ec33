#!/usr/bin/env bash
# Install what the lab needs on a Debian 12 host (run as root; idempotent).
#
#   scripts/install-deps.sh
#
# 1. Debian packages from the machine's own apt sources.
# 2. Apptainer 1.4.5 from Debian sid, unpacked into a private prefix
#    (APPTAINER_PREFIX, default /opt/compat-harness/apptainer) together with
#    sid's libc6/libseccomp2/libsqlite3-0; the host's libc6 is never replaced.
#    The binaries are patched to use the prefix's loader and libraries.
# Each step is skipped when its result is already there.
set -euo pipefail

PREFIX="${APPTAINER_PREFIX:-/opt/compat-harness/apptainer}"
APPTAINER_VERSION="1.4.5"
WORK="${COMPAT_HARNESS_STATE:-/var/lib/compat-harness}/apptainer-sid"
LIBDIR="$PREFIX/usr/lib/x86_64-linux-gnu"
PACKAGES=(debootstrap openmpi-bin mpich patchelf docker-registry squashfs-tools
          openssl ca-certificates python3-venv curl file chromium)

say() { printf '[install-deps] %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps.sh must run as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# --- 1. Debian packages -----------------------------------------------------
# install_missing LABEL PACKAGE...: apt-get install what is not installed yet.
install_missing() {
    local label=$1
    shift
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]})); then
        say "apt-get update"
        apt-get update -q
        say "apt-get install ${missing[*]}"
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        say "$label already installed: $*"
    fi
}
install_missing "Debian packages" "${PACKAGES[@]}"

# --- 2. Apptainer from sid ----------------------------------------------------
have_version=""
if [[ -x "$PREFIX/usr/bin/apptainer" ]]; then
    have_version=$("$PREFIX/usr/bin/apptainer" version 2>/dev/null || true)
fi
if [[ "$have_version" == "$APPTAINER_VERSION" ]]; then
    say "Apptainer $have_version already in $PREFIX"
else
    # The mirror is the one the machine's own sources use.
    mirror=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
                 /etc/apt/sources.list.d/debian.sources)
    fi
    if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
        mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
                 /etc/apt/sources.list)
    fi
    if [[ -z "$mirror" ]]; then
        echo "cannot find the Debian mirror in the apt sources" >&2
        exit 1
    fi
    say "using Debian sid from $mirror"
    mkdir -p "$WORK/lists/partial" "$WORK/debs"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s sid main\n' "$mirror" \
        > "$WORK/sid.list"
    sid_opts=(-o "Dir::Etc::sourcelist=$WORK/sid.list" -o "Dir::Etc::sourceparts=-"
              -o "Dir::State::Lists=$WORK/lists")
    say "apt-get update (private sid configuration)"
    apt-get "${sid_opts[@]}" update -q
    say "apt-get download apptainer/sid libc6/sid libseccomp2/sid libsqlite3-0/sid"
    (cd "$WORK/debs" && rm -f ./*.deb &&
        apt-get "${sid_opts[@]}" download apptainer/sid libc6/sid libseccomp2/sid libsqlite3-0/sid)
    rm -rf "$PREFIX"
    mkdir -p "$PREFIX"
    for deb in "$WORK"/debs/*.deb; do
        say "dpkg -x $(basename "$deb") $PREFIX"
        dpkg -x "$deb" "$PREFIX"
    done
    for elf in "$PREFIX/usr/bin/apptainer" "$LIBDIR/apptainer/bin/starter"; do
        say "patchelf $elf"
        patchelf --set-interpreter "$LIBDIR/ld-linux-x86-64.so.2" \
                 --force-rpath --set-rpath "$LIBDIR" "$elf"
    done
    # Apptainer relocates itself from its binary's path and reads its
    # configuration from PREFIX/usr/etc and PREFIX/usr/lib/etc.
    for dest in "$PREFIX/usr/etc/apptainer" "$PREFIX/usr/lib/etc/apptainer"; do
        mkdir -p "$dest"
        cp -a "$PREFIX/etc/apptainer/." "$dest/"
    done
fi

mkdir -p "$PREFIX/usr/lib/var/lib/apptainer/mnt/session"

# The VM's bounding set lacks CAP_SYS_RESOURCE: take root's capabilities
# from the capability file instead of asking for all of them.
for conf in "$PREFIX/usr/etc/apptainer/apptainer.conf" "$PREFIX/usr/lib/etc/apptainer/apptainer.conf"; do
    if grep -q '^root default capabilities = file$' "$conf"; then
        say "$conf: root default capabilities = file (already)"
    else
        say "$conf: root default capabilities = file"
        sed -i 's/^root default capabilities = .*/root default capabilities = file/' "$conf"
        grep -q '^root default capabilities = file$' "$conf" ||
            echo 'root default capabilities = file' >> "$conf"
    fi
done

for name in apptainer singularity; do
    if [[ "$(readlink "/usr/local/bin/$name" 2>/dev/null)" != "$PREFIX/usr/bin/apptainer" ]]; then
        say "ln -sf $PREFIX/usr/bin/apptainer /usr/local/bin/$name"
        ln -sf "$PREFIX/usr/bin/apptainer" "/usr/local/bin/$name"
    fi
done

say "apptainer version: $(/usr/local/bin/apptainer version)"

# --- 3. Slurm (single-node scheduler for scripts/slurm.sh) -------------------
# slurmctld + slurmd + clients and munge from Debian 12 (Slurm 22.05.8).
# libpmix-dev provides pmix2/lib/libpmix.so, which Slurm's mpi/pmix plugin
# loads; without it `srun --mpi=pmix` says "Invalid MPI type 'pmix'".
# No daemon is started here: scripts/slurm.sh start does that.
SLURM_PACKAGES=(slurmctld slurmd slurm-client munge libpmix-dev)
install_missing "Slurm packages" "${SLURM_PACKAGES[@]}"
