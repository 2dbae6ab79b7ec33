#!/usr/bin/env bash
# A local OCI registry over TLS on 127.0.0.1:443 for the lab.
#
#   scripts/registry.sh start|stop|status
#
# start  creates (once) a CA and a server certificate for IP:127.0.0.1 under
#        $STATE/pki, installs the CA into the system store
#        (update-ca-certificates), writes the docker-registry configuration
#        and starts `docker-registry serve` in the background (pid file and log
#        under $STATE); waits until https://127.0.0.1/v2/ answers.
#        A running registry is left alone.
# stop   stops the registry of the pid file.
# status prints whether it runs and answers.
#
# Image references are then 127.0.0.1/lab/lammps-matrix:TAG (no port).
set -euo pipefail

STATE="${COMPAT_HARNESS_STATE:-/var/lib/compat-harness}"
PKI="$STATE/pki"
DATA="$STATE/registry"
CONFIG="$STATE/registry-config.yml"
PIDFILE="$STATE/registry.pid"
LOG="$STATE/registry.log"
ADDR="127.0.0.1:443"
URL="https://127.0.0.1/v2/"
CA_NAME="compat-harness-lab-ca"
SYSTEM_CA="/usr/local/share/ca-certificates/$CA_NAME.crt"

say() { printf '[registry] %s\n' "$*"; }

running_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid=$(cat "$PIDFILE")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Only our registry: the pid's command line must be docker-registry serve.
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'docker-registry serve' || return 1
    echo "$pid"
}

answers() { curl -fsS --max-time 3 -o /dev/null "$URL" 2>/dev/null; }

make_pki() {
    mkdir -p "$PKI"
    chmod 700 "$PKI"
    if [[ ! -f "$PKI/ca.key" || ! -f "$PKI/ca.crt" ]]; then
        say "creating the lab CA in $PKI"
        openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 \
            -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
            -subj "/CN=compat-harness lab CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    fi
    if [[ ! -f "$PKI/server.crt" || ! -f "$PKI/server.key" ]] ||
       ! openssl verify -CAfile "$PKI/ca.crt" "$PKI/server.crt" >/dev/null 2>&1; then
        say "creating the server certificate (SAN IP:127.0.0.1)"
        printf '%s\n' \
            "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:127.0.0.1" > "$PKI/server.ext"
        openssl req -newkey rsa:2048 -nodes -sha256 \
            -keyout "$PKI/server.key" -out "$PKI/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
        openssl x509 -req -sha256 -days 825 -in "$PKI/server.csr" \
            -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
            -extfile "$PKI/server.ext" -out "$PKI/server.crt" 2>/dev/null
        rm -f "$PKI/server.csr"
    fi
    if ! cmp -s "$PKI/ca.crt" "$SYSTEM_CA"; then
        say "installing the CA into the system store ($SYSTEM_CA)"
        install -m 0644 "$PKI/ca.crt" "$SYSTEM_CA"
        update-ca-certificates >/dev/null
    fi
}

write_config() {
    mkdir -p "$DATA"
    local tmp="$CONFIG.tmp"
    cat > "$tmp" <<EOF
# written by scripts/registry.sh
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $DATA
  delete:
    enabled: true
http:
  addr: $ADDR
  tls:
    certificate: $PKI/server.crt
    key: $PKI/server.key
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    if cmp -s "$tmp" "$CONFIG"; then rm -f "$tmp"; else mv "$tmp" "$CONFIG"; fi
}

start() {
    local pid
    if pid=$(running_pid); then
        if answers; then
            say "already running (pid $pid): $URL"
            return 0
        fi
        say "pid $pid does not answer yet"
    else
        mkdir -p "$STATE"
        make_pki
        write_config
        command -v docker-registry >/dev/null || { echo "docker-registry missing: run scripts/install-deps.sh" >&2; exit 1; }
        say "starting docker-registry serve $CONFIG (log $LOG)"
        setsid docker-registry serve "$CONFIG" >>"$LOG" 2>&1 < /dev/null &
        echo $! > "$PIDFILE"
    fi
    for _ in $(seq 1 60); do
        if answers; then
            say "running (pid $(cat "$PIDFILE")): $URL"
            return 0
        fi
        if ! running_pid >/dev/null; then
            echo "docker-registry exited; last lines of $LOG:" >&2
            tail -n 20 "$LOG" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "docker-registry does not answer on $URL after 30 s; see $LOG" >&2
    exit 1
}

stop() {
    local pid
    if pid=$(running_pid); then
        say "stopping pid $pid"
        kill "$pid"
        for _ in $(seq 1 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
    else
        say "not running"
    fi
    rm -f "$PIDFILE"
}

status() {
    local pid
    if pid=$(running_pid); then
        if answers; then
            say "running (pid $pid), answers on $URL"
            return 0
        fi
        say "running (pid $pid) but $URL does not answer"
        return 1
    fi
    say "not running"
    return 3
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
