# `lact lm sample` end to end: train lm-tiny for a few steps, then sample:
# the same seed gives the same text, another seed other text, greedy is
# greedy whatever the seed, the token count bounds the output; and one-line
# errors for a missing checkpoint, bad flag values and a tokenizer that does
# not fit the checkpoint.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=${LACT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cfg=$src/configs/lm-tiny.json
small=(--set d_model=32 --set seq_len=64 --set batch=2 --set log_every=2 --threads 2 --quiet)

"$lact" lm prepare --out "$tmp/d" --docs paragraph --val-fraction 0.1 --quiet "$src/data/demo/tiny.txt" ||
    fail "prepare exited $?"
"$lact" lm train --config "$cfg" --data "$tmp/d" --out "$tmp/run" --steps 4 "${small[@]}" ||
    fail "train exited $?"
ckpt=$tmp/run/ckpt.safetensors

sample() { # OUT ARGS...
    local out=$1
    shift
    "$lact" lm sample --checkpoint "$ckpt" --prompt "The " --threads 2 --quiet "$@" >"$out" ||
        fail "sample $* exited $?"
}
sample "$tmp/a" --tokens 20 --seed 7
sample "$tmp/b" --tokens 20 --seed 7
sample "$tmp/c" --tokens 20 --seed 8
[[ $(wc -c <"$tmp/a") -gt 1 ]] || fail "empty output: $(od -c "$tmp/a")"
cmp -s "$tmp/a" "$tmp/b" || fail "seed 7 twice: $(od -c "$tmp/a") vs $(od -c "$tmp/b")"
cmp -s "$tmp/a" "$tmp/c" && fail "seeds 7 and 8 gave the same text: $(od -c "$tmp/a")"
# Bytes tokenizer: one byte per token (end-of-text stops early), plus the final newline.
[[ $(wc -c <"$tmp/a") -le 21 ]] || fail "20 tokens gave $(wc -c <"$tmp/a") bytes"
# Greedy ignores the seed; top-k 1 is greedy.
sample "$tmp/g1" --tokens 12 --temperature 0 --seed 1
sample "$tmp/g2" --tokens 12 --temperature 0 --seed 2
sample "$tmp/g3" --tokens 12 --top-k 1 --seed 3
cmp -s "$tmp/g1" "$tmp/g2" || fail "greedy depends on the seed"
cmp -s "$tmp/g1" "$tmp/g3" || fail "top-k 1 is not greedy"
# Nucleus and top-k together, and an empty prompt (starts a new document).
"$lact" lm sample --checkpoint "$ckpt" --tokens 5 --top-k 5 --top-p 0.9 --quiet >"$tmp/e" ||
    fail "empty prompt exited $?"
"$lact" lm sample --checkpoint "$ckpt" --tokens 3 2>"$tmp/stats" >/dev/null || fail "stats run"
grep -q "^sample: step 4 checkpoint" "$tmp/stats" || fail "stats line: $(cat "$tmp/stats")"
"$lact" lm sample --help | grep -q -- "--top-p" || fail "--help lacks --top-p"
"$lact" lm --help | grep -q "sample" || fail "lact lm --help lacks sample"

expect_error() { # CODE PATTERN CMD...
    local code=$1 pattern=$2
    shift 2
    "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    [[ $rc -eq $code ]] || fail "$*: exit $rc, expected $code ($(cat "$tmp/err"))"
    [[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "$*: not one line: $(cat "$tmp/err")"
    grep -q -- "$pattern" "$tmp/err" || fail "$*: $(cat "$tmp/err")"
}
expect_error 2 "--checkpoint FILE is required" "$lact" lm sample --tokens 3
expect_error 1 "$tmp/none" "$lact" lm sample --checkpoint "$tmp/none" --tokens 3
expect_error 2 "--tokens must be >= 1" "$lact" lm sample --checkpoint "$ckpt" --tokens 0
expect_error 2 "--temperature must be >= 0" "$lact" lm sample --checkpoint "$ckpt" --temperature -1
expect_error 2 "--top-k must be >= 0" "$lact" lm sample --checkpoint "$ckpt" --top-k -2
expect_error 2 "--top-p must be in (0, 1\]" "$lact" lm sample --checkpoint "$ckpt" --top-p 1.5
expect_error 2 "--tokens" "$lact" lm sample --checkpoint "$ckpt" --tokens many
expect_error 1 "nosuch.json" "$lact" lm sample --checkpoint "$ckpt" --tokenizer "$tmp/nosuch.json"
# A checkpoint whose vocabulary is not the bytes tokenizer's.
"$lact" lm train --config "$cfg" --data "$tmp/d" --out "$tmp/big" --steps 1 --set vocab=1024 \
    "${small[@]}" || fail "train vocab 1024 exited $?"
expect_error 1 "has 257 ids, the checkpoint's vocab is 1024" "$lact" lm sample \
    --checkpoint "$tmp/big/ckpt.safetensors" --tokens 3
exit 0
