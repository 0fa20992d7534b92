# `lact lm train` and `lact lm eval` end to end on the demo text: metrics
# lines, a checkpoint, --resume continuing the run, perplexity and bits per
# byte, a model with Mesa mixers, and one-line errors for bad configs, data
# and checkpoints.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=${LACT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cfg=$src/configs/lm-tiny.json
small=(--set d_model=32 --set seq_len=64 --set batch=2 --set log_every=2 --set eval_every=4
       --set eval_batches=2 --set checkpoint_every=4 --threads 2 --quiet)

"$lact" lm prepare --out "$tmp/d" --docs paragraph --val-fraction 0.1 --quiet "$src/data/demo/tiny.txt" ||
    fail "prepare exited $?"
"$lact" lm train --config "$cfg" --data "$tmp/d" --out "$tmp/run" --steps 4 "${small[@]}" ||
    fail "train exited $?"
[[ -s "$tmp/run/ckpt.safetensors" ]] || fail "no checkpoint"
grep -q '"d_model":[[:space:]]*32' "$tmp/run/config.json" || fail "config.json lacks the override"
[[ $(wc -l <"$tmp/run/metrics.jsonl") -eq 2 ]] || fail "metrics: $(cat "$tmp/run/metrics.jsonl")"
grep -q '^{"step": 4, "loss": [0-9.]*, "lr": [0-9.e-]*, "grad_norm": [0-9.e-]*, "tokens_per_s": [0-9.]*, "val_loss": [0-9.]*}$' \
    "$tmp/run/metrics.jsonl" || fail "metrics line: $(tail -1 "$tmp/run/metrics.jsonl")"

# --resume continues from step 4 to the new --steps.
"$lact" lm train --data "$tmp/d" --out "$tmp/run" --resume --steps 6 "${small[@]}" ||
    fail "resume exited $?"
[[ $(tail -1 "$tmp/run/metrics.jsonl" | grep -o '"step": [0-9]*') == '"step": 6' ]] ||
    fail "resume: $(cat "$tmp/run/metrics.jsonl")"
[[ $(wc -l <"$tmp/run/metrics.jsonl") -eq 3 ]] || fail "resume appended $(cat "$tmp/run/metrics.jsonl")"

"$lact" lm eval --checkpoint "$tmp/run/ckpt.safetensors" --data "$tmp/d" --batches 2 --json \
    >"$tmp/ppl" || fail "eval exited $?"
grep -q '"checkpoint_step": 6' "$tmp/ppl" || fail "eval: $(cat "$tmp/ppl")"
"$lact" lm eval --checkpoint "$tmp/run/ckpt.safetensors" --data "$tmp/d" --task bpb --json \
    >"$tmp/bpb" || fail "eval bpb exited $?"
grep -q '"bpb": [0-9.]*' "$tmp/bpb" || fail "bpb: $(cat "$tmp/bpb")"
# Bytes tokenizer: every token but the end-of-text ones is one byte.
tokens=$(grep -o '"tokens": [0-9]*' "$tmp/bpb" | grep -o '[0-9]*$')
bytes=$(grep -o '"bytes": [0-9]*' "$tmp/bpb" | grep -o '[0-9]*$')
[[ $bytes -lt $tokens && $bytes -gt $(( tokens * 9 / 10 )) ]] || fail "bytes $bytes of $tokens tokens"

# Mesa mixers train, checkpoint their keys and evaluate.
"$lact" lm train --config "$cfg" --data "$tmp/d" --out "$tmp/mesa" --steps 2 "${small[@]}" \
    --set mixers=mesa,attention --set mesa_chunk=16 --set mesa_cg_steps=20 ||
    fail "mesa train exited $?"
grep -q '"mixers":[[:space:]]*"mesa,attention"' "$tmp/mesa/config.json" ||
    fail "mesa config: $(cat "$tmp/mesa/config.json")"
grep -q '"mesa_cg_steps":[[:space:]]*20' "$tmp/mesa/config.json" || fail "mesa_cg_steps not kept"
grep -q '"loss": [0-9]' "$tmp/mesa/metrics.jsonl" || fail "mesa metrics: $(cat "$tmp/mesa/metrics.jsonl")"
grep -q 'layers.0.mesa.lambda' "$tmp/mesa/ckpt.safetensors" || fail "no layers.0.mesa.lambda in the checkpoint"
"$lact" lm eval --checkpoint "$tmp/mesa/ckpt.safetensors" --data "$tmp/d" --batches 1 --json \
    >"$tmp/mesa_ppl" || fail "mesa eval exited $?"
grep -q '"checkpoint_step": 2' "$tmp/mesa_ppl" || fail "mesa eval: $(cat "$tmp/mesa_ppl")"
# Streaming decode of the Mesa layers: a seed repeats its text.
"$lact" lm sample --checkpoint "$tmp/mesa/ckpt.safetensors" --prompt "The " --tokens 12 --seed 3 \
    --quiet >"$tmp/s1" || fail "mesa sample exited $?"
"$lact" lm sample --checkpoint "$tmp/mesa/ckpt.safetensors" --prompt "The " --tokens 12 --seed 3 \
    --quiet >"$tmp/s2" || fail "mesa sample exited $?"
[[ -s "$tmp/s1" ]] && cmp -s "$tmp/s1" "$tmp/s2" || fail "mesa samples: $(cat "$tmp/s1") / $(cat "$tmp/s2")"

# Errors: one line, naming what is wrong.
expect_error() { # CODE PATTERN CMD...
    local code=$1 pattern=$2
    shift 2
    "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    [[ $rc -eq $code ]] || fail "$*: exit $rc, expected $code ($(cat "$tmp/err"))"
    [[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "$*: not one line: $(cat "$tmp/err")"
    grep -q -- "$pattern" "$tmp/err" || fail "$*: $(cat "$tmp/err")"
}
printf '{"vocab": 257, "d_modle": 64}\n' >"$tmp/bad.json"
expect_error 1 "d_modle" "$lact" lm train --config "$tmp/bad.json" --data "$tmp/d" --out "$tmp/x"
expect_error 1 "nosuchkey" "$lact" lm train --config "$cfg" --data "$tmp/d" --out "$tmp/x" \
    --set nosuchkey=1
expect_error 1 "unknown mixer 'mamba'" "$lact" lm train --config "$cfg" \
    --data "$tmp/d" --out "$tmp/x" --set mixers=lact,mamba
expect_error 1 "mesa_cg_steps" "$lact" lm train --config "$cfg" --data "$tmp/d" --out "$tmp/x" \
    --set mixers=mesa --set mesa_cg_steps=0
expect_error 1 "$tmp/nodata" "$lact" lm train --config "$cfg" --data "$tmp/nodata" --out "$tmp/x"
expect_error 1 "no checkpoint to resume" "$lact" lm train --resume --data "$tmp/d" --out "$tmp/empty"
expect_error 2 "--config FILE is required" "$lact" lm train --data "$tmp/d" --out "$tmp/x"
printf 'not a checkpoint' >"$tmp/bad.safetensors"
expect_error 1 "bad.safetensors" "$lact" lm eval --checkpoint "$tmp/bad.safetensors" --data "$tmp/d"
expect_error 1 "nope.safetensors" "$lact" lm eval --checkpoint "$tmp/nope.safetensors" --data "$tmp/d"
expect_error 1 "$tmp/nodata" "$lact" lm eval --checkpoint "$tmp/run/ckpt.safetensors" --data "$tmp/nodata"
expect_error 2 "--task expects" "$lact" lm eval --checkpoint "$tmp/run/ckpt.safetensors" \
    --data "$tmp/d" --task bleu
echo "lm_train: ok"
