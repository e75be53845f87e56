#!/bin/bash
# The day on one H200, as it ran (docs/examples/h200/README.md): from the project's root on the GPU
# machine, with the carried Debian packages in .device/debs and a Qwen tokenizer.json (or .gz) in
# tok/.
# Build (make CUDA=1), the qwen2.5-1.5b model (bf16, the real Qwen vocabulary, random weights),
# a serve --device cuda smoke check (start-up log, one completion, GPU memory), then
# `slmprobe lab --quick` against `serve --device cuda` and a concurrency sweep 1..64 (batch 1 vs
# 64 concurrent).
# Everything lands in $OUT (day.log, the smoke log, nvidia-smi, env, day.tgz of results/).
# Every stage has a deadline so that the whole run ends inside DAY_BUDGET_S (default 570 s).
set -uo pipefail
OUTD=${OUT:-/tmp/day-out}
WORK=/tmp/gpuday
BUDGET=${DAY_BUDGET_S:-570}
mkdir -p "$OUTD" "$WORK"
t0=$(date +%s)
el() { echo $(( $(date +%s) - t0 )); }
say() { echo "[day +$(el)s] $*" | tee -a "$OUTD/day.log"; }
finish() {
    [ -d results ] && tar -czf "$OUTD/day.tgz" -C results .
    say "done (exit $1)"
    exit "$1"
}

# the environment of .device/build.sh (libraries unpacked into /tmp/sys)
sys=/tmp/sys
mkdir -p "$sys"
for f in .device/debs/*.deb; do dpkg -x "$f" "$sys"; done
ml=$sys/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_SYSROOT_DIR=$sys PKG_CONFIG_PATH=$ml/pkgconfig
export CPATH=$sys/usr/include:$sys/usr/include/x86_64-linux-gnu:$sys/usr/include/x86_64-linux-gnu/openblas-pthread
export LIBRARY_PATH=$ml:$ml/openblas-pthread
export LD_LIBRARY_PATH=$ml:$ml/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

say "build: make CUDA=1 -j$(nproc) slmprobe"
# the commit shipped (a copy without .git would describe the enclosing checkout instead)
VER=$(cat VERSION.txt 2>/dev/null || true)
srcsum=$(cat Makefile VERSION.txt $(find src -type f | sort) 2>/dev/null | sha1sum | cut -c1-16)
if [ -x "$WORK/slmprobe" ] && [ "$(cat "$WORK/src.sum" 2>/dev/null)" = "$srcsum" ]; then
    cp "$WORK/slmprobe" ./slmprobe && say "build: reused $WORK/slmprobe (same sources)"
else
    make CUDA=1 -j"$(nproc)" ${VER:+VERSION=$VER} slmprobe >"$WORK/build.log" 2>&1 || {
        tail -40 "$WORK/build.log" | tee -a "$OUTD/day.log"; finish 1; }
    cp slmprobe "$WORK/slmprobe" && echo "$srcsum" >"$WORK/src.sum"
fi
say "build: ok ($(./slmprobe --version 2>&1 | head -1))"
nvidia-smi >"$OUTD/nvidia-smi.txt" 2>&1
./slmprobe env >"$OUTD/env.txt" 2>&1

MODEL=$WORK/qwen2.5-1.5b-bf16.gguf
[ -f tok/tokenizer.json ] || gunzip -k tok/tokenizer.json.gz
if [ ! -f "$MODEL" ]; then
    say "model init: qwen2.5-1.5b bf16, Qwen vocabulary"
    ./slmprobe model init --preset qwen2.5-1.5b --dtype bf16 --tokenizer tok/tokenizer.json \
        -o "$MODEL" 2>&1 | tee -a "$OUTD/day.log" || finish 1
fi
./slmprobe model info "$MODEL" >>"$OUTD/day.log" 2>&1

say "smoke: serve --device cuda"
PORT=18123
./slmprobe serve --model "$MODEL" --device cuda --port $PORT --max-model-len 4096 \
    >"$OUTD/smoke_serve.log" 2>&1 &
spid=$!
python3 - "$PORT" "$spid" <<'PY' 2>&1 | tee -a "$OUTD/day.log"
import json, os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"
t0 = time.time()
while time.time() - t0 < 120:
    try:
        if urllib.request.urlopen(base + "/health", timeout=2).status == 200:
            break
    except Exception:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        print("smoke: the server exited during start-up"); sys.exit(1)
    time.sleep(0.2)
else:
    print("smoke: not ready after 120 s"); sys.exit(1)
print(f"smoke: ready after {time.time() - t0:.1f} s of polling")
for i in range(3):
    body = json.dumps({"model": "qwen2.5-1.5b-bf16", "prompt": "The capital of France is",
                       "max_tokens": 32, "temperature": 0, "ignore_eos": True}).encode()
    t = time.time()
    r = urllib.request.urlopen(urllib.request.Request(base + "/v1/completions", body,
                               {"Content-Type": "application/json"}), timeout=60)
    j = json.loads(r.read())
    print(f"smoke: request {i}: {time.time() - t:.3f} s, usage {j['usage']}, "
          f"text {j['choices'][0]['text'][:60]!r}")
m = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
print("smoke: " + " | ".join(l for l in m.splitlines()
                             if l.startswith(("vllm:generation_tokens_total", "vllm:num_gpu"))))
PY
smoke=$?
nvidia-smi --query-gpu=memory.used,memory.total,utilization.gpu --format=csv >>"$OUTD/day.log" 2>&1
kill -TERM $spid 2>/dev/null
wait $spid
say "smoke: serve exit $?, checks exit $smoke"
[ $smoke -eq 0 ] || finish 1

left=$(( BUDGET - $(el) - 110 ))
say "lab --quick against serve --device cuda (deadline ${left} s)"
timeout -s INT -k 20 "$left" ./slmprobe lab --quick --model "$MODEL" --max-model-len 4096 \
    --out results -- --device cuda >"$WORK/lab.log" 2>&1
say "lab: exit $?"
tail -5 "$WORK/lab.log" | tee -a "$OUTD/day.log"
cp "$WORK/lab.log" results/lab_console.log 2>/dev/null

left=$(( BUDGET - $(el) - 15 ))
if [ "$left" -ge 40 ]; then
    say "batch: concurrency 1 to 64 (deadline ${left} s)"
    timeout -s INT -k 10 "$left" ./slmprobe batch --model "$MODEL" --max-model-len 4096 \
        --modes sweep --concurrency 1,2,4,8,16,32,64 --rounds 2 --repeat 1 --output-len 64 \
        --out results/batch64 -- --device cuda >"$WORK/batch64.log" 2>&1
    say "batch: exit $?"
    cp "$WORK/batch64.log" results/batch64/console.log 2>/dev/null
else
    say "batch: skipped (only ${left} s left)"
fi
finish 0
