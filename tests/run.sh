#!/bin/sh
# Runs each test binary given, with a time limit, and sums the "N passed, N failed" lines.
# Exit status is non-zero if any binary failed or crashed.
total_pass=0; total_fail=0; bad=""
for t in "$@"; do
    name=$(basename "$t")
    echo "== $name"
    out=$(mktemp)
    rcf=$(mktemp)
    { timeout -k 10 600 "$t" 2>&1; echo $? > "$rcf"; } | tee "$out"
    rc=$(cat "$rcf"); rm -f "$rcf"
    status=$(tail -n 5 "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$status" ]; then
        echo "$name: no result line (crashed or timed out)"; bad="$bad $name"; total_fail=$((total_fail + 1))
    else
        p=$(echo "$status" | cut -d' ' -f1); f=$(echo "$status" | cut -d' ' -f3)
        total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
        if [ "$f" -ne 0 ]; then bad="$bad $name"
        elif [ "$rc" -ne 0 ]; then echo "$name: exit status $rc"; bad="$bad $name"; total_fail=$((total_fail + 1)); fi
    fi
    rm -f "$out"
done
echo
[ -n "$bad" ] && echo "failing:$bad"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
