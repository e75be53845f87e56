#!/bin/sh
# make bench: runs every benchmark binary of the given build dir and collects the Markdown they
# print into bench/out/results.md, headed by the machine they ran on. BENCHMARKS.md quotes it.
set -e
build=${1:-obj}
mkdir -p bench/out
out=bench/out/results.md
{
    echo "# Benchmark run $(date -u +%Y-%m-%dT%H:%M:%SZ) ($(git describe --always --dirty 2>/dev/null))"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
    echo
} > "$out"
for b in "$build"/bench/bench_*; do
    [ -x "$b" ] || continue
    echo "bench: running $b" >&2
    "$b" >> "$out"
    echo >> "$out"
done
cat "$out"
