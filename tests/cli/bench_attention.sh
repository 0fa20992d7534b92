# `lact bench attention` on the CPU (F32, small shapes): one text row and one
# JSON line per (length, mask), FLOP counts of the unmasked area worked out
# by hand, positive timings; bad flags give one line and exit 2, a bf16
# run on the CPU one line and exit 1 (as the GPU-only ttt and ew benchmarks).
set -u
lact=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=(bench attention --device cpu --threads 2 --dtype f32 --batch 1 --heads 2 --dim 16
    --window 16 --block 32 --iters 1)

"$lact" "${run[@]}" --len 64,40 >"$tmp/text" 2>"$tmp/err" || fail "text run exited $?: $(cat "$tmp/err")"
grep -q "^attention B=1 H=2 Hkv=2 d=16 f32" "$tmp/text" || fail "header: $(cat "$tmp/text")"
[[ $(grep -cE '^  (causal|window|block-causal) ' "$tmp/text") -eq 6 ]] ||
    fail "expected 6 rows (2 lengths x 3 masks): $(cat "$tmp/text")"

"$lact" "${run[@]}" --len 64 --mask causal,window,block,full --json >"$tmp/json" 2>"$tmp/err" ||
    fail "json run exited $?: $(cat "$tmp/err")"
[[ $(wc -l <"$tmp/json") -eq 4 ]] || fail "--json: expected 4 lines: $(cat "$tmp/json")"
positive() { awk -v x="$1" 'BEGIN { exit !(x + 0 > 0) }'; }
# 4·d·heads = 128 FLOPs per unmasked pair; pairs at L = 64: causal 64·65/2 = 2080,
# window 16: 136 + 48·16 = 904, block 32: 32·32 + 32·64 = 3072, full 4096.
for want in "causal 2.662400e+05" "window 1.157120e+05" "block-causal 3.932160e+05" \
    "full 5.242880e+05"; do
    read -r mask flops <<<"$want"
    line=$(grep "\"mask\": \"$mask\"" "$tmp/json") || fail "no $mask line: $(cat "$tmp/json")"
    grep -q "\"fwd_flops\": $flops," <<<"$line" || fail "$mask: want fwd_flops $flops: $line"
    for key in fwd_ms fwd_bwd_ms fwd_tflops fwd_bwd_tflops; do
        v=$(sed -n "s/.*\"$key\": \([-0-9.e+]*\).*/\1/p" <<<"$line")
        positive "${v:-0}" || fail "$mask: \"$key\" not positive: $line"
    done
done

expect_error() {
    local code=$1 pattern=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [[ $rc -eq $code ]] || fail "$* exited $rc, expected $code"
    [[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "$*: not one line: $(cat "$tmp/err")"
    grep -q -- "$pattern" "$tmp/err" || fail "$*: no '$pattern' in: $(cat "$tmp/err")"
}
"$lact" bench --help | grep -q "attention" || fail "lact bench --help lacks attention"
"$lact" bench attention --help | grep -q -- "--mask" || fail "lact bench attention --help lacks --mask"
expect_error 2 "unknown mask 'diag'" "$lact" bench attention --mask causal,diag
expect_error 2 "--len wants" "$lact" bench attention --len 8192,abc
expect_error 2 "--len wants" "$lact" bench attention --len 0
expect_error 2 "multiple of --kv-heads" "$lact" bench attention --heads 6 --kv-heads 4
expect_error 2 "must be positive" "$lact" bench attention --iters 0
expect_error 2 "--idle wants seconds" "$lact" bench attention --idle -1
expect_error 2 "--idle wants seconds" "$lact" bench attention --idle nan
"$lact" bench attention --help | grep -q -- "--idle" || fail "lact bench attention --help lacks --idle"
expect_error 2 "--warmup wants seconds" "$lact" bench attention --warmup -1
expect_error 2 "--warmup wants seconds" "$lact" bench attention --warmup nan
"$lact" bench attention --help | grep -q -- "--warmup" || fail "lact bench attention --help lacks --warmup"
expect_error 2 "--energy wants seconds" "$lact" bench attention --energy -2
expect_error 2 "--energy wants seconds" "$lact" bench attention --energy nan
expect_error 1 "--energy needs a GPU" "$lact" "${run[@]}" --len 64 --energy 1
"$lact" bench attention --help | grep -q -- "--energy" || fail "lact bench attention --help lacks --energy"
# The CPU neither idles nor warms up by time; the header says so.
grep -q "after 2 warm-ups and 0 s of warm-up runs, 0 s idle" "$tmp/text" ||
    fail "header lacks the warm-up and idle times: $(head -1 "$tmp/text")"
expect_error 2 "--dtype must be" "$lact" bench attention --dtype f16
expect_error 1 "bf16 needs a GPU" "$lact" bench attention --device cpu
# The GPU-only op benchmarks refuse the CPU the same way (bench_util.c).
expect_error 1 "needs a GPU (BF16 activations)" "$lact" bench ttt --device cpu
expect_error 2 "--gemm-warm from 0 to 600" "$lact" bench ttt --gemm-warm -1
expect_error 2 "--state auto, bf16 or f32" "$lact" bench ttt --state f16
expect_error 2 "--keep-iterates 0 or 1" "$lact" bench ttt --keep-iterates 2
expect_error 2 "--graph 0 or 1" "$lact" bench ttt --graph 2
"$lact" bench ttt --help | grep -q -- "--gemm-warm" || fail "lact bench ttt --help lacks --gemm-warm"
expect_error 1 "needs a GPU (BF16 activations)" "$lact" bench ew --device cpu
echo "bench_attention: ok"
