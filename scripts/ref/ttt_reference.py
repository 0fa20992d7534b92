#!/usr/bin/env python3
"""PyTorch twin of the `ttt` op (specs/lact.md), written from the spec.

The forward is plain tensor code; torch autograd gives the backward, so this
checks the hand-written C backward independently.

    python3 ttt_reference.py --check IN.safetensors --against OUT.safetensors \
        [--order causal|bidirectional] [--chunk 64] [--n-ctx N] \
        [--muon off|table|fixed] [--dtype float64|float32] [--device cuda]

IN holds the inputs q, k, v [N, L, d], lr0, lr1, lr2 [N, L], optionally
momentum [N, L], w0, w2 [N, dh, d], w1 [N, d, dh], and optionally d_o
[N, L, d]. OUT is what `lact op ttt --in IN --out OUT` wrote: o and, when d_o
was given, the gradients d_<input>. The script prints the relative error
‖ours − theirs‖ / ‖ours‖ of every tensor present in both and exits non-zero
when one exceeds --tol.
"""

import argparse
import json
import struct
import sys

import torch

ROW_EPS = 1e-5
NS_EPS = 1e-7
NS_TABLE = [
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
]
NS_FIXED = [(3.4445, -4.7750, 2.0315)] * 5
INPUTS = ["q", "k", "v", "lr0", "lr1", "lr2", "momentum", "w0", "w1", "w2"]

# ---- safetensors, read and written without extra packages --------------------

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "U8": torch.uint8,
}


def load_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: too short for a safetensors header")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = blob[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dt = _DTYPES[info["dtype"]]
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out


# ---- the op ------------------------------------------------------------------


def order_causal(length, chunk):
    ops = []
    n = (length + chunk - 1) // chunk
    for c in range(n):
        ops.append((c * chunk, min(length, (c + 1) * chunk), c + 1 < n, True))
    return ops


def order_bidirectional(length, n_ctx, chunk):
    ops = [(s, min(n_ctx, s + chunk), True, False) for s in range(0, n_ctx, chunk)]
    ops.append((0, length, False, True))
    return ops


def parse_order(text):
    """'start:end:u:a,...' with u, a in {0, 1}."""
    ops = []
    for item in text.split(","):
        s, e, u, a = item.split(":")
        ops.append((int(s), int(e), u == "1", a == "1"))
    return ops


def fast_net(w0, w1, w2, x):
    """f_W(x) = W1 (silu(W0 x) * (W2 x)); x [N, T, d] -> [N, T, d]."""
    a = x @ w0.transpose(1, 2)
    b = x @ w2.transpose(1, 2)
    return (torch.nn.functional.silu(a) * b) @ w1.transpose(1, 2)


def newton_schulz(g, coefs):
    """NS5 per batch item: wide orientation, Frobenius normalisation."""
    tall = g.shape[-2] > g.shape[-1]
    x = g.transpose(-2, -1) if tall else g
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + NS_EPS)
    for a, b, c in coefs:
        s = x @ x.transpose(-2, -1)
        x = a * x + (b * s + c * (s @ s)) @ x
    return x.transpose(-2, -1) if tall else x


def renorm_rows(w, r0):
    return w / (w.norm(dim=-1, keepdim=True) + ROW_EPS) * r0


def ttt_forward(q, k, v, lr0, lr1, lr2, momentum, w0, w1, w2, ops, muon):
    coefs = None if muon == "off" else (NS_TABLE if muon == "table" else NS_FIXED)
    r0 = [w.norm(dim=-1, keepdim=True) for w in (w0, w1, w2)]
    w = [w0, w1, w2]
    m = [torch.zeros_like(x) for x in w]
    # Rows of o are sums over the apply ops covering them.
    o = torch.zeros_like(q)
    for start, end, update, apply in ops:
        if apply:
            out = fast_net(w[0], w[1], w[2], q[:, start:end])
            pad = (0, 0, start, q.shape[1] - end)
            o = o + torch.nn.functional.pad(out, pad)
        if not update:
            continue
        kc, vc = k[:, start:end], v[:, start:end]
        a = kc @ w[0].transpose(1, 2)
        b = kc @ w[2].transpose(1, 2)
        e = vc @ w[1]  # rows of W1ᵀ v
        sg = torch.sigmoid(a)
        s = a * sg
        ds = sg * (1 + a * (1 - sg))
        l0 = lr0[:, start:end, None]
        l1 = lr1[:, start:end, None]
        l2 = lr2[:, start:end, None]
        g1 = vc.transpose(1, 2) @ (l1 * s * b)
        g2 = (l2 * e * s).transpose(1, 2) @ kc
        g0 = (l0 * e * b * ds).transpose(1, 2) @ kc
        grads = [g0, g1, g2]
        beta = momentum[:, start:end].mean(dim=1)[:, None, None] if momentum is not None else None
        for i in range(3):
            g = grads[i]
            if beta is not None:
                m[i] = beta * m[i] + g
                g = m[i]
            if coefs is not None:
                g = newton_schulz(g, coefs)
            w[i] = renorm_rows(w[i] + g, r0[i])
    return o


def rel_err(ours, theirs):
    ours = ours.double().cpu()
    theirs = theirs.double().cpu()
    den = ours.norm().item()
    num = (ours - theirs).norm().item()
    return num / den if den > 0 else num


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", required=True, metavar="IN.safetensors")
    p.add_argument("--against", metavar="OUT.safetensors", help="outputs of `lact op ttt`")
    p.add_argument("--order", default="causal", choices=["causal", "bidirectional"])
    p.add_argument("--custom-order", metavar="S:E:U:A,...", help="overrides --order")
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--n-ctx", type=int, default=0, help="bidirectional: update tokens (0 = L)")
    p.add_argument("--muon", default="off", choices=["off", "table", "fixed"])
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()

    dt = getattr(torch, args.dtype)
    src = load_safetensors(args.check)
    missing = [n for n in INPUTS if n != "momentum" and n not in src]
    if missing:
        sys.exit(f"{args.check}: missing input tensors {', '.join(missing)}")
    x = {}
    for n in INPUTS:
        if n in src:
            x[n] = src[n].to(device=args.device, dtype=dt).requires_grad_(True)
    length = x["q"].shape[1]
    if args.custom_order:
        ops = parse_order(args.custom_order)
    elif args.order == "causal":
        ops = order_causal(length, args.chunk)
    else:
        ops = order_bidirectional(length, args.n_ctx or length, args.chunk)

    o = ttt_forward(x["q"], x["k"], x["v"], x["lr0"], x["lr1"], x["lr2"], x.get("momentum"),
                    x["w0"], x["w1"], x["w2"], ops, args.muon)
    ours = {"o": o.detach()}
    if "d_o" in src:
        d_o = src["d_o"].to(device=args.device, dtype=dt)
        o.backward(d_o)
        for n, t in x.items():
            ours["d_" + n] = t.grad.detach() if t.grad is not None else torch.zeros_like(t)

    if not args.against:
        for n, t in ours.items():
            print(f"{n:12s} {list(t.shape)} norm {t.double().norm().item():.6g}")
        return 0
    theirs = load_safetensors(args.against)
    worst = 0.0
    compared = 0
    for n, t in ours.items():
        if n not in theirs:
            print(f"{n:12s} absent from {args.against}")
            continue
        if list(theirs[n].shape) != list(t.shape):
            print(f"{n:12s} shape {list(theirs[n].shape)} != {list(t.shape)}")
            worst = float("inf")
            continue
        e = rel_err(t, theirs[n])
        compared += 1
        worst = max(worst, e)
        print(f"{n:12s} rel err {e:.3e}")
    if compared == 0:
        sys.exit(f"{args.against}: no tensor in common with the reference")
    print(f"worst {worst:.3e} (tol {args.tol:g})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
