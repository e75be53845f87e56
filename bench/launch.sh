#!/bin/sh
# bench/launch.sh: cold start of `slmprobe serve`, launch to "Application startup complete.",
# for several binaries (or flag sets) side by side: each round runs every variant once, in turn,
# so load on a shared machine hits them alike; prints each time and the median per variant, and
# keeps the last log of each under bench/out/launch.<i>.log. The model is read once first so
# its pages are in the page cache (this measures start-up work, not the disk).
#   bench/launch.sh MODEL ROUNDS "BIN [FLAGS]" ["BIN [FLAGS]" ...]
# e.g. bench/launch.sh /tmp/small.gguf 3 "/tmp/slmprobe.before" "./slmprobe" "./slmprobe --warmup shapes"
set -e
model=$1 rounds=$2
shift 2
[ -f "$model" ] && [ "$rounds" -ge 1 ] && [ $# -ge 1 ] || {
    sed -n '2,8p' "$0" >&2
    exit 2
}
mkdir -p bench/out
cat "$model" > /dev/null
rm -f bench/out/launch.times
now() { date +%s.%N; }
r=1
while [ "$r" -le "$rounds" ]; do
    i=1
    for v in "$@"; do
        log=bench/out/launch.$i.log
        t0=$(now)
        # shellcheck disable=SC2086 # "BIN FLAGS" is split on purpose
        $v serve --model "$model" --port 0 2> "$log" &
        pid=$!
        until grep -q "Application startup complete." "$log" 2>/dev/null; do
            kill -0 "$pid" 2>/dev/null || { echo "launch: '$v' exited before ready" >&2; cat "$log" >&2; exit 1; }
            sleep 0.02
        done
        t1=$(now)
        kill -TERM "$pid"
        wait "$pid" || true
        echo "$i $(echo "$t1 - $t0" | bc)" >> bench/out/launch.times
        printf 'round %d  variant %d  %6.2f s  (%s)\n' "$r" "$i" "$(echo "$t1 - $t0" | bc)" "$v"
        i=$((i + 1))
    done
    r=$((r + 1))
done
i=1
for v in "$@"; do
    med=$(awk -v i="$i" '$1 == i {print $2}' bench/out/launch.times | sort -n |
          awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
    printf 'median  variant %d  %6.2f s  (%s)\n' "$i" "$med" "$v"
    i=$((i + 1))
done
rm -f bench/out/launch.times
