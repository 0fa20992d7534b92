#!/usr/bin/env python3
"""Loss and gradient parity of lact's language model with its PyTorch twin.

    python3 scripts/ref/lm_parity.py --lact build/bin/lact [--work DIR] [--full]

For a reduced `small` config (configs/lm-small.json with fewer layers and a
shorter sequence, chunk and window scaled with it; the LaCT + attention
pattern, Muon and momentum kept) the twin (lm_reference.py) draws weights and
a token batch and writes them as safetensors; `lact lm import` turns the
weights into a checkpoint; `lact lm loss --grads-out` gives lact's loss and
gradients on the CPU and on CUDA; the twin gives its own in float32 and, as
the reference for both, in float64. Printed: the losses, and per tensor the
norm-wise relative error of each float32 gradient against the float64 one
and of lact's against the twin's float32. Exit 1 when a float32 loss is more
than --loss-tol away (relative) from the float64 loss.

With --full the whole `small` config (12 layers, 4096 tokens) is run too,
loss only, on CUDA and in the twin.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from lm_reference import compare  # noqa: E402


def run(cmd, log):
    t0 = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    secs = time.time() - t0
    log.append((" ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd[:4])), secs))
    print(f"[{secs:6.1f} s] {' '.join(cmd)}", flush=True)
    return out


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def make_config(path, base, sets):
    with open(base) as f:
        cfg = json.load(f)
    cfg.update(sets)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    return cfg


def case(a, name, sets, batch, grads, devices, log):
    w = os.path.join(a.work, name)
    os.makedirs(w, exist_ok=True)
    cfg_path = os.path.join(w, "config.json")
    cfg = make_config(cfg_path, a.config, sets)
    ref = [sys.executable, os.path.join(HERE, "lm_reference.py")]
    p = {k: os.path.join(w, k + ".safetensors")
         for k in ("weights", "tokens", "ckpt", "g_cuda", "g_cpu", "g_twin", "g_twin64")}
    run(ref + ["make", "--config", cfg_path, "--weights", p["weights"], "--tokens", p["tokens"],
               "--batch", str(batch), "--seq", str(cfg["seq_len"]), "--seed", str(a.seed)], log)
    run([a.lact, "lm", "import", "--config", cfg_path, "--weights", p["weights"], "--out",
         p["ckpt"], "--quiet"], log)
    losses = {}
    for dev in devices:
        cmd = [a.lact, "lm", "loss", "--checkpoint", p["ckpt"], "--tokens", p["tokens"],
               "--device", dev, "--json"]
        if grads:
            cmd += ["--grads-out", p["g_" + dev]]
        losses["lact " + dev] = last_json(run(cmd, log))["loss"]
    for dt, key in (("float32", "g_twin"), ("float64", "g_twin64")):
        if dt == "float64" and not grads and not a.full_f64:
            continue
        cmd = ref + ["loss", "--config", cfg_path, "--weights", p["weights"], "--tokens",
                     p["tokens"], "--device", a.twin_device, "--dtype", dt]
        if grads:
            cmd += ["--grads-out", p[key]]
        losses["twin " + dt] = last_json(run(cmd, log))["loss"]
    result = {"case": name, "config": {k: cfg[k] for k in sets}, "batch": batch, "losses": losses}
    truth = losses.get("twin float64", losses["twin float32"])
    result["loss_rel_err"] = {k: abs(v - truth) / abs(truth) for k, v in losses.items()}
    print(f"\n== {name}: batch {batch} x {cfg['seq_len']}, "
          + ", ".join(f"{k}={v}" for k, v in sets.items()))
    for k, v in losses.items():
        print(f"loss {k:14s} {v:.9f}   rel err vs {'twin float64' if 'twin float64' in losses else 'twin float32'} "
              f"{result['loss_rel_err'][k]:.2e}")
    if grads:
        cols = [(d + "/64", "g_" + d, "g_twin64") for d in devices]
        cols += [("twin32/64", "g_twin", "g_twin64")]
        cols += [(d + "/twin", "g_" + d, "g_twin") for d in devices]
        if len(devices) == 2:
            cols += [("cuda/cpu", "g_cuda", "g_cpu")]
        table = {c[0]: {r[0]: (r[1], r[2]) for r in compare(p[c[1]], p[c[2]])} for c in cols}
        names = sorted(next(iter(table.values())))
        width = max(len(n) for n in names)
        print("\nnorm-wise relative error of the gradients (A/B: |A - B| / |B|; 64 = twin float64)")
        print(f"{'tensor':{width}s}  " + "  ".join(f"{c[0]:>10s}" for c in cols))
        for n in names:
            print(f"{n:{width}s}  " + "  ".join(f"{table[c[0]][n][0]:10.2e}" for c in cols))
        print(f"{'worst':{width}s}  "
              + "  ".join(f"{max(v[0] for v in table[c[0]].values()):10.2e}" for c in cols))
        # lr_b's gradient is nearly zero: Newton–Schulz normalises each update,
        # so a common scale of the rates cancels but for the momentum.
        print(f"{'worst but lr_b':{width}s}  " + "  ".join(
            f"{max(v[0] for n, v in table[c[0]].items() if not n.endswith('lr_b')):10.2e}"
            for c in cols))
        print(f"{'max elem (worst)':{width}s}  "
              + "  ".join(f"{max(v[1] for v in table[c[0]].values()):10.2e}" for c in cols))
        result["grads"] = {c: {n: v[0] for n, v in t.items()} for c, t in table.items()}
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lact", default=os.path.join(ROOT, "build", "bin", "lact"))
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "lm-small.json"))
    p.add_argument("--work", default="/tmp/lact_lm_parity")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--devices", default="cuda,cpu", help="where lact runs (comma-separated)")
    p.add_argument("--full", action="store_true", help="also the whole small config (loss only)")
    p.add_argument("--full-f64", action="store_true", help="with --full: the float64 twin too")
    p.add_argument("--twin-device", default="cuda")
    p.add_argument("--loss-tol", type=float, default=1e-3)
    p.add_argument("--json-out", help="write the results here")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    log, results = [], []
    reduced = {"n_layers": a.layers, "seq_len": a.seq, "chunk": a.chunk, "window": a.chunk,
               "batch": a.batch}
    devices = a.devices.split(",")
    results.append(case(a, "reduced", reduced, a.batch, True, devices, log))
    if a.full:
        results.append(case(a, "full", {"seq_len": 4096, "batch": 1}, 1, False, devices[:1], log))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"results": results, "times": log}, f, indent=1)
    worst = max(e for r in results for k, e in r["loss_rel_err"].items())
    print(f"\nworst loss relative error {worst:.2e} (tol {a.loss_tol:g})")
    return 0 if worst <= a.loss_tol else 1


if __name__ == "__main__":
    sys.exit(main())
