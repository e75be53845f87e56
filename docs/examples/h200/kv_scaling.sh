#!/bin/sh
# The exact server launches of `slmprobe kv`, one per length.
# Usage: sh kv_scaling.sh LENGTH[@UTIL]   (each runs in the foreground)
case "$1" in
512)
    exec /work/main/slmprobe serve --model /tmp/gpuday/qwen2.5-1.5b-bf16.gguf --host 127.0.0.1 --port 51625 --max-model-len 512 --enable-prompt-tokens-details --device cuda
    ;;
1024)
    exec /work/main/slmprobe serve --model /tmp/gpuday/qwen2.5-1.5b-bf16.gguf --host 127.0.0.1 --port 48093 --max-model-len 1024 --enable-prompt-tokens-details --device cuda
    ;;
2048)
    exec /work/main/slmprobe serve --model /tmp/gpuday/qwen2.5-1.5b-bf16.gguf --host 127.0.0.1 --port 60613 --max-model-len 2048 --enable-prompt-tokens-details --device cuda
    ;;
*)
    echo "usage: $0 LENGTH (one of: 512 1024 2048)" >&2
    exit 2
    ;;
esac
