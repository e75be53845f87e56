#!/bin/sh
# Installs the Debian packages slmprobe builds against, if any is missing.
# As root it runs apt-get; otherwise it prints the one command to run.
# libicu-dev: Unicode categories (\p{L}, \p{N}, White_Space) and NFC for the real tokenizers.
# help2man: builds the man page (slmprobe.1) from the --help texts at build time (make install).
PKGS="build-essential pkg-config libcurl4-openssl-dev libjansson-dev libopenblas-dev libevent-dev libxxhash-dev libicu-dev help2man"
# libhttp-parser-dev: reference HTTP parser for the differential test in tests/test_fuzz_replay.c
# only; slmprobe itself never links it.
PKGS="$PKGS libhttp-parser-dev"
# chromium: headless browser for the report test (tests/test_lab.c opens report.html in it).
PKGS="$PKGS chromium"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >&2 || {
        echo "deps: apt-get failed" >&2; exit 1; }
else
    echo "deps: missing packages:$missing" >&2
    echo "deps: run: sudo apt-get install -y$missing" >&2
    exit 1
fi
