# Bad usage exits 2 with exactly one line on stderr naming what is wrong.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect_usage_error EXPECTED_TEXT ARGS...
expect_usage_error() {
    local want=$1
    shift
    "$lact" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [[ $rc -eq 2 ]] || fail "lact $* exited $rc, expected 2"
    [[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "lact $* printed $(wc -l <"$tmp/err") lines on stderr"
    grep -qF -- "$want" "$tmp/err" || fail "lact $*: stderr '$(cat "$tmp/err")' lacks '$want'"
    [[ ! -s "$tmp/out" ]] || fail "lact $* printed on stdout"
}

expect_usage_error "lact: unknown command 'frobnicate' (see lact --help)" frobnicate
expect_usage_error "lact op: unknown flag '--fo' (see lact op --help)" op rmsnorm --fo x
expect_usage_error "lact demo: unknown flag '--stepz' (see lact demo --help)" demo --stepz=3
expect_usage_error "flag '--steps' expects an integer, got 'many'" demo --steps many
expect_usage_error "flag '--steps' needs a value" demo --steps
expect_usage_error "unknown op 'no_such_op'" op no_such_op --in a --out b
expect_usage_error "--device expects cpu, cuda or auto" demo --device tpu
expect_usage_error "unknown benchmark 'fft'" bench fft
expect_usage_error "unexpected argument 'extra'" version extra
echo "errors: ok"
