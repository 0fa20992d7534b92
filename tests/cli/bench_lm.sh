# `lact bench lm` on the CPU with lm-tiny: the text lines and the JSON
# fields are there and positive, the FLOP terms are lm-tiny's (worked out by
# hand: N = 16448 head + 16896 LaCT + 20480 attention + 2 x 49152 MLP) and
# add up, --set reaches the config, a Mesa model runs; bad flags give one
# line and the usual exit codes.
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=${LACT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cfg=$src/configs/lm-tiny.json
run=(bench lm --config "$cfg" --steps 2 --warmup 1 --device cpu --threads 2 --gemm-size 256)

"$lact" "${run[@]}" >"$tmp/text" 2>"$tmp/err" || fail "text run exited $?: $(cat "$tmp/err")"
for pattern in "^FLOPs per token = 6\*N + attention + window + ttt = " "^  6\*N  *9.1277e+05 " \
    "^  attention  *4.9536e+04 " "^  window  *2.1600e+04 " "^  ttt  *2.2118e+05 .*Newton-Schulz not counted" \
    "^gemm reference: cpu f32 256^3, " "activations f32, parameters, gradients and AdamW state f32 (the model computes in F32 on this device)" \
    "^steps: 1 warm-up, 2 timed: " "^achieved .* TFLOP/s; MFU .*% of the cpu f32 GEMM"; do
    grep -q -- "$pattern" "$tmp/text" || fail "no line matching '$pattern' in: $(cat "$tmp/text")"
done
positive() { awk -v x="$1" 'BEGIN { exit !(x + 0 > 0) }'; }
tok_s=$(sed -n 's/^steps: .* ms a step (median [0-9.]*), \([0-9.]*\) tokens\/s, peak \([0-9.]*\) MiB.*/\1 \2/p' "$tmp/text")
read -r a b <<<"$tok_s"
positive "${a:-0}" && positive "${b:-0}" || fail "tokens/s and peak not positive: $(grep '^steps' "$tmp/text")"

"$lact" "${run[@]}" --json >"$tmp/json" 2>"$tmp/err" || fail "json run exited $?: $(cat "$tmp/err")"
[[ $(wc -l <"$tmp/json") -eq 1 ]] || fail "--json is not one line: $(cat "$tmp/json")"
field() { sed -n "s/.*\"$1\": \([-0-9.e+]*\).*/\1/p" "$tmp/json"; }
for key in params n_matmul tokens_per_step ms_per_step ms_per_step_median tokens_per_s peak_mib \
    loss flops_per_token flops_matmul flops_attention flops_window flops_ttt achieved_tflops \
    gemm_tflops mfu_gemm; do
    v=$(field "$key")
    [[ -n $v ]] || fail "no numeric \"$key\" in $(cat "$tmp/json")"
    positive "$v" || fail "\"$key\": $v is not positive"
done
grep -q '"device": "cpu"' "$tmp/json" || fail "device: $(cat "$tmp/json")"
grep -q '"act_dtype": "f32"' "$tmp/json" || fail "act_dtype: $(cat "$tmp/json")"
grep -q '"peak_tflops"' "$tmp/json" && fail "a datasheet peak on the CPU: $(cat "$tmp/json")"
grep -q '"gemm_warm' "$tmp/json" && fail "a warmed GEMM rate on the CPU: $(cat "$tmp/json")"
[[ $(field n_matmul) == 152128 ]] || fail "n_matmul $(field n_matmul), expected 152128"
[[ $(field tokens_per_step) == 1024 ]] || fail "tokens_per_step $(field tokens_per_step)"
awk -v t="$(field flops_per_token)" -v m="$(field flops_matmul)" -v a="$(field flops_attention)" \
    -v w="$(field flops_window)" -v s="$(field flops_ttt)" \
    'BEGIN { d = t - (m + a + w + s); exit !(t == 1205088 && d < 1 && d > -1) }' ||
    fail "flops terms do not add up to 1205088: $(cat "$tmp/json")"
# The MFU is the achieved rate over the GEMM's.
awk -v u="$(field mfu_gemm)" -v a="$(field achieved_tflops)" -v g="$(field gemm_tflops)" \
    'BEGIN { r = a / g; exit !(u > 0.999 * r && u < 1.001 * r) }' || fail "mfu_gemm: $(cat "$tmp/json")"
# A given peak is quoted as well.
"$lact" "${run[@]}" --steps 1 --warmup 0 --json --peak-tflops 2 >"$tmp/peak" ||
    fail "--peak-tflops run exited $?"
grep -q '"peak_tflops": 2, "peak_source": "--peak-tflops", "mfu_peak": ' "$tmp/peak" ||
    fail "--peak-tflops: $(cat "$tmp/peak")"

# --set reaches the model: half the tokens, K = 32.5; a Mesa model runs.
"$lact" "${run[@]}" --steps 1 --warmup 0 --json --set seq_len=64 --set mixers=mesa,attention \
    >"$tmp/json" || fail "--set run exited $?"
[[ $(field tokens_per_step) == 512 ]] || fail "--set seq_len: $(cat "$tmp/json")"
grep -q '"keys_causal": 32.5000' "$tmp/json" || fail "keys_causal: $(cat "$tmp/json")"
grep -q '"mixers": "mesa,attention"' "$tmp/json" || fail "mixers: $(cat "$tmp/json")"
[[ $(field flops_ttt) == 0 ]] || fail "a Mesa model with ttt FLOPs: $(cat "$tmp/json")"
"$lact" bench --help | grep -q "|lm" || fail "lact bench --help lacks lm"
"$lact" bench lm --help | grep -q -- "--warmup" || fail "lact bench lm --help lacks --warmup"
"$lact" bench lm --help | grep -q -- "--gemm-warm" || fail "lact bench lm --help lacks --gemm-warm"

expect_error() { # CODE PATTERN CMD...
    local code=$1 pattern=$2
    shift 2
    "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    [[ $rc -eq $code ]] || fail "$*: exit $rc, expected $code ($(cat "$tmp/err"))"
    [[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "$*: not one line: $(cat "$tmp/err")"
    grep -q -- "$pattern" "$tmp/err" || fail "$*: $(cat "$tmp/err")"
}
expect_error 2 "--config FILE is required" "$lact" bench lm --steps 2
expect_error 2 "--steps must be at least 1" "$lact" bench lm --config "$cfg" --steps 0
expect_error 2 "not negative" "$lact" bench lm --config "$cfg" --warmup -1
expect_error 2 "not negative" "$lact" bench lm --config "$cfg" --peak-tflops -3
expect_error 2 "--gemm-warm from 0 to 600" "$lact" bench lm --config "$cfg" --gemm-warm -1
expect_error 2 "--gemm-warm from 0 to 600" "$lact" bench lm --config "$cfg" --gemm-warm nan
expect_error 2 "--bogus" "$lact" bench lm --config "$cfg" --bogus
expect_error 2 "steps" "$lact" bench lm --config "$cfg" --steps two
expect_error 1 "nope" "$lact" bench lm --config "$cfg" --set nope=1 --device cpu
expect_error 1 "$tmp/none.json" "$lact" bench lm --config "$tmp/none.json" --device cpu
expect_error 1 "mixers" "$lact" bench lm --config "$cfg" --set mixers=lact,foo --device cpu
exit 0
