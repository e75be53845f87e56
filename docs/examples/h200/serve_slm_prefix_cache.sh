#!/usr/bin/env bash
# serve_slm_prefix_cache.sh: written by slmprobe prefix (--no-enable-prefix-caching vs --enable-prefix-caching, every other flag identical).
set -euo pipefail
exec /work/main/slmprobe serve --model /tmp/gpuday/qwen2.5-1.5b-bf16.gguf --host 127.0.0.1 --port 55243 --max-model-len 4096 --enable-prompt-tokens-details --enable-prefix-caching --device cuda "$@"
