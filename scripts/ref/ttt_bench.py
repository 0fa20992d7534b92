#!/usr/bin/env python3
"""The `lact bench ttt` configuration in PyTorch: the op as written in
ttt_reference.py (from the spec), torch.compile'd, run under bf16 autocast
with fp32 fast weights, as the public implementation runs it.

    python3 scripts/ref/ttt_bench.py [--batch 4 --len 32768 --heads 4 --dim 512
        --chunk 2048 --muon off|table|fixed --momentum 1 --iters 10 --no-compile
        --save FILE.safetensors]

Prints, per mode (inference forward, training forward, forward + backward):
median ms over --iters after warm-up (CUDA events), TFLOP/s with
18·d·dh·L FLOPs per head forward (3× for forward + backward, Newton–Schulz
not counted) and torch.cuda.max_memory_allocated. --save writes the inputs
(fp32), d_o and PyTorch's o and gradients, so `lact op ttt --in FILE` can be
compared with them (ttt_reference.py --against).
"""

import argparse
import os
import statistics
import struct
import json
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ttt_reference as ref  # noqa: E402


def make_inputs(a, device):
    g = torch.Generator(device=device).manual_seed(a.seed)
    n, L, d, dh = a.batch * a.heads, a.len, a.dim, a.dim * a.inter

    def unit(x):
        return x / (x.norm(dim=-1, keepdim=True) + 1e-5)

    silu = torch.nn.functional.silu
    q = unit(silu(torch.randn(n, L, d, device=device, generator=g))).bfloat16()
    k = unit(silu(torch.randn(n, L, d, device=device, generator=g))).bfloat16()
    v = silu(torch.randn(n, L, d, device=device, generator=g)).bfloat16()
    lrs = [5e-4 + 4.5e-3 * torch.rand(n, L, device=device, generator=g) for _ in range(3)]
    mom = 0.3 + 0.65 * torch.rand(n, L, device=device, generator=g) if a.momentum else None
    w0 = torch.randn(n, dh, d, device=device, generator=g) / d**0.5
    w1 = torch.randn(n, d, dh, device=device, generator=g) / dh**0.5
    w2 = torch.randn(n, dh, d, device=device, generator=g) / d**0.5
    return [q, k, v, *lrs, mom, w0, w1, w2]


def time_it(fn, iters):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def save_safetensors(path, tensors):
    names = {torch.float32: "F32", torch.bfloat16: "BF16"}
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--len", type=int, default=32768)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--inter", type=int, default=1)
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--muon", default="off", choices=["off", "table", "fixed"])
    p.add_argument("--momentum", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--compile-parts", action="store_true",
                   help="compile the fast net, Newton-Schulz and renorm functions (one small graph "
                        "each, reused by every chunk) instead of the whole unrolled loop, whose "
                        "compilation takes minutes")
    p.add_argument("--save", metavar="FILE.safetensors")
    a = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("ttt_bench.py: needs a CUDA device")
    dev = "cuda"
    x = make_inputs(a, dev)
    ops = ref.order_causal(a.len, a.chunk)
    if a.compile_parts and not a.no_compile:
        for name in ("fast_net", "newton_schulz", "renorm_rows"):
            setattr(ref, name, torch.compile(getattr(ref, name)))
        fwd = ref.ttt_forward
    else:
        fwd = ref.ttt_forward if a.no_compile else torch.compile(ref.ttt_forward)
    n, d, dh = a.batch * a.heads, a.dim, a.dim * a.inter
    flop = 18.0 * d * dh * a.len * n
    tag = "eager" if a.no_compile else "compile-parts" if a.compile_parts else "compile"
    print(f"torch {torch.__version__} {torch.cuda.get_device_name()} ttt {tag} B={a.batch} L={a.len} "
          f"heads={a.heads} d={d} dh={dh} chunk={a.chunk} muon={a.muon} momentum={a.momentum} "
          f"(FLOPs {flop:.3e} forward, x3 fwd+bwd, Muon not counted)")

    def run(train):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return fwd(*x, ops, a.muon)

    def report(mode, ms, f):
        gib = torch.cuda.max_memory_allocated() / 2**30
        print(f"torch ttt {mode:10s} {ms:9.3f} ms {f / (ms * 1e-3) / 1e12:8.1f} TFLOP/s  peak {gib:6.2f} GiB",
              flush=True)

    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        ms = time_it(lambda: run(False), a.iters)
    report("inference", ms, flop)

    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in x]
    x[:] = leaves
    d_o = torch.randn(n, a.len, d, device=dev, dtype=torch.bfloat16)
    torch.cuda.reset_peak_memory_stats()
    ms = time_it(lambda: run(True), a.iters)
    report("forward", ms, flop)

    def fb():
        for t in x:
            if t is not None:
                t.grad = None
        o = run(True)
        o.backward(d_o.to(o.dtype))
        return o

    torch.cuda.reset_peak_memory_stats()
    ms = time_it(fb, a.iters)
    report("fwd+bwd", ms, 3 * flop)

    if a.save:
        o = fb()
        out = {}
        for name, t in zip(ref.INPUTS, x):
            if t is None:
                continue
            out[name] = t.detach().float()
            out["ref_d_" + name] = t.grad.float()
        out["d_o"] = d_o
        out["ref_o"] = o.detach().float()
        save_safetensors(a.save, out)
        print(f"saved inputs, d_o and reference outputs to {a.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
