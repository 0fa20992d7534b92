# `lact lm prepare` on the demo text: shards with valid llm.c headers whose
# token counts match their sizes, a train/val split by document, and small
# shards when --shard-tokens says so.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=${LACT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
tiny=$src/data/demo/tiny.txt

# check_shard FILE VERSION: prints the token count after checking the header.
check_shard() {
    read -r magic version count < <(od -A n -t d4 -N 12 "$1")
    [[ $magic -eq 20240520 ]] || fail "$1: magic $magic"
    [[ $version -eq $2 ]] || fail "$1: version $version, expected $2"
    local bytes=$(( $2 == 1 ? 2 : 4 ))
    [[ $(stat -c %s "$1") -eq $(( 1024 + count * bytes )) ]] || fail "$1: size does not match $count tokens"
    echo "$count"
}

"$lact" lm prepare --out "$tmp/bytes" --docs paragraph --val-fraction 0.1 "$tiny" >"$tmp/out" ||
    fail "prepare (bytes) exited $?"
cat "$tmp/out"
train=$(check_shard "$tmp/bytes/bytes_train_000000.bin" 1)
val=$(check_shard "$tmp/bytes/bytes_val_000000.bin" 1)
docs=$(grep -o '"documents": [0-9]*' "$tmp/bytes/bytes_meta.json" | grep -o '[0-9]*$')
# bytes: every byte is one token, plus one end-of-text token per document.
# Paragraph mode drops the blank separator lines, so compare with the rest.
content=$(grep -v '^[[:space:]]*$' "$tiny" | wc -c)
[[ $(( train + val )) -eq $(( content + docs )) ]] ||
    fail "bytes: $train + $val tokens for $content bytes and $docs documents"
[[ $val -gt 0 && $val -lt $train ]] || fail "val split: $val tokens vs train $train"
# The first token is the end-of-text id 256 (uint16 little-endian 0x0100).
[[ $(od -A n -t u2 -j 1024 -N 2 "$tmp/bytes/bytes_train_000000.bin" | tr -d ' ') -eq 256 ]] ||
    fail "the first token is not end-of-text"

"$lact" lm tokenizer train --vocab 500 --out "$tmp/tok.json" --quiet "$tiny" || fail "train"
"$lact" lm prepare --tokenizer "$tmp/tok.json" --out "$tmp/bpe" --name tiny --shard-tokens 4000 \
    --val-fraction 0 --quiet "$tiny" || fail "prepare (bpe) exited $?"
n=$(ls "$tmp/bpe"/tiny_train_*.bin | wc -l)
[[ $n -ge 3 ]] || fail "expected several 4000-token shards, got $n"
total=0
for f in "$tmp/bpe"/tiny_train_*.bin; do
    c=$(check_shard "$f" 1)
    total=$(( total + c ))
    [[ $c -le 4000 ]] || fail "$f holds $c tokens"
done
[[ ! -e "$tmp/bpe/tiny_val_000000.bin" ]] || fail "a val shard with --val-fraction 0"
[[ $total -lt $(wc -c <"$tiny") ]] || fail "bpe shards hold $total tokens, no fewer than bytes"
ls "$tmp/bpe" | grep -q 'tmp' && fail "temporary files left behind"

# JSON lines: one document per line, from the named field.
printf '{"body": "first doc"}\n{"body": "second"}\n\n{"body": "third"}\n' >"$tmp/d.jsonl"
"$lact" lm prepare --out "$tmp/j" --field body --val-fraction 0 --quiet "$tmp/d.jsonl" || fail "jsonl"
[[ $(check_shard "$tmp/j/j_train_000000.bin" 1) -eq $(( 9 + 6 + 5 + 3 )) ]] || fail "jsonl token count"

# Errors: one line naming the file or flag.
"$lact" lm prepare --out "$tmp/x" "$tmp/nope.txt" 2>"$tmp/err" >/dev/null
[[ $? -eq 1 ]] && grep -q "nope.txt" "$tmp/err" || fail "missing input: $(cat "$tmp/err")"
"$lact" lm prepare --out "$tmp/x" --field text --quiet "$tmp/d.jsonl" 2>"$tmp/err" >/dev/null
grep -q 'd.jsonl:1: no string field "text"' "$tmp/err" || fail "jsonl field: $(cat "$tmp/err")"
"$lact" lm prepare --out "$tmp/x" --docs words "$tiny" 2>"$tmp/err" >/dev/null
[[ $? -eq 2 ]] && grep -q "docs expects" "$tmp/err" || fail "--docs: $(cat "$tmp/err")"
"$lact" lm prepare --tokenizer "$src/tests/data/text/gpt2_tiny.json" --out "$tmp/x" --eot 50 "$tiny" \
    2>"$tmp/err" >/dev/null
[[ $? -eq 2 ]] && grep -q -- "--eot 50 is outside" "$tmp/err" || fail "--eot: $(cat "$tmp/err")"
echo "lm_prepare: ok"
