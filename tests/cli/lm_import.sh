# `lact lm import`, `export` and `loss` end to end: a trained lm-tiny
# checkpoint exported as a PyTorch state dict (default names, a renaming map,
# bf16) and imported back gives the same loss on a token batch (written here
# as safetensors by hand); the imported checkpoint serves eval, sample and
# train --resume; a missing, unexpected or mis-shaped tensor, an unused map
# entry and a bad map give one line naming the tensor or entry.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=${LACT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cfg=$src/configs/lm-tiny.json
small=(--set d_model=32 --set seq_len=64 --set batch=2 --set log_every=2)
run=(--threads 2 --quiet)

"$lact" lm prepare --out "$tmp/d" --docs paragraph --val-fraction 0.1 --quiet "$src/data/demo/tiny.txt" ||
    fail "prepare exited $?"
"$lact" lm train --config "$cfg" --data "$tmp/d" --out "$tmp/run" --steps 2 "${small[@]}" "${run[@]}" ||
    fail "train exited $?"
ckpt=$tmp/run/ckpt.safetensors
conf=$tmp/run/config.json

# A token batch: "tokens" [2, 9] I32, ids (7i + 3) mod 250, as safetensors
# (8-byte header length, JSON header padded to 8 bytes, little-endian data).
write_tokens() { # FILE
    local header='{"tokens":{"dtype":"I32","shape":[2,9],"data_offsets":[0,72]}}'
    while (($(( ${#header} % 8 )) != 0)); do header+=' '; done
    {
        printf "\\x$(printf %02x ${#header})\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
        printf '%s' "$header"
        for i in $(seq 0 17); do
            printf "\\x$(printf %02x $(((7 * i + 3) % 250)))\\x00\\x00\\x00"
        done
    } >"$1"
}
write_tokens "$tmp/tokens.safetensors"
loss_of() { # CKPT -> the loss, printed with 9 digits
    "$lact" lm loss --checkpoint "$1" --tokens "$tmp/tokens.safetensors" --device cpu --threads 2 \
        --json | sed -n 's/.*"loss": \([^,]*\),.*/\1/p'
}
base=$(loss_of "$ckpt")
[[ -n $base ]] || fail "lact lm loss printed no loss"
awk -v l="$base" 'BEGIN { exit !(l > 2 && l < 7) }' || fail "loss $base is not near ln 257"

# Default names: export, import, the same loss.
"$lact" lm export --checkpoint "$ckpt" --out "$tmp/sd.safetensors" --quiet || fail "export exited $?"
grep -a -q '"layers.0.lact.lr.weight"' "$tmp/sd.safetensors" || fail "export lacks lr.weight"
grep -a -q '"optim.m.' "$tmp/sd.safetensors" && fail "export holds optimizer moments"
"$lact" lm import --config "$conf" --weights "$tmp/sd.safetensors" --out "$tmp/imp.safetensors" \
    >"$tmp/imp.out" || fail "import exited $?"
grep -q "^import: 36 tensors" "$tmp/imp.out" || fail "import said: $(cat "$tmp/imp.out")"
[[ $(loss_of "$tmp/imp.safetensors") == "$base" ]] ||
    fail "imported loss $(loss_of "$tmp/imp.safetensors") != $base"

# A renaming map both ways.
cat >"$tmp/map.json" <<'EOF'
{"embed": "transformer.wte.weight", "layers.{i}.mlp.w_up": "transformer.h.{i}.mlp.up_proj.weight",
 "layers.{i}.norm1": "transformer.h.{i}.ln_1.weight"}
EOF
"$lact" lm export --checkpoint "$ckpt" --map "$tmp/map.json" --out "$tmp/ren.safetensors" --quiet ||
    fail "export --map exited $?"
grep -a -q '"transformer.h.1.mlp.up_proj.weight"' "$tmp/ren.safetensors" || fail "map not applied"
"$lact" lm import --config "$conf" --map "$tmp/map.json" --weights "$tmp/ren.safetensors" \
    --out "$tmp/ren-imp.safetensors" --quiet || fail "import --map exited $?"
[[ $(loss_of "$tmp/ren-imp.safetensors") == "$base" ]] || fail "renamed round trip changed the loss"
# Without the map every renamed tensor is missing and unexpected: one line each.
"$lact" lm import --config "$conf" --weights "$tmp/ren.safetensors" --out "$tmp/x.safetensors" \
    2>"$tmp/err" && fail "import of renamed tensors without the map succeeded"
[[ $(wc -l <"$tmp/err") -eq 10 ]] || fail "expected 10 lines: $(cat "$tmp/err")"
grep -q "missing tensor 'layers.1.norm1.weight' (for layers.1.norm1 \[32\])" "$tmp/err" ||
    fail "no missing line: $(cat "$tmp/err")"
grep -q "unexpected tensor 'transformer.wte.weight' \[257, 32\]" "$tmp/err" ||
    fail "no unexpected line: $(cat "$tmp/err")"

# bf16: close, not equal.
"$lact" lm export --checkpoint "$ckpt" --dtype bf16 --out "$tmp/bf.safetensors" --quiet ||
    fail "export bf16 exited $?"
"$lact" lm import --config "$conf" --weights "$tmp/bf.safetensors" --out "$tmp/bf-imp.safetensors" \
    --quiet || fail "import bf16 exited $?"
bf=$(loss_of "$tmp/bf-imp.safetensors")
awk -v a="$bf" -v b="$base" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d > 0 && d < 0.01 * b) }' ||
    fail "bf16 loss $bf vs $base"

# Gradients under lact's names.
"$lact" lm loss --checkpoint "$tmp/imp.safetensors" --tokens "$tmp/tokens.safetensors" --device cpu \
    --threads 2 --grads-out "$tmp/g.safetensors" >"$tmp/loss.out" || fail "loss --grads-out exited $?"
grep -q "^loss: .* over 2 x 8 tokens on cpu" "$tmp/loss.out" || fail "loss said: $(cat "$tmp/loss.out")"
grep -a -q '"layers.1.attn.bg"' "$tmp/g.safetensors" || fail "gradient file lacks layers.1.attn.bg"

# The imported checkpoint serves eval, sample and train --resume.
e1=$("$lact" lm eval --checkpoint "$ckpt" --data "$tmp/d" --batches 2 --threads 2 --json)
e2=$("$lact" lm eval --checkpoint "$tmp/imp.safetensors" --data "$tmp/d" --batches 2 --threads 2 --json)
[[ ${e1#*\"loss\"} == "${e2#*\"loss\"}" ]] || fail "eval: $e1 vs $e2"
[[ $e2 == *'"checkpoint_step": 0'* ]] || fail "imported checkpoint is not at step 0: $e2"
"$lact" lm sample --checkpoint "$tmp/imp.safetensors" --prompt "The " --tokens 5 --seed 1 "${run[@]}" \
    >"$tmp/s" || fail "sample exited $?"
[[ $(wc -c <"$tmp/s") -gt 1 ]] || fail "sample printed nothing"
mkdir -p "$tmp/run2" && cp "$tmp/imp.safetensors" "$tmp/run2/ckpt.safetensors"
"$lact" lm train --data "$tmp/d" --out "$tmp/run2" --resume --steps 2 "${run[@]}" ||
    fail "train --resume from the import exited $?"
[[ $(wc -l <"$tmp/run2/metrics.jsonl") -eq 1 ]] || fail "metrics: $(cat "$tmp/run2/metrics.jsonl")"
grep -q '"step": 2' "$tmp/run2/metrics.jsonl" || fail "metrics: $(cat "$tmp/run2/metrics.jsonl")"

expect_error() { # CODE PATTERN CMD...
    local code=$1 pattern=$2
    shift 2
    "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    [[ $rc -eq $code ]] || fail "$*: exit $rc, expected $code ($(cat "$tmp/err"))"
    [[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "$*: not one line: $(cat "$tmp/err")"
    grep -q -- "$pattern" "$tmp/err" || fail "$*: $(cat "$tmp/err")"
}
imp=("$lact" lm import --config "$conf" --out "$tmp/x.safetensors")
# Missing: a tied file for an untied model.
expect_error 1 "missing tensor 'head.weight' (for head \[257, 32\])" \
    "${imp[@]}" --weights "$tmp/sd.safetensors" --set tie_embeddings=false
# Unexpected: an untied file for a tied model.
"$lact" lm train --config "$cfg" --data "$tmp/d" --out "$tmp/untied" --steps 1 "${small[@]}" \
    --set tie_embeddings=false "${run[@]}" || fail "untied train exited $?"
"$lact" lm export --checkpoint "$tmp/untied/ckpt.safetensors" --out "$tmp/untied.safetensors" --quiet ||
    fail "untied export exited $?"
expect_error 1 "unexpected tensor 'head.weight' \[257, 32\]" "${imp[@]}" --weights "$tmp/untied.safetensors"
# Wrong shape: another vocabulary.
expect_error 1 "tensor 'embed.weight' has shape \[257, 32\], embed needs \[300, 32\]" \
    "${imp[@]}" --weights "$tmp/sd.safetensors" --set vocab=300
# A map entry no parameter has, a map that is not an object, no such file.
echo '{"layers.{i}.lact.nothing": "x"}' >"$tmp/bad.json"
expect_error 1 "map entry 'layers.{i}.lact.nothing' matches no parameter" \
    "${imp[@]}" --weights "$tmp/sd.safetensors" --map "$tmp/bad.json"
echo '["embed"]' >"$tmp/notobj.json"
expect_error 1 "a name map is one JSON object" "${imp[@]}" --weights "$tmp/sd.safetensors" \
    --map "$tmp/notobj.json"
expect_error 1 "$tmp/none.safetensors" "${imp[@]}" --weights "$tmp/none.safetensors"
expect_error 2 "--weights FILE is required" "$lact" lm import --config "$conf" --out "$tmp/x.safetensors"
expect_error 2 "--dtype expects f32, bf16 or f16" "$lact" lm export --checkpoint "$ckpt" \
    --out "$tmp/x.safetensors" --dtype f64
expect_error 1 "'tokens'" "$lact" lm loss --checkpoint "$ckpt" --tokens "$tmp/g.safetensors"
expect_error 2 "--tokens FILE is required" "$lact" lm loss --checkpoint "$ckpt"
[[ -e $tmp/x.safetensors ]] && fail "a failed import left $tmp/x.safetensors"
"$lact" lm --help | grep -q "import" || fail "lact lm --help lacks import"
"$lact" lm import --help | grep -q -- "--map" || fail "import --help lacks --map"
exit 0
