#!/bin/sh
# make run: generates the default model if missing, then runs every probe that exists against
# the embedded reference runtime (`slmprobe serve`, launched and stopped by each probe).
# Results go under results/ (Markdown, HTML, CSV, JSON, per-request JSONL).
set -e
cd "$(dirname "$0")/.."
BIN=./slmprobe
# The same per-user default model the probes use (src/run/model_default.h).
MODEL=${MODEL:-${SLMPROBE_MODEL:-${XDG_DATA_HOME:-$HOME/.local/share}/slmprobe/models/default.gguf}}
PRESET=${PRESET:-small}
OUT=${OUT:-results}
mkdir -p models "$OUT"
if [ ! -f "$MODEL" ]; then
    echo "run: generating the default model ($PRESET) at $MODEL" >&2
    $BIN model init --preset "$PRESET" -o "$MODEL" --seed 0
fi
$BIN model info "$MODEL"
# Keep the simulated device small enough for a laptop; every probe passes the same server flags.
SERVER_FLAGS="--device-memory 3GiB --max-model-len 2048"
# 1. The embedded server itself: start it, stream a few completions with curl, stop it.
PORT=${PORT:-18000}
echo "run: starting slmprobe serve on 127.0.0.1:$PORT" >&2
$BIN serve --model "$MODEL" --port "$PORT" $SERVER_FLAGS 2> "$OUT/serve.log" &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null; wait $SERVE_PID 2>/dev/null' EXIT INT TERM
i=0
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 $SERVE_PID 2>/dev/null; then
        echo "run: server did not become ready; log:" >&2; tail -20 "$OUT/serve.log" >&2; exit 1
    fi
    sleep 0.2
done
grep -E "took|KV cache size|Maximum concurrency|startup complete" "$OUT/serve.log" >&2 || true
for prompt in "The capital of France is" "Once upon a time" "SELECT * FROM"; do
    echo "--- prompt: $prompt" >&2
    curl -sN "http://127.0.0.1:$PORT/v1/completions" -H 'Content-Type: application/json' \
        -d "{\"prompt\": \"$prompt\", \"max_tokens\": 16, \"temperature\": 0, \"stream\": true, \"stream_options\": {\"include_usage\": true}}" \
        -w '\n[time to first byte %{time_starttransfer}s, total %{time_total}s]\n'
done
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^vllm:(prompt_tokens_total|generation_tokens_total|kv_cache_usage_perc|time_to_first_token_seconds_count)' || true
kill -TERM $SERVE_PID; wait $SERVE_PID || true
trap - EXIT INT TERM

if $BIN help | grep -q '^  ttft '; then
    echo "run: Tier 1: cold vs warm TTFT" >&2
    $BIN ttft --model "$MODEL" --out "$OUT/ttft" --warm-runs 5 -- $SERVER_FLAGS
fi
if $BIN help | grep -q '^  batch '; then
    echo "run: Tier 3B: batching sweep" >&2
    $BIN batch --model "$MODEL" --out "$OUT/batch" --concurrency 1,2,4,8,16 --rounds 2 \
        --num-requests 8 --input-len 128 --output-len 32 --repeat 1 -- $SERVER_FLAGS
fi
echo "run: results under $OUT/" >&2
ls -R "$OUT" | head -40
