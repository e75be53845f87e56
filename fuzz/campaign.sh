#!/bin/bash
# campaign.sh: runs every libFuzzer target of a fuzz pack (make fuzz-pack) for an exact number of
# executions, spread over parallel workers, and prints a Markdown table of the results.
#
#   bash campaign.sh [-n RUNS] [-j WORKERS] [-W TARGET=WORKERS]... [-p TARGETS_AT_ONCE]
#                    [-T MAX_SECONDS] [-o OUTDIR] [-d PACK_DIR] [TARGET...]
#
# Each target gets WORKERS processes of its binary (-W gives one target another count, e.g. more
# for the slowest), worker i with -runs=RUNS/WORKERS (the first
# RUNS%WORKERS workers one more, so the counts add up to RUNS exactly), -seed=i+1, a corpus
# directory the workers share (libFuzzer reloads it, so they see each other's finds) seeded from
# the pack's seeds/TARGET, and -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=2048, the target's
# -max_len from targets.txt and -print_final_stats=1. TARGETS_AT_ONCE targets run side by side
# (targets.txt lists the slowest first; the next target starts as soon as one ends). -T gives
# every worker -max_total_time (0: none), so a run can be bounded in time; a target stopped by
# it is reported short, not passed.
#
# The executions column sums stat::number_of_executed_units over the workers (at least RUNS: a
# worker also counts the inputs it reloads from the shared corpus); exec/s is that sum over the
# target's wall time (all workers together); cov and ft are the highest any worker
# printed on its last status line (the workers share a corpus, so the union is at least that);
# peak RSS is the largest worker's. Any crash, leak, timeout, OOM or other libFuzzer failure
# (non-zero worker exit or an artifact file) marks the target FAILED; its artifacts stay in
# OUTDIR/TARGET/artifacts/ and the command exits 1. Exit 2 when a target ran short of RUNS
# under -T, 0 when every target ran RUNS executions cleanly. The table goes to stdout and to
# OUTDIR/table.md; worker logs are OUTDIR/TARGET/w*.log.
set -u

runs=10000000
workers=8
at_once=2
max_s=0
out=campaign-out
pack=$(cd "$(dirname "$0")" && pwd)

usage() {
    sed -n '5,6p' "$0" | sed 's/^# *//' >&2
    exit 64
}

per_target_workers=
while getopts n:j:W:p:T:o:d:h opt; do
    case $opt in
    n) runs=$OPTARG ;;
    j) workers=$OPTARG ;;
    W) case $OPTARG in
       *=[1-9]*) per_target_workers="$per_target_workers $OPTARG" ;;
       *) echo "campaign: -W wants TARGET=WORKERS, got '$OPTARG'" >&2; exit 64 ;;
       esac ;;
    p) at_once=$OPTARG ;;
    T) max_s=$OPTARG ;;
    o) out=$OPTARG ;;
    d) pack=$OPTARG ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))

for v in "$runs" "$workers" "$at_once" "$max_s"; do
    case $v in '' | *[!0-9]*) echo "campaign: not a number: '$v'" >&2; exit 64 ;; esac
done
[ "$workers" -ge 1 ] && [ "$at_once" -ge 1 ] && [ "$runs" -ge "$workers" ] ||
    { echo "campaign: need WORKERS >= 1, TARGETS_AT_ONCE >= 1, RUNS >= WORKERS" >&2; exit 64; }
[ -f "$pack/targets.txt" ] || { echo "campaign: no $pack/targets.txt (see make fuzz-pack)" >&2; exit 66; }
if [ -d "$pack/lib" ]; then
    LD_LIBRARY_PATH="$pack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
fi
mkdir -p "$out" || exit 73
out=$(cd "$out" && pwd)

# targets.txt: "NAME MAX_LEN" per line, slowest first
if [ $# -gt 0 ]; then
    names=$*
else
    names=$(awk 'NF >= 2 && $1 !~ /^#/ {print $1}' "$pack/targets.txt")
fi

now_ms() { date +%s%3N; }

# run_target NAME: runs the workers, waits for them, writes OUTDIR/NAME/result
run_target() {
    t=$1
    len=$(awk -v t="$t" '$1 == t {print $2}' "$pack/targets.txt")
    bin=$pack/bin/fuzz_$t
    dir=$out/$t
    rm -rf "$dir"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    if [ -z "$len" ] || [ ! -x "$bin" ]; then
        echo "missing" >"$dir/result"
        return
    fi
    seeds=$pack/seeds/$t
    local workers=$workers
    for tw in $per_target_workers; do
        [ "${tw%%=*}" = "$t" ] && workers=${tw#*=}
    done
    echo "$workers" >"$dir/workers"
    per=$((runs / workers))
    extra=$((runs % workers))
    t0=$(now_ms)
    pids=
    i=0
    while [ $i -lt "$workers" ]; do
        n=$per
        [ $i -lt $extra ] && n=$((n + 1))
        "$bin" -runs=$n -seed=$((i + 1)) -max_len="$len" -timeout=1 -rss_limit_mb=2048 \
            -malloc_limit_mb=2048 -max_total_time="$max_s" -print_final_stats=1 \
            -artifact_prefix="$dir/artifacts/w$i-" "$dir/corpus" "$seeds" >"$dir/w$i.log" 2>&1 &
        pids="$pids $!"
        i=$((i + 1))
    done
    bad=0
    for p in $pids; do
        wait "$p" || bad=$((bad + 1))
    done
    t1=$(now_ms)
    echo "$bad $((t1 - t0))" >"$dir/status"
}

# Runs the targets in list order, TARGETS_AT_ONCE at a time: the next starts when one ends.
set -- $names
running=0
t_all0=$(now_ms)
for t in "$@"; do
    if [ $running -ge "$at_once" ]; then
        wait -n
        running=$((running - 1))
    fi
    echo "campaign: $t ($runs runs)" >&2
    run_target "$t" &
    running=$((running + 1))
done
wait
t_all1=$(now_ms)

table=$out/table.md
rc=0
{
    echo "| target | workers | executions | exec/s | cov | ft | peak RSS MiB | crashes | result |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    for t in "$@"; do
        dir=$out/$t
        if [ ! -f "$dir/status" ]; then
            echo "| $t | 0 | 0 | 0 | - | - | - | - | MISSING (no binary or no targets.txt line) |"
            rc=1
            continue
        fi
        read -r bad wall_ms <"$dir/status"
        execs=$(cat "$dir"/w*.log | awk '/^stat::number_of_executed_units:/ {s += $2} END {print s + 0}')
        rss=$(cat "$dir"/w*.log | awk '/^stat::peak_rss_mb:/ {if ($2 > m) m = $2} END {print m + 0}')
        cov=0
        ft=0
        for f in "$dir"/w*.log; do
            last=$(grep -E '^#[0-9]+' "$f" | tail -n 1)
            c=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
            f2=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
            [ -n "$c" ] && [ "$c" -gt "$cov" ] && cov=$c
            [ -n "$f2" ] && [ "$f2" -gt "$ft" ] && ft=$f2
        done
        n_art=$(find "$dir/artifacts" -type f ! -name 'slow-unit-*' | wc -l)
        eps=$(awk -v e="$execs" -v ms="$wall_ms" 'BEGIN {printf "%d", (ms > 0 ? e * 1000 / ms : 0)}')
        if [ "$bad" -gt 0 ] || [ "$n_art" -gt 0 ]; then
            kinds=$(find "$dir/artifacts" -type f ! -name 'slow-unit-*' -exec basename {} \; |
                sed 's/^w[0-9]*-//; s/-.*//' | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
            res="FAILED: $bad worker(s) non-zero${kinds:+, $kinds}; artifacts in $t/artifacts/"
            rc=1
        elif [ "$execs" -lt "$runs" ] && [ "$max_s" -eq 0 ]; then
            res="FAILED: workers ended short of $runs runs without an artifact; see $t/w*.log"
            rc=1
        elif [ "$execs" -lt "$runs" ]; then
            res="SHORT of $runs (stopped by -T $max_s s)"
            [ $rc -eq 0 ] && rc=2
        else
            res="ok, $(awk -v ms="$wall_ms" 'BEGIN {printf "%.0f", ms / 1000}') s"
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$(cat "$dir/workers")" \
            "$execs" "$eps" "$cov" "$ft" "$rss" "$n_art" "$res"
    done
    echo
    echo "$runs runs per target, $at_once targets at a time, $(nproc) CPUs;" \
        "wall $(awk -v ms="$((t_all1 - t_all0))" 'BEGIN {printf "%.0f", ms / 1000}') s in all."
} >"$table"
cat "$table"
if [ $rc -eq 1 ]; then
    echo "campaign: FAILED: see the result column; artifacts and logs are kept in $out" >&2
fi
exit $rc
