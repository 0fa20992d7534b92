# `lact lm tokenizer`: train, then encode/decode round trips through the
# binary (bytes and BPE), and one-line errors for bad input.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=${LACT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

printf 'Hello, world! caf\xc3\xa9 \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87 e\xcc\x81 \xff\xfe\n\n  end' >"$tmp/in.txt"

"$lact" lm tokenizer encode --tokenizer bytes <"$tmp/in.txt" >"$tmp/ids.json" || fail "bytes encode"
[[ $(head -c 9 "$tmp/ids.json") == "[72, 101," ]] || fail "bytes ids: $(head -c 40 "$tmp/ids.json")"
"$lact" lm tokenizer decode --tokenizer bytes <"$tmp/ids.json" >"$tmp/back.txt" || fail "bytes decode"
cmp -s "$tmp/in.txt" "$tmp/back.txt" || fail "bytes round trip differs"

"$lact" lm tokenizer train --vocab 400 --out "$tmp/tok.json" --quiet "$src/data/demo/tiny.txt" ||
    fail "train exited $?"
grep -q '"type":[[:space:]]*"BPE"' "$tmp/tok.json" || fail "tokenizer.json lacks model.type BPE"
grep -q '"<|endoftext|>"' "$tmp/tok.json" || fail "tokenizer.json lacks <|endoftext|>"
"$lact" lm tokenizer encode --tokenizer "$tmp/tok.json" <"$tmp/in.txt" >"$tmp/ids2.json" ||
    fail "bpe encode"
"$lact" lm tokenizer decode --tokenizer "$tmp/tok.json" <"$tmp/ids2.json" >"$tmp/back2.txt" ||
    fail "bpe decode"
cmp -s "$tmp/in.txt" "$tmp/back2.txt" || fail "bpe round trip differs"
n_bytes=$(tr ',' '\n' <"$tmp/ids.json" | wc -l)
n_bpe=$(tr ',' '\n' <"$tmp/ids2.json" | wc -l)
[[ $n_bpe -lt $n_bytes ]] || fail "bpe gave $n_bpe tokens for $n_bytes bytes"

# The special token is one id, the last of the vocabulary.
printf 'a<|endoftext|>b' | "$lact" lm tokenizer encode --tokenizer "$tmp/tok.json" |
    grep -q '\[97, 399, 98\]' || fail "<|endoftext|> not matched as one token"

# The hand-written fixture encodes to the ids its merges give.
out=$(printf 'hello world!' | "$lact" lm tokenizer encode --tokenizer "$src/tests/data/text/gpt2_tiny.json")
[[ $out == "[12, 17, 8]" ]] || fail "gpt2 fixture: $out"

# expect_error RC TEXT ARGS... (stdin from /dev/null unless STDIN is set)
expect_error() {
    local rc=$1 want=$2
    shift 2
    "$lact" "$@" <"${STDIN:-/dev/null}" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    [[ $got -eq $rc ]] || fail "lact $* exited $got, expected $rc"
    [[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "lact $*: $(wc -l <"$tmp/err") lines on stderr"
    grep -qF -- "$want" "$tmp/err" || fail "lact $*: '$(cat "$tmp/err")' lacks '$want'"
}
expect_error 1 "$tmp/missing.json: cannot open" lm tokenizer encode --tokenizer "$tmp/missing.json"
echo '{"model": {"type": "Unigram"}, "pre_tokenizer": {"type": "ByteLevel"}}' >"$tmp/bad.json"
expect_error 1 "model.type \"Unigram\"" lm tokenizer encode --tokenizer "$tmp/bad.json"
expect_error 2 "--tokenizer FILE|bytes is required" lm tokenizer encode
expect_error 2 "unknown verb 'frob'" lm tokenizer frob
expect_error 2 "unknown verb 'frob'" lm frob
expect_error 2 "--out FILE is required" lm tokenizer train "$src/data/demo/tiny.txt"
echo '[1, "x"]' >"$tmp/badids.json"
STDIN=$tmp/badids.json expect_error 1 "element 1 is not a token id" lm tokenizer decode --tokenizer bytes
echo '[300]' >"$tmp/bigid.json"
STDIN=$tmp/bigid.json expect_error 1 "token id 300" lm tokenizer decode --tokenizer bytes
for verb in "tokenizer encode" "tokenizer decode" "tokenizer train" prepare tokenizer; do
    # shellcheck disable=SC2086
    "$lact" lm $verb --help >"$tmp/help" || fail "lact lm $verb --help exited $?"
    grep -q "usage: lact lm" "$tmp/help" || fail "lact lm $verb --help printed no usage"
done
echo "lm_tokenizer: ok"
