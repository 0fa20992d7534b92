#!/usr/bin/env python3
"""PyTorch twin of lact's language model (core/nn/lm_model.h), for parity checks.

It reads the same JSON run config (configs/lm-*.json; training keys are
ignored) and builds the same network with the same parametrisation, so the
same weights and the same token batch give the same loss and gradients:

  token embedding [V, D]
  N pre-norm blocks:  h = x + mixer(rmsnorm(x) * norm1)
                      out = h + w_down(silu(w_gate n) * w_up n),  n = rmsnorm(h) * norm2
  rmsnorm * norm_f, head (the embedding when tied), mean cross-entropy.

The mixer of layer i is mixers[i % len(mixers)]:

  lact       q, k, v = silu(x wq^T), silu(x wk^T), silu(x wv^T)
             fast path: rope(l2norm_head(q * q_scale + q_offset)) (eps 1e-5), same for k
             lr_i = softplus(x lr_w^T + lr_b + softplus^-1(base_lr)), rows of lr_w ordered (i, h)
             beta = sigmoid(x mom_w^T + mom_b)
             o = ttt(...) in the shifted block-causal order of `chunk` (ttt_reference.py)
             u = rmsnorm_head(o) * o_norm + window_attention(rope(q), rope(k), v)
             y = u wo^T
  attention  q, k = rope(rmsnorm_head(x wq^T) * q_norm), same for k; v = x wv^T
             y = (causal_attention(q, k, v) * sigmoid(x wg^T + bg)) wo^T

RoPE is the rotate-half convention, pair (i, i + d/2) turned by p * theta^(-2i/d).
The state-dict names of this module tree are the default name map of
`lact lm import` / `lact lm export` (core/train/lm_import.h).

    lm_reference.py make --config CFG --weights W.safetensors --tokens T.safetensors \\
        --batch B --seq L [--seed S] [--perturb 0.1]
    lm_reference.py loss --config CFG --weights W.safetensors --tokens T.safetensors \\
        [--grads-out G.safetensors] [--device cuda] [--dtype float32|float64]
    lm_reference.py compare A.safetensors B.safetensors [--tol 1e-3]

`make` draws weights like lact's init (with --perturb, norms, scales, offsets
and biases move away from 1 and 0 so that a mix-up of them shows) and a batch
of token ids. `loss` prints the mean loss and writes the gradients under
lact's parameter names. `compare` prints, per tensor, the norm-wise relative
error |a - b| / |b| and the largest element error over the largest element.
"""

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ttt_reference import load_safetensors, order_causal, ttt_forward  # noqa: E402

L2_EPS = 1e-5

# ---- the config ------------------------------------------------------------------

# lact_lm_run_defaults() for the keys the model reads.
DEFAULTS = {
    "vocab": 257, "d_model": 64, "n_layers": 2, "n_heads": 2, "mixers": "lact",
    "mlp_mult": 4.0, "chunk": 32, "window": 32, "inter_multi": 2, "base_lr": 1e-3,
    "muon": True, "momentum": True, "tie_embeddings": True, "init_std": 0.02,
    "rope_theta": 10000.0, "norm_eps": 1e-6, "seq_len": 128, "batch": 8,
}
# Training keys, and the Mesa mixer's (the twin has no Mesa layer).
IGNORED_KEYS = {
    "mesa_chunk", "mesa_cg_steps", "accum", "steps", "warmup", "schedule", "lr", "min_lr", "decay_frac", "weight_decay",
    "beta1", "beta2", "eps", "grad_clip", "log_every", "eval_every", "eval_batches",
    "checkpoint_every", "seed",
}


def load_config(path, overrides=()):
    with open(path) as f:
        raw = json.load(f)
    cfg = dict(DEFAULTS)
    for key, value in list(raw.items()) + [tuple(o.split("=", 1)) for o in overrides]:
        if key not in DEFAULTS and key not in IGNORED_KEYS:
            raise SystemExit(f"{path}: unknown key '{key}'")
        if key in DEFAULTS and isinstance(value, str) and not isinstance(DEFAULTS[key], str):
            value = json.loads(value)
        cfg[key] = value
    names = [m.strip() for m in cfg["mixers"].split(",")]
    if len(names) > cfg["n_layers"] or any(m not in ("lact", "attention", "attn") for m in names):
        raise SystemExit(f"mixers '{cfg['mixers']}': the twin has lact and attention, at most "
                         "n_layers of them")
    cfg["mixer_list"] = [names[i % len(names)] for i in range(cfg["n_layers"])]
    return cfg


# ---- pieces ----------------------------------------------------------------------


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def linear(dim_in, dim_out, bias=False):
    return torch.nn.Linear(dim_in, dim_out, bias=bias)


def rope(x, theta):
    """x [B, L, H, d]; angles in double, as lact forms them."""
    length, d = x.shape[1], x.shape[-1]
    half = d // 2
    inv = float(theta) ** (-2.0 * torch.arange(half, dtype=torch.float64) / d)
    ang = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    cos = ang.cos().to(device=x.device, dtype=x.dtype)[None, :, None, :]
    sin = ang.sin().to(device=x.device, dtype=x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention(q, k, v, window):
    """Softmax attention, q k v [B, H, L, d], scale 1/sqrt(d); key j is seen from
    query i when j <= i and (window == 0 or j > i - window)."""
    length = q.shape[2]
    i = torch.arange(length, device=q.device)
    keep = i[None, :] <= i[:, None]
    if window > 0:
        keep = keep & (i[None, :] > i[:, None] - window)
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(~keep, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def heads(x, n_heads):
    """[B, L, H*d] -> [B, H, L, d]."""
    b, length, _ = x.shape
    return x.view(b, length, n_heads, -1).transpose(1, 2)


# ---- the mixers ------------------------------------------------------------------


class LaCT(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim, h = cfg["d_model"], cfg["n_heads"]
        d = dim // h
        dh = d * cfg["inter_multi"]
        self.cfg, self.h, self.d = cfg, h, d
        self.wq, self.wk, self.wv = linear(dim, dim), linear(dim, dim), linear(dim, dim)
        self.q_scale = torch.nn.Parameter(torch.ones(dim))
        self.q_offset = torch.nn.Parameter(torch.zeros(dim))
        self.k_scale = torch.nn.Parameter(torch.ones(dim))
        self.k_offset = torch.nn.Parameter(torch.zeros(dim))
        self.lr = linear(dim, 3 * h, bias=True)
        if cfg["momentum"]:
            self.mom = linear(dim, h, bias=True)
        self.w0 = torch.nn.Parameter(torch.empty(h, dh, d))
        self.w1 = torch.nn.Parameter(torch.empty(h, d, dh))
        self.w2 = torch.nn.Parameter(torch.empty(h, dh, d))
        self.o_norm = RMSNorm(d, cfg["norm_eps"])
        self.wo = linear(dim, dim)
        # lact_nn_inv_softplus: log(expm1(base_lr)) in double, used as a float.
        self.shift = float(torch.tensor(math.log(math.expm1(cfg["base_lr"])), dtype=torch.float32))

    def fast_input(self, x, scale, offset):
        b, length, _ = x.shape
        xs = (x * scale + offset).view(b, length, self.h, self.d)
        xn = xs / (xs.norm(dim=-1, keepdim=True) + L2_EPS)
        return rope(xn, self.cfg["rope_theta"]).transpose(1, 2).reshape(b * self.h, length, self.d)

    def forward(self, x):
        cfg, h, d = self.cfg, self.h, self.d
        b, length, dim = x.shape
        q, k, v = F.silu(self.wq(x)), F.silu(self.wk(x)), F.silu(self.wv(x))
        qf = self.fast_input(q, self.q_scale, self.q_offset)
        kf = self.fast_input(k, self.k_scale, self.k_offset)
        vh = heads(v, h)  # [B, H, L, d]
        vf = vh.reshape(b * h, length, d)
        z = self.lr(x).view(b, length, 3, h).permute(2, 0, 3, 1).reshape(3, b * h, length)
        lr = F.softplus(z + self.shift)
        beta = None
        if cfg["momentum"]:
            beta = torch.sigmoid(self.mom(x).permute(0, 2, 1).reshape(b * h, length))
        w = [p.repeat(b, 1, 1) for p in (self.w0, self.w1, self.w2)]
        ops = order_causal(length, cfg["chunk"])
        o = ttt_forward(qf, kf, vf, lr[0], lr[1], lr[2], beta, w[0], w[1], w[2], ops,
                        "table" if cfg["muon"] else "off")
        u = self.o_norm(o).view(b, h, length, d)
        if cfg["window"] > 0:
            qa = rope(q.view(b, length, h, d), cfg["rope_theta"]).transpose(1, 2)
            ka = rope(k.view(b, length, h, d), cfg["rope_theta"]).transpose(1, 2)
            u = u + attention(qa, ka, vh, cfg["window"])
        return self.wo(u.transpose(1, 2).reshape(b, length, dim))


class GatedAttention(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim, h = cfg["d_model"], cfg["n_heads"]
        self.cfg, self.h, self.d = cfg, h, dim // h
        self.wq, self.wk, self.wv = linear(dim, dim), linear(dim, dim), linear(dim, dim)
        self.wg = linear(dim, dim, bias=True)
        self.q_norm = RMSNorm(self.d, cfg["norm_eps"])
        self.k_norm = RMSNorm(self.d, cfg["norm_eps"])
        self.wo = linear(dim, dim)

    def forward(self, x):
        b, length, dim = x.shape
        theta = self.cfg["rope_theta"]
        q = rope(self.q_norm(self.wq(x).view(b, length, self.h, self.d)), theta).transpose(1, 2)
        k = rope(self.k_norm(self.wk(x).view(b, length, self.h, self.d)), theta).transpose(1, 2)
        o = attention(q, k, heads(self.wv(x), self.h), 0) * torch.sigmoid(heads(self.wg(x), self.h))
        return self.wo(o.transpose(1, 2).reshape(b, length, dim))


class MLP(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w_gate, self.w_up, self.w_down = linear(dim, hidden), linear(dim, hidden), linear(hidden, dim)

    def forward(self, x):
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(torch.nn.Module):
    def __init__(self, cfg, mixer):
        super().__init__()
        dim, eps = cfg["d_model"], cfg["norm_eps"]
        self.norm1 = RMSNorm(dim, eps)
        if mixer == "lact":
            self.lact = LaCT(cfg)
        else:
            self.attn = GatedAttention(cfg)
        self.norm2 = RMSNorm(dim, eps)
        # round(mlp_mult * D), half away from zero as C's llround.
        self.mlp = MLP(dim, int(math.floor(cfg["mlp_mult"] * dim + 0.5)))

    def forward(self, x):
        mixer = self.lact if hasattr(self, "lact") else self.attn
        h = x + mixer(self.norm1(x))
        return h + self.mlp(self.norm2(h))


class LM(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = torch.nn.Embedding(cfg["vocab"], cfg["d_model"])
        self.layers = torch.nn.ModuleList(Block(cfg, m) for m in cfg["mixer_list"])
        self.norm_f = RMSNorm(cfg["d_model"], cfg["norm_eps"])
        if not cfg["tie_embeddings"]:
            self.head = linear(cfg["d_model"], cfg["vocab"])

    def forward(self, tokens):
        """Mean cross-entropy of tokens[:, 1:] given tokens[:, :-1]."""
        ids, targets = tokens[:, :-1], tokens[:, 1:]
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        w = self.embed.weight if self.cfg["tie_embeddings"] else self.head.weight
        logits = self.norm_f(x) @ w.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


# ---- names -----------------------------------------------------------------------

# The default name map of core/train/lm_import.h, file name -> lact name.
_RENAMED = {"lr.weight": "lr_w", "lr.bias": "lr_b", "mom.weight": "mom_w",
            "mom.bias": "mom_b", "wg.bias": "bg", "decay.weight": "w_decay",
            "decay.bias": "b_decay", "beta.weight": "w_beta", "beta.bias": "b_beta"}
_BARE = {"q_scale", "q_offset", "k_scale", "k_offset", "w0", "w1", "w2", "lambda"}


def lact_name(name):
    for tail, short in _RENAMED.items():
        if name.endswith("." + tail):
            return name[: -len(tail)] + short
    last = name.rsplit(".", 1)[-1]
    if last in _BARE:
        return name
    if not name.endswith(".weight"):
        raise ValueError(f"'{name}' has no lact name")
    return name[: -len(".weight")]


# ---- init --------------------------------------------------------------------------


@torch.no_grad()
def init_weights(model, cfg, seed, perturb):
    """lact's init kinds (core/nn): projections N(0, init_std), MLP w_down
    N(0, init_std / sqrt(2N)), fast weights N(0, 1/fan_in), norms and scales 1,
    offsets and biases 0; perturb moves the last two groups by perturb * N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    std, out_std = cfg["init_std"], cfg["init_std"] / math.sqrt(2.0 * cfg["n_layers"])

    def normal(t, s):
        t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64) * s)

    for name, p in model.named_parameters():
        last = lact_name(name).rsplit(".", 1)[-1]
        if last in ("w0", "w2"):
            normal(p, 1.0 / math.sqrt(p.shape[-1]))
        elif last == "w1":
            normal(p, 1.0 / math.sqrt(p.shape[-1]))
        elif p.dim() >= 2:
            normal(p, out_std if last == "w_down" else std)
        else:
            base = 0.0 if last in ("q_offset", "k_offset", "lr_b", "mom_b", "bg") else 1.0
            p.fill_(base)
            if perturb > 0:
                p.add_(torch.randn(p.shape, generator=g, dtype=torch.float64).float() * perturb)


# ---- safetensors writing -------------------------------------------------------------

_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32"}


def save_safetensors(path, tensors, metadata=None):
    header, blobs, at = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


# ---- commands ----------------------------------------------------------------------


def cmd_make(a):
    cfg = load_config(a.config, a.set)
    model = LM(cfg)
    init_weights(model, cfg, a.seed, a.perturb)
    save_safetensors(a.weights, dict(model.state_dict()), {"format": "pt"})
    g = torch.Generator().manual_seed(a.seed + 1)
    tokens = torch.randint(0, cfg["vocab"], (a.batch, a.seq + 1), generator=g, dtype=torch.int64)
    save_safetensors(a.tokens, {"tokens": tokens.to(torch.int32)})
    n = sum(p.numel() for p in model.parameters())
    print(f"make: {n} parameters, {len(model.state_dict())} tensors, batch {a.batch} x {a.seq}")


def cmd_loss(a):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dt = getattr(torch, a.dtype)
    cfg = load_config(a.config, a.set)
    model = LM(cfg)
    weights = load_safetensors(a.weights)
    state = {k: v.to(torch.float32) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"{a.weights}: missing {missing}, unexpected {unexpected}")
    model = model.to(device=a.device, dtype=dt)
    tokens = load_safetensors(a.tokens)["tokens"].to(device=a.device, dtype=torch.int64)
    loss = model(tokens)
    if a.grads_out:
        loss.backward()
        grads = {lact_name(n): p.grad.float() for n, p in model.named_parameters()}
        save_safetensors(a.grads_out, grads)
    print(json.dumps({"loss": loss.item(), "batch": tokens.shape[0],
                      "seq_len": tokens.shape[1] - 1, "device": a.device, "dtype": a.dtype}))


def compare(a_path, b_path):
    """Rows (name, norm-wise rel err, max-element rel err) of A against B."""
    ta, tb = load_safetensors(a_path), load_safetensors(b_path)
    if set(ta) != set(tb):
        raise SystemExit(f"tensor names differ: only in {a_path}: {sorted(set(ta) - set(tb))}, "
                         f"only in {b_path}: {sorted(set(tb) - set(ta))}")
    rows = []
    for name in sorted(tb):
        x, y = ta[name].double(), tb[name].double()
        if x.shape != y.shape:
            raise SystemExit(f"{name}: shape {list(x.shape)} vs {list(y.shape)}")
        den = y.norm().item()
        rel = (x - y).norm().item() / den if den > 0 else (x - y).norm().item()
        top = y.abs().max().item()
        mx = (x - y).abs().max().item() / top if top > 0 else (x - y).abs().max().item()
        rows.append((name, rel, mx))
    return rows


def cmd_compare(a):
    rows = compare(a.a, a.b)
    width = max(len(r[0]) for r in rows)
    print(f"{'tensor':{width}s}  {'rel err':>9s}  {'max err':>9s}")
    for name, rel, mx in rows:
        print(f"{name:{width}s}  {rel:9.2e}  {mx:9.2e}")
    worst = max(r[1] for r in rows)
    print(f"worst {worst:.2e} (tol {a.tol:g})")
    return 0 if worst <= a.tol else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="random weights and a token batch")
    m.add_argument("--config", required=True)
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    m.add_argument("--weights", required=True)
    m.add_argument("--tokens", required=True)
    m.add_argument("--batch", type=int, default=1)
    m.add_argument("--seq", type=int, required=True)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--perturb", type=float, default=0.1)
    lo = sub.add_parser("loss", help="loss and gradients")
    lo.add_argument("--config", required=True)
    lo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    lo.add_argument("--weights", required=True)
    lo.add_argument("--tokens", required=True)
    lo.add_argument("--grads-out")
    lo.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    lo.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    c = sub.add_parser("compare", help="per-tensor errors of A against B")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--tol", type=float, default=1e-3)
    a = p.parse_args()
    if a.cmd == "make":
        return cmd_make(a)
    if a.cmd == "loss":
        return cmd_loss(a)
    return cmd_compare(a)


if __name__ == "__main__":
    sys.exit(main())
