#!/bin/sh
# make run: the whole day (`slmprobe lab --quick`) against the embedded reference runtime
# (`slmprobe serve`, launched and stopped by each tier), on the default model (generated on first
# use). Everything goes into one folder, results/ (override with OUT=...): DAY.md (the day's
# write-up), report.html (one page, every chart), lab.json, each tier's Markdown/HTML/CSV/JSON,
# per-request JSONL, the server logs and the launch scripts.
set -e
cd "$(dirname "$0")/.."
BIN=./slmprobe
# The same per-user default model the probes use (src/run/model_default.h).
MODEL=${MODEL:-${SLMPROBE_MODEL:-${XDG_DATA_HOME:-$HOME/.local/share}/slmprobe/models/default.gguf}}
PRESET=${PRESET:-small}
OUT=${OUT:-results}
mkdir -p "$OUT" "$(dirname "$MODEL")"
if [ ! -f "$MODEL" ]; then
    echo "run: generating the default model ($PRESET) at $MODEL" >&2
    $BIN model init --preset "$PRESET" -o "$MODEL" --seed 0
fi
$BIN model info "$MODEL"
# A simulated device small enough for a laptop; every tier passes the same server flags (the
# context length as the shared option, which Tier 3A sweeps).
SERVER_FLAGS="--device-memory 2GiB"
echo "run: slmprobe lab --quick (every tier; a few minutes on 2 cores)" >&2
start=$(date +%s)
rc=0
$BIN lab --quick --model "$MODEL" --max-model-len 2048 --out "$OUT" -- $SERVER_FLAGS || rc=$?
echo "run: lab finished in $(( $(date +%s) - start )) s (exit $rc); the write-up:" >&2
[ -f "$OUT/DAY.md" ] && sed -n '1,60p' "$OUT/DAY.md"
echo "run: results in $OUT/ (open $OUT/report.html in a browser)" >&2
exit $rc
