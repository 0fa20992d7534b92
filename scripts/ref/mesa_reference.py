#!/usr/bin/env python3
"""The Mesa op of lact against flash-linear-attention's Triton chunk kernel.

Runs `lact bench mesa --json --dump FILE` (timings, residual, peak memory
and the inputs, output and gradients it computed), then runs
flash-linear-attention's `chunk_mesa_net` (fla/ops/mesa_net) on the same
inputs, timed the same way (CUDA events, medians of --iters runs after
warm-up), and prints both, their ratio and the relative differences of the
output and every gradient. Both are also compared with an exact float64
solve on the first tokens of one head.

flash-linear-attention is not a dependency of lact: pass the directory that
holds its `fla` package with --fla (default: .ref next to scripts/). Only
the modules the Mesa kernel needs are imported (the package's __init__
files pull in model code and its dependencies).

Mapping (docs/mesa.md): lact's q, k, v [B, H, L, d] and g, beta [B, H, L]
are transposed to FLA's [B, L, H, d] and [B, L, H]; g and beta are passed
in float32 (their values are those of the bf16 inputs); lambda [H, d] is
the same; max_CG_iteration = lact's cg_steps, FLA's chunk is 64;
use_qk_l2norm_in_kernel is off (q, k are already unit rows).
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import types


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lact", required=True, help="the lact binary")
    p.add_argument("--fla", default=os.path.join(root, ".ref"),
                   help="directory holding flash-linear-attention's fla package")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--len", type=int, default=8192)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--dump", default="/tmp/mesa_bench.safetensors")
    p.add_argument("--exact-tokens", type=int, default=512,
                   help="tokens of head 0 checked against a float64 solve (0: skip)")
    return p.parse_args()


def import_fla(path):
    """fla.ops.mesa_net.chunk and what it imports, without the package
    __init__ files of fla, fla.ops and fla.modules (they import every model
    and layer)."""
    pkg = os.path.join(path, "fla")
    if not os.path.isdir(pkg):
        sys.exit(f"mesa_reference: no fla package under {path} (see --fla)")
    sys.path.insert(0, path)
    version = "0"
    with open(os.path.join(pkg, "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                version = line.split("=", 1)[1].strip().strip("\"'")
    for name, sub in (("fla", ""), ("fla.ops", "ops"), ("fla.modules", "modules")):
        mod = types.ModuleType(name)
        mod.__path__ = [os.path.join(pkg, sub)]
        mod.__version__ = version
        sys.modules[name] = mod
    spec = importlib.util.find_spec("fla.ops.mesa_net.chunk")
    if spec is None:
        sys.exit("mesa_reference: fla.ops.mesa_net.chunk not found")
    from fla.ops.mesa_net.chunk import chunk_mesa_net
    return chunk_mesa_net


def run_lact(a):
    cmd = [a.lact, "bench", "mesa", "--json", "--batch", str(a.batch), "--heads", str(a.heads),
           "--len", str(a.len), "--dim", str(a.dim), "--steps", str(a.steps), "--iters",
           str(a.iters), "--dump", a.dump]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            obj = json.loads(line)
            res[obj["mode"]] = obj
    return res


def median_ms(torch, fn, iters, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])


def rel(torch, a, b):
    a, b = a.double(), b.double()
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


def exact_head(torch, q, k, v, g, beta, lam, n):
    """o for the first n tokens of one head ([L, d] inputs, lam [d]) by the
    token recurrence and a float64 solve."""
    q, k, v, g, beta = (x[:n].double() for x in (q, k, v, g, beta))
    d = q.shape[-1]
    hs = torch.zeros(d, d, dtype=torch.float64, device=q.device)
    gs = torch.zeros(d, d, dtype=torch.float64, device=q.device)
    out = []
    lam_m = torch.diag(lam.double())
    for t in range(n):
        gam = torch.exp(g[t])
        hs = gam * hs + beta[t] * torch.outer(k[t], k[t])
        gs = gam * gs + beta[t] * torch.outer(v[t], k[t])
        x = torch.linalg.solve(hs + lam_m, q[t])
        out.append(gs @ x)
    return torch.stack(out)


def main():
    a = parse_args()
    import torch
    from safetensors.torch import load_file

    lact = run_lact(a)
    chunk_mesa_net = import_fla(a.fla)
    dev = "cuda"
    t = load_file(a.dump, device=dev)

    def to_fla(x):  # [B, H, L, ...] -> [B, L, H, ...]
        return x.transpose(1, 2).contiguous()

    q, k, v, d_o = (to_fla(t[n]) for n in ("q", "k", "v", "d_o"))
    g, beta = (to_fla(t[n]).float() for n in ("g", "beta"))
    lam = t["lambda"].float()

    def fwd():
        return chunk_mesa_net(q, k, v, g, beta, lam, max_CG_iteration=a.steps)[0]

    ins = [x.detach().clone().requires_grad_(True) for x in (q, k, v, g, beta, lam)]

    def fwd_bwd():
        for x in ins:
            x.grad = None
        o = chunk_mesa_net(*ins, max_CG_iteration=a.steps)[0]
        o.backward(d_o)
        return o

    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.no_grad():
        ms_f = median_ms(torch, fwd, a.iters)
    ms_fb = median_ms(torch, fwd_bwd, a.iters)
    held = sum(x.numel() * x.element_size() for x in ins + [d_o])
    peak = (torch.cuda.max_memory_allocated() - base + held) / 2**30
    o_fla = fwd_bwd()
    grads_fla = [x.grad for x in ins]

    o_lact = to_fla(t["o"])
    names = ("d_q", "d_k", "d_v", "d_g", "d_beta", "d_lambda")
    grads_lact = [to_fla(t[n]) if n != "d_lambda" else t[n] for n in names]

    lf, lb = lact["forward"]["ms"], lact["fwd+bwd"]["ms"]
    print(f"mesa B={a.batch} H={a.heads} L={a.len} d={a.dim} chunk=64 cg_steps={a.steps} bf16, "
          f"medians of {a.iters} runs (CUDA events)")
    print(f"{'':24}{'lact':>12}{'FLA':>12}{'FLA / lact':>12}")
    print(f"{'forward ms':24}{lf:12.3f}{ms_f:12.3f}{ms_f / lf:12.2f}")
    print(f"{'forward+backward ms':24}{lb:12.3f}{ms_fb:12.3f}{ms_fb / lb:12.2f}")
    if "fwd+bwd-solve-again" in lact:
        la = lact["fwd+bwd-solve-again"]["ms"]
        print(f"{'  lact solving x again':24}{la:12.3f}{ms_fb:12.3f}{ms_fb / la:12.2f}")
    print(f"{'peak GiB':24}{lact['fwd+bwd']['peak_gib']:12.2f}{peak:12.2f}   "
          "(inputs, d_o, outputs, gradients and what the calls allocate)")
    print(f"lact CG steps {lact['residual']['cg_steps']}, residual "
          f"{lact['residual']['residual']:.3e} (max over tokens of |q - A x| / |q|)")
    print(f"relative difference lact vs FLA: o {rel(torch, o_lact, o_fla):.3e}")
    for n, gl, gf in zip(names, grads_lact, grads_fla):
        print(f"  {n:9} {rel(torch, gl, gf):.3e}")

    n = min(a.exact_tokens, a.len)
    if n > 0:
        ref = exact_head(torch, t["q"][0, 0], t["k"][0, 0], t["v"][0, 0], t["g"][0, 0],
                         t["beta"][0, 0], t["lambda"][0], n)
        print(f"against a float64 solve (batch 0, head 0, first {n} tokens): "
              f"lact {rel(torch, t['o'][0, 0, :n], ref):.3e}, "
              f"FLA {rel(torch, o_fla[0, :n, 0], ref):.3e}")


if __name__ == "__main__":
    main()
