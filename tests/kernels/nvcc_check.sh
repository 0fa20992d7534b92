# cmake/nvcc-check, the CUDA compiler launcher: a kernel that reads a
# warpgroup product's accumulators before its wait fails the compile with
# one line naming the source and leaves no object; the same kernel reading
# them after the wait compiles.
#   nvcc_check.sh NVCC LAUNCHER
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
nvcc=$1 launcher=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/probe.cu" <<'EOS'
#include <stdint.h>
__global__ void probe(float *out, uint64_t da, uint64_t db, int acc) {
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "l"(da), "l"(db), "r"(acc));
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#ifdef READ_EARLY
    out[threadIdx.x + 128] = d[0];
#endif
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    out[threadIdx.x] = d[0] + d[1] + d[2] + d[3];
}
EOS
gen=-gencode=arch=compute_90a,code=sm_90a

"$launcher" "$nvcc" $gen -c "$tmp/probe.cu" -o "$tmp/good.o" >"$tmp/good.log" 2>&1 ||
    fail "the kernel that waits first was refused: $(cat "$tmp/good.log")"
[[ -s $tmp/good.o ]] || fail "no object for the kernel that waits first"

"$launcher" "$nvcc" $gen -DREAD_EARLY -c "$tmp/probe.cu" -o "$tmp/bad.o" >"$tmp/bad.log" 2>&1 &&
    fail "the kernel that reads before the wait compiled: $(cat "$tmp/bad.log")"
grep -q "^nvcc-check: $tmp/probe.cu: ptxas serialized" "$tmp/bad.log" ||
    fail "no line naming the source: $(cat "$tmp/bad.log")"
[[ -e $tmp/bad.o ]] && fail "the refused compile left its object"

# a failing compile keeps nvcc's own status and message
echo "this is not CUDA" >"$tmp/broken.cu"
"$launcher" "$nvcc" $gen -c "$tmp/broken.cu" -o "$tmp/broken.o" >"$tmp/broken.log" 2>&1 &&
    fail "a broken source compiled"
grep -q "nvcc-check" "$tmp/broken.log" && fail "a compile error was taken for a serialized product"
grep -q "error" "$tmp/broken.log" || fail "nvcc's error was lost: $(cat "$tmp/broken.log")"
echo "nvcc-check: 3 cases passed"
