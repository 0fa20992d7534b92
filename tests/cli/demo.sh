# `lact demo` end to end at a small size: the four stages run, the run folder
# holds a tokenizer, shards, metrics and a checkpoint that `lact lm sample`
# can use afterwards, the val loss falls below where it started and below an
# untrained model's, a sample is printed; and bad flags give one-line errors.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=$tmp/run
small=(--set d_model=32 --set n_heads=2 --set chunk=16 --set window=16 --set seq_len=64
       --set batch=4 --set warmup=2 --set lr=0.01 --set log_every=5 --set eval_every=5
       --set eval_batches=4)

"$lact" demo --steps 30 --out "$run" --device cpu --tokens 20 --seed 3 "${small[@]}" \
    >"$tmp/out" 2>"$tmp/err" || fail "lact demo exited $?: $(tail -n 3 "$tmp/err")"
cat "$tmp/out"
for k in 1 2 3 4; do
    grep -q "^\[$k/4\] " "$tmp/out" || fail "no header for stage $k"
done
for f in tokenizer.json data/demo_train_000000.bin data/demo_val_000000.bin config.json \
         metrics.jsonl ckpt.safetensors; do
    [[ -s $run/$f ]] || fail "$run/$f is missing or empty"
done
grep -q '^\$ lact lm train --config .* --steps 30 ' "$tmp/out" || fail "train command not shown"

# The val loss of the training run falls, and the eval stage's is below an
# untrained model's, which guesses about uniformly: ln(vocab).
vals=$(sed -n 's/.*"val_loss": \([0-9.]*\).*/\1/p' "$run/metrics.jsonl")
[[ $(wc -l <<<"$vals") -ge 3 ]] || fail "expected val losses at steps 5..30: $vals"
first=$(head -n 1 <<<"$vals")
last=$(tail -n 1 <<<"$vals")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.3) }' ||
    fail "val loss did not fall: $first -> $last"
vocab=$(sed -n 's/.*"vocab":[[:space:]]*\([0-9]*\).*/\1/p' "$run/config.json")
[[ -n $vocab ]] || fail "no vocab in config.json"
loss=$(sed -n 's/^eval: step 30, [0-9]* tokens: loss \([0-9.]*\), perplexity .*/\1/p' "$tmp/out")
bpb=$(sed -n 's/^eval: step 30, .* bytes): loss [0-9.]*, \([0-9.]*\) bits per byte$/\1/p' "$tmp/out")
[[ -n $loss && -n $bpb ]] || fail "no eval lines for ppl and bpb"
awk -v l="$loss" -v v="$vocab" 'BEGIN { exit !(l < log(v) - 0.5) }' ||
    fail "eval loss $loss is not below an untrained model's ln($vocab)"
awk -v b="$bpb" 'BEGIN { exit !(b > 0 && b < 8) }' || fail "bits per byte $bpb out of range"

# The sample: the prompt, then generated text on the line after the command.
text=$(sed -n '/^\$ lact lm sample /{n;p;}' "$tmp/out")
[[ $text == "And the LORD said"* && ${#text} -gt 24 ]] || fail "no sample after the prompt: '$text'"
grep -q '^demo: done in ' "$tmp/out" || fail "no summary"

# The run folder is an ordinary run: sampling from it by hand works.
"$lact" lm sample --checkpoint "$run/ckpt.safetensors" --tokenizer "$run/tokenizer.json" \
    --prompt "And" --tokens 10 --quiet >"$tmp/more" || fail "sampling the demo's checkpoint failed"
[[ $(wc -c <"$tmp/more") -gt 1 ]] || fail "empty sample from the demo's checkpoint"

# Bad flags: one line on stderr, exit 2; a failing stage: one line, exit 1.
expect_error() { # CODE MESSAGE ARGS...
    local code=$1 msg=$2
    shift 2
    "$lact" demo --out "$tmp/bad" "$@" >/dev/null 2>"$tmp/e"
    local rc=$?
    [[ $rc -eq $code ]] || fail "demo $* exited $rc, expected $code"
    [[ $(wc -l <"$tmp/e") -eq 1 ]] || fail "demo $*: expected one line, got: $(cat "$tmp/e")"
    grep -qF -- "$msg" "$tmp/e" || fail "demo $*: expected '$msg', got: $(cat "$tmp/e")"
}
expect_error 2 "lact demo: --steps must be >= 0" --steps -1
expect_error 2 "lact demo: --tokens must be >= 1" --tokens 0
expect_error 2 "lact demo: --temperature must be >= 0" --temperature -1
expect_error 2 "lact demo: unknown flag '--sample'" --sample 40
expect_error 2 "lact demo: --data $tmp/none.txt: cannot find the file" --data "$tmp/none.txt"
expect_error 1 "lact lm train: " --steps 1 --set no_such_key=1
echo "demo: ok"
