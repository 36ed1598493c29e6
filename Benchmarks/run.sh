#!/usr/bin/env bash
# ums-balancer vs HAProxy 2.6 on loopback, in one command:
#   Benchmarks/run.sh [--quick] [--rounds N] [--skip-build] [other bench.py options, see --help]
# Installs haproxy, wrk, iperf3, nginx and openssl from Debian's packages when missing, builds
# ums-balancer in release mode into .build-bench, then runs Benchmarks/bench.py.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
skip_build=0
pass=()
for arg in "$@"; do
    case "$arg" in
        --skip-build) skip_build=1 ;;
        -h|--help)
            sed -n '2,5p' "$0"
            exec python3 "$here/bench.py" --binary /dev/null --help ;;
        *) pass+=("$arg") ;;
    esac
done

sudo=()
if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi

missing=()
for tool in haproxy wrk iperf3 nginx taskset python3 openssl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        case "$tool" in
            taskset) missing+=(util-linux) ;;
            *) missing+=("$tool") ;;
        esac
    fi
done
# The floor relays (--only ...,floor) are C, built with io_uring's library.
case " ${pass[*]-} " in
    *floor*)
        command -v cc >/dev/null 2>&1 || missing+=(gcc)
        [ -e /usr/include/liburing.h ] || missing+=(liburing-dev) ;;
esac
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${missing[@]}"
fi
haproxy_version=$(haproxy -v)
haproxy_version=${haproxy_version%%$'\n'*}
echo "$haproxy_version"
case "$haproxy_version" in
    *"version 2.6."*) ;;
    *) echo "note: the comparison is specified against HAProxy 2.6; this one differs" >&2 ;;
esac

binary="$root/.build-bench/release/ums-balancer"
if [ "$skip_build" = 0 ] || [ ! -x "$binary" ]; then
    echo "building ums-balancer (release, scratch path .build-bench); the first build takes several minutes"
    (cd "$root" && swift build -c release --product ums-balancer --scratch-path .build-bench)
    # What the binary was built from, for the results (the tree may move on while it runs).
    {
        git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown
        git -C "$root" status --porcelain -- Sources Package.swift 2>/dev/null | wc -l
        date -u +%Y-%m-%dT%H:%M:%SZ
    } > "$root/.build-bench/bench-build-info"
fi

exec python3 "$here/bench.py" --binary "$binary" "${pass[@]+"${pass[@]}"}"
