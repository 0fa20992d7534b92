# `lact version` names the version and the build; --json is one valid object.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$lact" version) || fail "lact version exited $?"
grep -qE '^lact [0-9]+\.[0-9]+\.[0-9]+ \(' <<<"$out" || fail "no version line in: $out"
grep -q "compiler" <<<"$out" || fail "no compiler line"
grep -q "openblas" <<<"$out" || fail "no openblas line"
grep -qE "cuda +(on|off)" <<<"$out" || fail "no cuda line"
json=$("$lact" version --json) || fail "lact version --json exited $?"
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["version"] and "cuda" in d' \
        "$json" || fail "lact version --json is not the expected JSON: $json"
fi
echo "version: ok"
