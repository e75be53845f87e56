#!/usr/bin/env bash
# The interactive preset derived from the day's measurements (DAY.md says what it rests on).
# Written by slmprobe lab 8c40dad.
set -euo pipefail
exec /work/main/slmprobe serve --model /tmp/gpuday/qwen2.5-1.5b-bf16.gguf --host 127.0.0.1 --port 8000 --max-model-len 2048 --enable-prompt-tokens-details --device cuda --max-num-seqs 4 --max-num-batched-tokens 512 --enable-chunked-prefill
