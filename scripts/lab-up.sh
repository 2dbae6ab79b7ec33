#!/usr/bin/env bash
# Bring the whole lab up: host dependencies, the local registry, the image
# matrix, and the published images + artifacts.  Idempotent: a second run
# rebuilds nothing, pushes nothing, and only verifies.
#
#   scripts/lab-up.sh            (as root, from anywhere)
#   PYTHON=/path/to/python scripts/lab-up.sh
#
# Steps: scripts/install-deps.sh (skipped when its tools are present),
# scripts/registry.sh start, python -m harness.lab.build,
# python -m harness.lab.publish (push what the registry lacks, verify all).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON="${PYTHON:-.venv/bin/python}"

say() { printf '[lab-up] %s\n' "$*"; }

if [[ ! -x "$PYTHON" ]] && ! command -v "$PYTHON" >/dev/null; then
    echo "no Python at $PYTHON: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'" >&2
    exit 1
fi

need_deps=0
for tool in debootstrap mpirun mpiexec.mpich patchelf docker-registry unsquashfs openssl curl apptainer singularity; do
    command -v "$tool" >/dev/null || need_deps=1
done
if ((need_deps)) || [[ "$(apptainer version 2>/dev/null)" != "1.4.5" ]]; then
    say "installing host dependencies"
    "$ROOT/scripts/install-deps.sh"
else
    say "host dependencies present (apptainer $(apptainer version))"
fi

"$ROOT/scripts/registry.sh" start

t0=$(date +%s)
say "building the image matrix"
"$PYTHON" -m harness.lab.build
say "build step: $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
say "publishing and verifying"
REQUESTS_CA_BUNDLE="${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" \
    "$PYTHON" -m harness.lab.publish
say "publish step: $(( $(date +%s) - t0 )) s"
say "lab is up: containers/lab/manifests.yaml"
