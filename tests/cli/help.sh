# `lact --help` and every command's --help exit 0 and say what they should.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$lact" --help) || fail "lact --help exited $?"
for c in demo op bench version; do
    grep -q "^  $c " <<<"$out" || fail "lact --help does not list '$c'"
done
[[ "$("$lact" -h)" == "$out" ]] || fail "lact -h differs from lact --help"
[[ "$("$lact" help)" == "$out" ]] || fail "lact help differs from lact --help"
for c in demo op bench version; do
    h=$("$lact" "$c" --help) || fail "lact $c --help exited $?"
    grep -q "^usage: lact $c" <<<"$h" || fail "lact $c --help has no usage line"
    grep -q -- "--help" <<<"$h" || fail "lact $c --help does not list --help"
done
"$lact" op --help | grep -q -- "--set NAME=VALUE" || fail "lact op --help does not list --set"
"$lact" demo --help | grep -q -- "--steps N .*(default: " || fail "lact demo --help shows no default"
"$lact" >/dev/null 2>&1 && fail "lact with no command exited 0"
echo "help: ok"
