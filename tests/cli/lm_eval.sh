# `lact lm eval`'s tasks end to end on lm-tiny trained for a few steps: loss by
# position (a CSV row per position, buckets, the mean equal to --task ppl's),
# needle in a haystack (the requested cells, accuracies in [0, 1], decode and
# forward agreeing, a BPE tokenizer.json), multiple choice on the demo file,
# and one-line errors naming the flag or file.
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
ev() { "$lact" lm eval --checkpoint "$ckpt" --threads 1 "$@"; }
# in_unit X: X is a number in [0, 1].
in_unit() { awk -v x="$1" 'BEGIN { exit !(x ~ /^[0-9.e+-]+$/ && x >= 0 && x <= 1) }'; }

# ---- position: one CSV row per position, and the same mean loss as ppl.
ev --data "$tmp/d" --task position --out "$tmp/pos.csv" >"$tmp/pos.txt" || fail "position exited $?"
grep -q '^position: step 4, [0-9]* sequences of 64 tokens: loss [0-9.]*; positions 0-6 [0-9.]*, 57-63 [0-9.]*' \
    "$tmp/pos.txt" || fail "position summary: $(cat "$tmp/pos.txt")"
[[ $(head -1 "$tmp/pos.csv") == "position,loss,count" ]] || fail "csv header: $(head -1 "$tmp/pos.csv")"
[[ $(wc -l <"$tmp/pos.csv") -eq 65 ]] || fail "csv has $(wc -l <"$tmp/pos.csv") lines, not 1 + 64"
awk -F, 'NR > 1 && !($1 == NR - 2 && $2 > 0 && $3 > 0) { exit 1 }' "$tmp/pos.csv" ||
    fail "csv rows: $(head -5 "$tmp/pos.csv")"
ev --data "$tmp/d" --task position --json >"$tmp/pos.json" || fail "position --json exited $?"
ev --data "$tmp/d" --task ppl --json >"$tmp/ppl.json" || fail "ppl exited $?"
num() { grep -o "\"$1\": [0-9.e+-]*" "$2" | head -1 | grep -o '[0-9.e+-]*$'; }
awk -v a="$(num loss "$tmp/pos.json")" -v b="$(num loss "$tmp/ppl.json")" \
    'BEGIN { d = a - b; exit !(a > 0 && d < 1e-6 && d > -1e-6) }' ||
    fail "position loss $(num loss "$tmp/pos.json") vs ppl $(num loss "$tmp/ppl.json")"
[[ $(num tokens "$tmp/pos.json") == $(num tokens "$tmp/ppl.json") ]] || fail "token counts differ"
ev --data "$tmp/d" --task position --bucket 16 --out "$tmp/pos16.json" >/dev/null ||
    fail "position --bucket exited $?"
[[ $(grep -o '"position": [0-9]*' "$tmp/pos16.json" | tr '\n' ' ') == \
    '"position": 0 "position": 16 "position": 32 "position": 48 ' ]] ||
    fail "buckets: $(cat "$tmp/pos16.json")"

# ---- niah: the requested cells, accuracies in [0, 1].
ev --data "$tmp/d" --task niah --lengths 80,120 --depths 0,0.5,1 --trials 2 --seed 3 \
    --out "$tmp/niah.csv" >"$tmp/niah.txt" || fail "niah exited $?"
[[ $(head -1 "$tmp/niah.csv") == "length,depth,trials,correct,accuracy" ]] ||
    fail "niah csv header: $(head -1 "$tmp/niah.csv")"
[[ $(tail -n +2 "$tmp/niah.csv" | cut -d, -f1,2 | tr '\n' ' ') == "80,0 80,0.5 80,1 120,0 120,0.5 120,1 " ]] ||
    fail "niah cells: $(cat "$tmp/niah.csv")"
while IFS=, read -r len depth trials correct acc; do
    [[ $trials -eq 2 && $correct -ge 0 && $correct -le 2 ]] || fail "niah row $len,$depth: $trials $correct"
    in_unit "$acc" || fail "niah accuracy $acc"
done < <(tail -n +2 "$tmp/niah.csv")
grep -q '^niah: step 4, greedy streaming decode, 2 trials per cell' "$tmp/niah.txt" ||
    fail "niah header: $(cat "$tmp/niah.txt")"
[[ $(grep -cE '^ +(80|120)( +[0-9]\.[0-9]{3}){4}$' "$tmp/niah.txt") -eq 2 ]] ||
    fail "niah table: $(cat "$tmp/niah.txt")"
# The forward verdict is the decode's.
ev --data "$tmp/d" --task niah --lengths 80,120 --depths 0,0.5,1 --trials 2 --seed 3 \
    --niah-mode forward --out "$tmp/niah_fwd.csv" >/dev/null || fail "niah forward exited $?"
cmp -s "$tmp/niah.csv" "$tmp/niah_fwd.csv" ||
    fail "decode and forward differ: $(cat "$tmp/niah.csv") vs $(cat "$tmp/niah_fwd.csv")"
# Default lengths: --max-length alone when it is below 1K; the filler sentence without --data.
ev --task niah --trials 1 --max-length 100 --json >"$tmp/niah.json" || fail "niah --json exited $?"
[[ $(grep -o '"length": [0-9]*' "$tmp/niah.json" | sort -u) == '"length": 100' ]] ||
    fail "default lengths: $(cat "$tmp/niah.json")"
[[ $(grep -o '"depth": [0-9.]*' "$tmp/niah.json" | tr '\n' ' ') == \
    '"depth": 0 "depth": 0.25 "depth": 0.5 "depth": 0.75 "depth": 1 ' ]] ||
    fail "default depths: $(cat "$tmp/niah.json")"
in_unit "$(num accuracy "$tmp/niah.json")" || fail "niah accuracy: $(cat "$tmp/niah.json")"

# ---- mc: the demo questions.
mcfile=$src/data/demo/mc_example.jsonl
n_questions=$(grep -c '[^[:space:]]' "$mcfile")
ev --task mc --tasks-file "$mcfile" --out "$tmp/mc.csv" >"$tmp/mc.txt" || fail "mc exited $?"
grep -qE "^mc: step 4, $n_questions questions \([0-9]+ choices\): acc [0-9.]+ \([0-9]+/$n_questions\), acc_norm [0-9.]+ \([0-9]+/$n_questions\)$" \
    "$tmp/mc.txt" || fail "mc report: $(cat "$tmp/mc.txt")"
[[ $(wc -l <"$tmp/mc.csv") -eq $(( n_questions + 1 )) ]] || fail "mc csv: $(cat "$tmp/mc.csv")"
ev --task mc --tasks-file "$mcfile" --json >"$tmp/mc.json" || fail "mc --json exited $?"
[[ $(num n "$tmp/mc.json") -eq $n_questions ]] || fail "mc n: $(cat "$tmp/mc.json")"
in_unit "$(num acc "$tmp/mc.json")" && in_unit "$(num acc_norm "$tmp/mc.json")" ||
    fail "mc accuracies: $(cat "$tmp/mc.json")"

# ---- a BPE tokenizer.json: shards, model and tasks all in its ids.
"$lact" lm tokenizer train --vocab 320 --out "$tmp/tok.json" --quiet "$src/data/demo/tiny.txt" ||
    fail "tokenizer train exited $?"
"$lact" lm prepare --tokenizer "$tmp/tok.json" --out "$tmp/bpe" --docs paragraph --val-fraction 0.1 \
    --quiet "$src/data/demo/tiny.txt" || fail "prepare (bpe) exited $?"
vocab=$(grep -o '"vocab_size": [0-9]*' "$tmp"/bpe/*_meta.json | grep -o '[0-9]*$')
"$lact" lm train --config "$cfg" --data "$tmp/bpe" --out "$tmp/runb" --steps 2 --set vocab="$vocab" \
    "${small[@]}" || fail "train (bpe) exited $?"
evb() { "$lact" lm eval --checkpoint "$tmp/runb/ckpt.safetensors" --tokenizer "$tmp/tok.json" --threads 1 "$@"; }
evb --data "$tmp/bpe" --task niah --lengths 64 --depths 0,1 --trials 2 --json >"$tmp/niahb.json" ||
    fail "niah (bpe) exited $?"
[[ $(grep -o '"length": 64' "$tmp/niahb.json" | wc -l) -eq 2 ]] || fail "niah (bpe): $(cat "$tmp/niahb.json")"
evb --task mc --tasks-file "$mcfile" --json >"$tmp/mcb.json" || fail "mc (bpe) exited $?"
[[ $(num n "$tmp/mcb.json") -eq $n_questions ]] || fail "mc (bpe): $(cat "$tmp/mcb.json")"

# ---- errors: one line, naming the flag or file.
expect_error() { # CODE PATTERN ARGS...
    local code=$1 pattern=$2
    shift 2
    ev "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    [[ $rc -eq $code ]] || fail "$*: exit $rc, expected $code ($(cat "$tmp/err"))"
    [[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "$*: not one line: $(cat "$tmp/err")"
    grep -q -- "$pattern" "$tmp/err" || fail "$*: $(cat "$tmp/err")"
}
printf '{"context": "a", "choices": ["b", "c"], "answer": 0}\n\n{"context": "a", "choices": ["b"], "answer": 0}\n' \
    >"$tmp/bad.jsonl"
expect_error 1 "bad.jsonl:3: \"choices\"" --task mc --tasks-file "$tmp/bad.jsonl"
printf '{"context": "a", "choices": ["b", "c"], "answer": 5}\n' >"$tmp/bad2.jsonl"
expect_error 1 "bad2.jsonl:1: \"answer\"" --task mc --tasks-file "$tmp/bad2.jsonl"
printf 'not json\n' >"$tmp/bad3.jsonl"
expect_error 1 "bad3.jsonl:1: not a JSON object" --task mc --tasks-file "$tmp/bad3.jsonl"
expect_error 1 "nope.jsonl" --task mc --tasks-file "$tmp/nope.jsonl"
expect_error 2 "--tasks-file FILE is required" --task mc
expect_error 2 "--data DIR is required for --task position" --task position
expect_error 2 "--bucket must be >= 1" --data "$tmp/d" --task position --bucket 0
expect_error 2 "--trials must be >= 1" --task niah --trials 0
expect_error 2 "--niah-mode expects" --task niah --niah-mode sideways
expect_error 2 "--filler expects" --task niah --filler lorem
expect_error 2 "--out is for" --data "$tmp/d" --task ppl --out "$tmp/x.csv"
expect_error 2 "--task expects" --data "$tmp/d" --task bleu
expect_error 1 "--lengths '64,x'" --task niah --lengths 64,x
expect_error 1 "--lengths: niah: length 20 is shorter" --task niah --lengths 20
expect_error 1 "--depths '0,1.5'" --task niah --depths 0,1.5
expect_error 1 "--filler data needs --data" --task niah --filler data
expect_error 1 "--tokenizer .*tok.json has" --task mc --tasks-file "$mcfile" --tokenizer "$tmp/tok.json"
echo "lm_eval: ok"
