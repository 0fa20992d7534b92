#!/usr/bin/env python3
"""PyTorch timings of the shapes of `lact bench attention` (and of the timing
table of tests/kernels/test_attention_cuda.c): bf16 [B, H, L, d] (B = 4,
H = 16, d = 128 unless --batch, --heads, --dim) for L in --len, causal (SDPA with the cuDNN
and the flash backend), sliding window 2048 and block-causal 4096
(flex_attention, compiled). Same FLOP convention: 4·d per unmasked
(query, key) pair and head for the forward, forward + backward = 3.5×
forward. Each case starts after --idle seconds of idle card (1 by default,
as `lact bench attention --idle`), then medians of CUDA-event timings
after warm-up runs for --warmup seconds (0.5 by default, as lact's). With
--energy S, each case's forward + backward, then its forward, run for S
more seconds each while the GPU's energy counter (NVML) is read:
millijoules per run and the mean watts of forward + backward, beside
lact's when its JSON lines have them. The backward returns d_q, d_k, d_v (torch.autograd.grad),
as lact's does; adding them into .grad would time an extra pass. --masks picks the cases. With --lact FILE (the
JSON lines of `lact bench attention --json` on the same GPU) it prints
lact's figures beside PyTorch's and the ratios (PyTorch time / lact time;
above 1 means lact is faster)."""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

B, H, D = 4, 16, 128
REPS = 5
IDLE = 1.0  # seconds the card idles before each case (--idle)
WARMUP = 0.5  # seconds of warm-up runs before each timing (--warmup)
ENERGY = 0.0  # seconds of forward + backward runs read by the energy counter (--energy)


def pairs(kind, arg, L):
    p = torch.arange(L, dtype=torch.float64)
    if kind == "causal":
        return float((p + 1).sum())
    if kind == "window":
        return float(torch.clamp(p + 1, max=arg).sum())
    end = torch.clamp((torch.div(p, arg, rounding_mode="floor") + 1) * arg, max=L)
    return float(end.sum())


def timed(fn):
    # Warm-up by time first, as `lact bench attention --warmup`: the clocks a
    # card holds in the first few hundred ms of heavy work after an idle
    # spell are not the ones it settles at.
    end = time.perf_counter() + WARMUP
    while time.perf_counter() < end:
        fn()
        torch.cuda.synchronize()
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


def energy_counter():
    """A function returning the GPU's energy counter in millijoules (NVML,
    as `lact bench attention --energy` reads it)."""
    import ctypes
    nvml = ctypes.CDLL("libnvidia-ml.so.1")
    if nvml.nvmlInit_v2() != 0:
        raise RuntimeError("nvmlInit failed")
    dev = ctypes.c_void_p()
    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    if hasattr(p, "pci_bus_id"):
        bus = f"{p.pci_domain_id:04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0".encode()
        rc = nvml.nvmlDeviceGetHandleByPciBusId_v2(bus, ctypes.byref(dev))
    else:
        rc = nvml.nvmlDeviceGetHandleByIndex_v2(torch.cuda.current_device(), ctypes.byref(dev))
    if rc != 0:
        raise RuntimeError(f"no NVML handle for the GPU (NVML error {rc})")

    def read():
        mj = ctypes.c_ulonglong()
        rc = nvml.nvmlDeviceGetTotalEnergyConsumption(dev, ctypes.byref(mj))
        if rc != 0:
            raise RuntimeError(f"reading the energy counter failed (NVML error {rc})")
        return mj.value
    return read


def energy_per_run(fn, read):
    """Millijoules per run and mean watts over ENERGY seconds of runs."""
    torch.cuda.synchronize()
    e0, t0, runs = read(), time.perf_counter(), 0
    while runs < 3 or time.perf_counter() - t0 < ENERGY:
        fn()
        runs += 1
        if runs % 4 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    e1, t1 = read(), time.perf_counter()
    return (e1 - e0) / runs, (e1 - e0) * 1e-3 / (t1 - t0)


def sdpa_fn(q, k, v, backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    b = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[backend]

    def fwd():
        with sdpa_kernel(b):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return fwd


def run_length(L, lact, masks, meter):
    dev = "cuda"
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, L, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    dy = torch.randn(B, H, L, D, device=dev, dtype=torch.bfloat16)
    cases = [("causal", "causal", 0, "sdpa-cudnn"), ("causal", "causal", 0, "sdpa-flash"),
             ("window", "window", 2048, "flex"), ("block-causal", "block", 4096, "flex")]
    flex = None
    for name, kind, arg, impl in cases:
        if name not in masks:
            continue
        if impl.startswith("sdpa"):
            fwd = sdpa_fn(q, k, v, impl[5:])
        else:
            try:
                from torch.nn.attention.flex_attention import create_block_mask, flex_attention
            except ImportError:
                print(f"  {name:13s} flex_attention unavailable")
                continue
            if flex is None:
                flex = torch.compile(flex_attention)
            if kind == "window":
                mask = lambda b, h, i, j, w=arg: (j <= i) & (i - j < w)
            else:
                mask = lambda b, h, i, j, n=arg: (j // n) <= (i // n)
            bm = create_block_mask(mask, None, None, L, L, device=dev)
            fwd = lambda bm=bm: flex(q, k, v, block_mask=bm)
        # Each case starts from an idle card, as each case of `lact bench
        # attention` does: a card that has just run another case can hold
        # lower clocks for a while.
        torch.cuda.synchronize()
        time.sleep(IDLE)
        try:
            for _ in range(2):
                torch.autograd.grad(fwd(), (q, k, v), dy)
        except RuntimeError as e:  # a backend that does not take this shape
            print(f"  {name:13s} {impl:11s} {L:7d} unavailable: {str(e).splitlines()[0][:60]}")
            continue
        with torch.no_grad():
            tf = timed(fwd)

        def both():
            # Gradients returned, not accumulated into .grad: lact's timing
            # has no accumulation pass either.
            torch.autograd.grad(fwd(), (q, k, v), dy)

        tb = timed(both)
        fl = 4.0 * D * pairs(kind, arg, L) * B * H
        line = (f"  {name:13s} {impl:11s} {L:7d} {tf:9.3f} {fl / tf * 1e-9:8.1f} {tb:9.3f} "
                f"{3.5 * fl / tb * 1e-9:8.1f}")
        mine = lact.get((name, L))
        if mine:
            line += (f" | {mine['fwd_ms']:8.3f} {mine['fwd_bwd_ms']:9.3f} | "
                     f"{tf / mine['fwd_ms']:5.2f}x {tb / mine['fwd_bwd_ms']:5.2f}x")
        if meter:
            mj, watts = energy_per_run(both, meter)
            with torch.no_grad():
                mj_f, _ = energy_per_run(fwd, meter)
            line += f" | fwd {mj_f:7.1f} f+b {mj:7.1f} mJ {watts:6.1f} W"
            if mine and "fwd_mj" in mine:
                line += (f" (lact {mine['fwd_mj']:.1f} / {mine['fwd_bwd_mj']:.1f} mJ, "
                         f"{mj_f / mine['fwd_mj']:.2f}x / {mj / mine['fwd_bwd_mj']:.2f}x)")
        print(line)
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--len", default="8192,32768", help="lengths, comma-separated")
    ap.add_argument("--lact", help="JSON lines of `lact bench attention --json` to compare with")
    ap.add_argument("--masks", default="causal,window,block-causal",
                    help="cases to run, comma-separated")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=128, help="head dim (default 128)")
    ap.add_argument("--idle", type=float, default=1.0,
                    help="seconds the card idles before each case (default 1)")
    ap.add_argument("--warmup", type=float, default=0.5,
                    help="seconds of warm-up runs before each timing (default 0.5)")
    ap.add_argument("--energy", type=float, default=0.0,
                    help="seconds of forward + backward runs, then of forward runs, after each "
                         "timing, read by the GPU's energy counter: millijoules per run and mean "
                         "watts (default 0: off)")
    a = ap.parse_args()
    if a.dim < 1:
        ap.error("--dim: must be 1 or more")
    if a.idle < 0:
        ap.error("--idle: must be 0 or more seconds")
    if a.warmup < 0:
        ap.error("--warmup: must be 0 or more seconds")
    if a.energy < 0:
        ap.error("--energy: must be 0 or more seconds")
    known = {"causal", "window", "block-causal"}
    bad = [m for m in a.masks.split(",") if m not in known]
    if bad:
        ap.error(f"--masks: unknown case {bad[0]!r} (known: causal, window, block-causal)")
    global B, H, D, IDLE, WARMUP, ENERGY
    B, H, D, IDLE, WARMUP, ENERGY = a.batch, a.heads, a.dim, a.idle, a.warmup, a.energy
    meter = energy_counter() if ENERGY > 0 else None
    lact = {}
    if a.lact:
        with open(a.lact) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    lact[(r["mask"], int(r["len"]))] = r
    print(f"pytorch {torch.__version__} bf16 [B={B}, H={H}, L, d={D}]; median of {REPS}; "
          f"window 2048, block 4096; {IDLE:g} s idle before each case, {WARMUP:g} s of warm-up "
          f"runs before each timing")
    head = (f"  {'mask':13s} {'impl':11s} {'L':>7s} {'fwd ms':>9s} {'TF/s':>8s} {'f+b ms':>9s} "
            f"{'TF/s':>8s}")
    if lact:
        head += f" | {'lact fwd':>8s} {'lact f+b':>9s} | {'fwd':>6s} {'f+b':>6s}  (PyTorch/lact)"
    print(head)
    for L in (int(x) for x in a.len.split(",")):
        run_length(L, lact, a.masks.split(","), meter)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
