#!/usr/bin/env bash
# The server configuration every tier of the day ran against.
# Written by slmprobe lab 8c40dad.
set -euo pipefail
exec /work/main/slmprobe serve --model /tmp/gpuday/qwen2.5-1.5b-bf16.gguf --host 127.0.0.1 --port 8000 --max-model-len 4096 --enable-prompt-tokens-details --device cuda
