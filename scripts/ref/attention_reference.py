#!/usr/bin/env python3
"""PyTorch timings of the shapes of lact's attention timing table
(tests/kernels/test_attention_cuda.c): bf16 [B=4, H=16, L=8192, d=128],
causal (SDPA, cuDNN/flash backend), sliding window 2048 and block-causal 4096
(flex_attention, compiled). Same FLOP convention: 4·d per unmasked (query,
key) pair and head for the forward, forward + backward = 3.5× forward.
Medians of CUDA-event timings after warm-up."""
import sys

import torch
import torch.nn.functional as F

B, H, L, D = 4, 16, 8192, 128
REPS = 5


def pairs(kind, arg):
    p = torch.arange(L, dtype=torch.float64)
    if kind == "causal":
        return float((p + 1).sum())
    if kind == "window":
        return float(torch.clamp(p + 1, max=arg).sum())
    end = torch.clamp((torch.div(p, arg, rounding_mode="floor") + 1) * arg, max=L)
    return float(end.sum())


def timed(fn):
    ts = []
    for r in range(REPS + 1):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        if r:
            ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    torch.manual_seed(0)
    dev = "cuda"
    q, k, v = (torch.randn(B, H, L, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    dy = torch.randn(B, H, L, D, device=dev, dtype=torch.bfloat16)
    cases = [("causal", "causal", 0), ("window 2048", "window", 2048),
             ("block-causal 4096", "block", 4096)]
    print(f"pytorch {torch.__version__} bf16 [B={B}, H={H}, L={L}, d={D}]; median of {REPS}")
    print(f"  {'mask':18s} {'impl':8s} {'fwd ms':>10s} {'fwd TF/s':>10s} {'fwd+bwd ms':>12s} "
          f"{'f+b TF/s':>10s}")
    flex = None
    for name, kind, arg in cases:
        if kind == "causal":
            impl = "sdpa"
            fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            try:
                from torch.nn.attention.flex_attention import create_block_mask, flex_attention
            except ImportError:
                print(f"  {name:18s} flex_attention unavailable")
                continue
            if flex is None:
                flex = torch.compile(flex_attention)
            if kind == "window":
                mask = lambda b, h, i, j, w=arg: (j <= i) & (i - j < w)
            else:
                mask = lambda b, h, i, j, n=arg: (j // n) <= (i // n)
            bm = create_block_mask(mask, None, None, L, L, device=dev)
            impl = "flex"
            fwd = lambda bm=bm: flex(q, k, v, block_mask=bm)
        for _ in range(2):
            fwd().backward(dy)
        with torch.no_grad():
            tf = timed(fwd)

        def both():
            fwd().backward(dy)

        tb = timed(both)
        fl = 4.0 * D * pairs(kind, arg) * B * H
        print(f"  {name:18s} {impl:8s} {tf:10.3f} {fl / tf * 1e-9:10.1f} {tb:12.3f} "
              f"{3.5 * fl / tb * 1e-9:10.1f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
