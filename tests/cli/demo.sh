# A short `lact demo` run trains: the printed loss falls and a sample follows.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$lact" demo --steps 30 --device cpu --sample 40 >"$tmp/out" 2>"$tmp/err" ||
    fail "lact demo exited $?: $(tail -n 3 "$tmp/err")"
cat "$tmp/out"
losses=$(sed -n 's/^step [0-9]*\/30 | loss \([0-9.]*\) | val \([0-9.]*\) .*/\1 \2/p' "$tmp/out")
[[ $(wc -l <<<"$losses") -ge 3 ]] || fail "expected at least 3 step lines"
read -r first_loss first_val <<<"$(head -n 1 <<<"$losses")"
read -r last_loss last_val <<<"$(tail -n 1 <<<"$losses")"
awk -v a="$first_loss" -v b="$last_loss" 'BEGIN { exit !(b < a - 0.2) }' ||
    fail "train loss did not fall: $first_loss -> $last_loss"
awk -v a="$first_val" -v b="$last_val" 'BEGIN { exit !(b < a) }' ||
    fail "val loss did not fall: $first_val -> $last_val"
grep -q "^sample:" "$tmp/out" || fail "no sample printed"

# The same seed gives the same run.
"$lact" demo --steps 30 --device cpu --sample 40 >"$tmp/out2" 2>/dev/null || fail "rerun failed"
diff <(grep -v "tok/s" "$tmp/out" | grep -v '^demo:') <(grep -v "tok/s" "$tmp/out2" | grep -v '^demo:') \
    >/dev/null || fail "two runs with the same seed differ"
echo "demo: ok"
