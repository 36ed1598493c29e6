#!/usr/bin/env bash
# Fuzzes the balancer's parsers with libFuzzer: builds the targets of Fuzz/ (a package of its own)
# with AddressSanitizer and coverage, then runs each for N seconds from its seed corpus.
#
#   scripts/fuzz.sh [--seconds N] [--no-build] [TARGET ...]
#
# TARGET is one of the folders of Fuzz/corpus (every one when none is named). Exits 0 when
# nothing crashed; a crash leaves its input in Fuzz/.build/crashes/TARGET/ and the line to
# reproduce it is printed. What the runs found besides the seeds stays in Fuzz/.build/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "$0"
    exit "${1:-0}"
}

seconds=60
build=1
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds)
            [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || {
                echo "fuzz.sh: --seconds needs a positive whole number" >&2
                exit 2
            }
            seconds=$2
            shift 2
            ;;
        --no-build) build=0; shift ;;
        -h | --help) usage 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; usage 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

known=$(cd Fuzz/corpus && ls -d -- */ | tr -d /)
if [ ${#targets[@]} -eq 0 ]; then
    read -r -a targets <<<"$(echo $known)"
fi
for target in "${targets[@]}"; do
    grep -qx -- "$target" <<<"$known" || {
        echo "fuzz.sh: no fuzz target '$target' (targets: $(echo $known))" >&2
        exit 2
    }
done

# libFuzzer's driver without its main (SwiftPM gives each executable a main of its own), from the
# clang runtime of the Swift toolchain that builds.
swift_bin=$(dirname "$(readlink -f "$(command -v swift)")")
runtime=$(ls -d "$swift_bin"/../lib/clang/*/lib/linux 2>/dev/null | head -n 1)
driver="$runtime/libclang_rt.fuzzer_no_main-$(uname -m).a"
[ -f "$driver" ] || {
    echo "fuzz.sh: no libFuzzer in this Swift toolchain (looked for $driver)" >&2
    exit 1
}

scratch=Fuzz/.build
if [ $build -eq 1 ]; then
    started=$SECONDS
    # Coverage for libFuzzer through the frontend only, so the link does not pull in libFuzzer's main.
    set +e
    swift build --package-path Fuzz --scratch-path "$scratch" --sanitize address \
        -Xswiftc -Xfrontend -Xswiftc -sanitize=fuzzer \
        -Xlinker "$driver" -Xlinker -lstdc++ 2>&1 | grep --line-buffered -v "warning: Cannot export local symbol '__asan_"
    built=${PIPESTATUS[0]}
    set -e
    [ "$built" -eq 0 ] || { echo "fuzz.sh: the fuzz build failed" >&2; exit 1; }
    echo "fuzz.sh: built in $((SECONDS - started)) s"
fi
binaries=$(swift build --package-path Fuzz --scratch-path "$scratch" --show-bin-path)

# libFuzzer's own crash report, not Swift's backtracer (which waits on a crashed fuzzer); temp
# files (the config target's empty folder) inside the scratch folder.
export SWIFT_BACKTRACE=enable=no
export TMPDIR="$PWD/$scratch/tmp"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
mkdir -p "$TMPDIR"

failed=()
printf '%-18s %12s %10s  %s\n' target executions exec/s result
for target in "${targets[@]}"; do
    binary="$binaries/$target"
    [ -x "$binary" ] || { echo "fuzz.sh: $binary is missing: build first (without --no-build)" >&2; exit 1; }
    work="$scratch/corpus/$target"
    crashes="$scratch/crashes/$target"
    log="$scratch/logs/$target.log"
    mkdir -p "$work" "$crashes" "$(dirname "$log")"
    options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$crashes/")
    [ -f "Fuzz/dict/$target.dict" ] && options+=(-dict="Fuzz/dict/$target.dict")
    status=0
    # New inputs go to the scratch corpus; the checked-in seeds stay as they are.
    "$binary" "${options[@]}" "$work" "Fuzz/corpus/$target" >"$log" 2>&1 || status=$?
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    if [ $status -eq 0 ]; then
        result=clean
    else
        result="CRASHED (exit $status)"
        failed+=("$target")
    fi
    printf '%-18s %12s %10s  %s\n' "$target" "${executions:-?}" "${rate:-?}" "$result"
    if [ $status -ne 0 ]; then
        grep -E "invariant broken|Fatal error|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY" "$log" | head -n 5 | cut -c1-400 | sed 's/^/    /'
        for artifact in $(sed -n "s/.*Test unit written to //p" "$log"); do
            echo "    input: $artifact (reproduce: SWIFT_BACKTRACE=enable=no $binary $artifact)"
        done
        echo "    log: $log"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${seconds} s each, nothing crashed"
