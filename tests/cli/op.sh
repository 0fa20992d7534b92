# `lact op --list` lists the ops; a missing input file is one clear line.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

list=$("$lact" op --list) || fail "lact op --list exited $?"
grep -q "^rmsnorm " <<<"$list" || fail "lact op --list does not list rmsnorm"
grep -q "^matmul " <<<"$list" || fail "lact op --list does not list matmul"

"$lact" op rmsnorm --in "$tmp/missing.safetensors" --out "$tmp/o.safetensors" \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
[[ $rc -ne 0 ]] || fail "a missing input file exited 0"
[[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "missing file: $(wc -l <"$tmp/err") lines on stderr"
grep -q "^lact op rmsnorm: .*missing.safetensors" "$tmp/err" ||
    fail "the error does not name the file: $(cat "$tmp/err")"
[[ ! -e "$tmp/o.safetensors" ]] || fail "an output file was written after an error"

"$lact" op rmsnorm --in "$tmp/missing.safetensors" --out "$tmp/o.safetensors" --set nope=1 \
    2>"$tmp/err"
[[ $? -eq 2 ]] || fail "an unknown param did not exit 2"
grep -q "unknown param 'nope' (valid: " "$tmp/err" || fail "unknown param: $(cat "$tmp/err")"
echo "op: ok"
