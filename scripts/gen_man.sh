#!/bin/sh
# gen_man.sh BIN OUT: writes the man page slmprobe.1 from the binary's own --help texts, so the
# page cannot drift from the program. help2man renders `BIN --help` (the command list) as the
# page's top; an include file generated here adds one section per command ("COMMAND ttft", ...)
# holding `BIN CMD --help` verbatim (and `BIN CMD SUB --help` for each listed subcommand).
# Needs help2man (scripts/deps.sh installs it). Does not install anything.
set -e
BIN=$1
OUT=$2
[ -n "$BIN" ] && [ -n "$OUT" ] || { echo "usage: gen_man.sh BIN OUT" >&2; exit 2; }
command -v help2man >/dev/null || { echo "gen_man: help2man missing (run scripts/deps.sh)" >&2; exit 1; }
INC=$OUT.h2m
# Literal text into roff: escape backslashes, protect leading dots and quotes.
roff_literal() {
    printf '.nf\n'
    sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
    printf '.fi\n'
}
commands=$("$BIN" help | sed -n 's/^  \([a-z][a-z0-9-]*\) .*/\1/p')
{
    printf '[ENVIRONMENT]\n'
    printf '.TP\n.B SLMPROBE_MODEL\nthe embedded server'"'"'s default model file (used as given).\n'
    printf '.TP\n.B XDG_DATA_HOME\nthe default model is $XDG_DATA_HOME/slmprobe/models/default.gguf\n'
    printf '(else ~/.local/share/slmprobe/models/default.gguf), generated when missing.\n'
    printf '.TP\n.B SLMPROBE_DEFAULT_PRESET\nthe preset that generation uses (default small).\n'
    printf '.TP\n.B XDG_CACHE_HOME\nslmprobe calibrate stores $XDG_CACHE_HOME/slmprobe/client.json\n'
    printf '(else ~/.cache/slmprobe/client.json); every probe reads it.\n'
    for c in $commands; do
        printf '[COMMAND %s]\n' "$c"
        "$BIN" "$c" --help 2>&1 | roff_literal
        subs=$("$BIN" "$c" --help 2>&1 | sed -n '/^subcommands:/,/^$/s/^  \([a-z][a-z0-9-]*\) .*/\1/p')
        for s in $subs; do
            printf '.SS %s %s\n' "$c" "$s"
            "$BIN" "$c" "$s" --help 2>&1 | roff_literal
        done
    done
} > "$INC"
help2man --no-info --no-discard-stderr --name="measure small language model servers" \
    --include="$INC" --output="$OUT" "$BIN"
rm -f "$INC"
