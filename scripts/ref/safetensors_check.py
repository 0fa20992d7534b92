#!/usr/bin/env python3
"""Cross-check lact's safetensors files against the reference `safetensors` package.

Commands:
  write FILE      write the pattern file (every dtype lact reads, a 0-d, a 5-d
                  and an empty tensor, plus metadata) for the C side to read
  read FILE       load FILE with the reference reader and print each tensor's
                  name, dtype, shape, sum and CRC-32 of its bytes
  verify FILE     check that FILE holds exactly the pattern tensors (e.g. a copy
                  lact wrote back after reading the pattern file)
  compare A B     check that two files hold the same tensors, bit for bit

Exit status: 0 when everything matches, 1 on a mismatch, 2 on bad usage.

The pattern: tensor number k (its position in PATTERN) holds, at flat index i,
    (7 * i + 3 * k) % 23 - 11      (for U8: (7 * i + 3 * k) % 23)
which every listed dtype represents exactly. tests/io/test_safetensors.c checks
the same pattern when LACT_ST_REF_FILE names a file written by `write`.

Round trip on a machine with PyTorch:
  python3 scripts/ref/safetensors_check.py write /tmp/ref.safetensors
  LACT_ST_REF_FILE=/tmp/ref.safetensors LACT_ST_REF_OUT=/tmp/lact.safetensors \\
      build/tests/io_test_safetensors
  python3 scripts/ref/safetensors_check.py verify /tmp/lact.safetensors
"""

import argparse
import sys
import zlib

import numpy as np

try:
    import torch
    from safetensors.torch import save_file as torch_save
except ImportError:  # numpy alone cannot hold bfloat16
    torch = None
from safetensors import safe_open
from safetensors.numpy import save_file as numpy_save

# name, safetensors dtype, shape
PATTERN = [
    ("f32", "F32", (3, 4)),
    ("f64", "F64", (5,)),
    ("f16", "F16", (2, 3)),
    ("bf16", "BF16", (4, 2)),
    ("i32", "I32", (7,)),
    ("i64", "I64", (2, 2)),
    ("u8", "U8", (9,)),
    ("scalar", "F32", ()),
    ("five_d", "F32", (2, 1, 2, 1, 3)),
    ("empty", "F32", (0, 3)),
]
METADATA = {"source": "safetensors_check.py", "note": "pattern v1"}

NP_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32,
             "I64": np.int64, "U8": np.uint8}


def pattern_values(k, dtype, shape):
    """The pattern for tensor k as float64 values of the given shape."""
    n = int(np.prod(shape, dtype=np.int64))
    v = (7 * np.arange(n, dtype=np.int64) + 3 * k) % 23
    if dtype != "U8":
        v = v - 11
    return v.astype(np.float64).reshape(shape)


def write_pattern(path):
    if torch is not None:
        tdt = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16,
               "BF16": torch.bfloat16, "I32": torch.int32, "I64": torch.int64,
               "U8": torch.uint8}
        tensors = {name: torch.from_numpy(pattern_values(k, dt, shape)).to(tdt[dt])
                   for k, (name, dt, shape) in enumerate(PATTERN)}
        torch_save(tensors, path, metadata=METADATA)
    else:
        tensors = {name: pattern_values(k, dt, shape).astype(NP_DTYPES[dt])
                   for k, (name, dt, shape) in enumerate(PATTERN) if dt in NP_DTYPES}
        numpy_save(tensors, path, metadata=METADATA)
        print("note: PyTorch not found, so the BF16 tensor is left out", file=sys.stderr)
    print(f"wrote {len(tensors)} tensors to {path}")


class Tensor:
    """What the checks need from one tensor: dtype, shape, values, raw bytes."""

    def __init__(self, dtype, shape, values, raw):
        self.dtype, self.shape, self.values, self.raw = dtype, tuple(shape), values, raw

    def crc(self):
        return zlib.crc32(self.raw) & 0xFFFFFFFF


def load(path):
    """Loads every tensor of path through the reference reader (which
    validates the header, offsets and sizes itself), plus the metadata."""
    out = {}
    framework = "pt" if torch is not None else "np"
    with safe_open(path, framework=framework) as f:
        meta = f.metadata() or {}
        for name in f.keys():
            t = f.get_tensor(name)
            if torch is not None:
                dtype = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
                         torch.bfloat16: "BF16", torch.int32: "I32", torch.int64: "I64",
                         torch.uint8: "U8"}.get(t.dtype, str(t.dtype))
                flat = t.contiguous().reshape(-1)
                raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
                values = flat.double().numpy().reshape(tuple(t.shape))
                out[name] = Tensor(dtype, t.shape, values, raw)
            else:
                dtype = {np.dtype(v): k for k, v in NP_DTYPES.items()}.get(t.dtype, str(t.dtype))
                out[name] = Tensor(dtype, t.shape, t.astype(np.float64),
                                   np.ascontiguousarray(t).tobytes())
    return out, meta


def cmd_read(args):
    tensors, meta = load(args.file)
    print(f"{args.file}: {len(tensors)} tensors")
    for name in sorted(tensors):
        t = tensors[name]
        total = float(t.values.sum()) if t.values.size else 0.0
        print(f"  {name:<32} {t.dtype:<5} {str(list(t.shape)):<20} "
              f"sum {total:<14.6g} crc32 {t.crc():08x}")
    for key in sorted(meta):
        print(f"  metadata {key} = {meta[key][:80]!r}")
    return 0


def cmd_verify(args):
    tensors, _ = load(args.file)
    problems = []
    expected = {name for name, _, _ in PATTERN}
    for k, (name, dt, shape) in enumerate(PATTERN):
        if name not in tensors:
            if dt == "BF16" and torch is None:
                continue
            problems.append(f"{name}: missing")
            continue
        t = tensors[name]
        if t.dtype != dt or t.shape != shape:
            problems.append(f"{name}: {t.dtype} {list(t.shape)}, expected {dt} {list(shape)}")
        elif not np.array_equal(t.values, pattern_values(k, dt, shape)):
            problems.append(f"{name}: values differ from the pattern")
    for name in sorted(set(tensors) - expected):
        problems.append(f"{name}: not in the pattern")
    return report(args.file, problems, len(tensors))


def cmd_compare(args):
    a, _ = load(args.a)
    b, _ = load(args.b)
    problems = [f"{n}: only in {args.a}" for n in sorted(set(a) - set(b))]
    problems += [f"{n}: only in {args.b}" for n in sorted(set(b) - set(a))]
    for name in sorted(set(a) & set(b)):
        x, y = a[name], b[name]
        if (x.dtype, x.shape) != (y.dtype, y.shape):
            problems.append(f"{name}: {x.dtype} {list(x.shape)} vs {y.dtype} {list(y.shape)}")
        elif x.raw != y.raw:
            problems.append(f"{name}: bytes differ (crc32 {x.crc():08x} vs {y.crc():08x})")
    return report(f"{args.a} vs {args.b}", problems, len(a))


def report(what, problems, n):
    for p in problems:
        print(f"MISMATCH {p}")
    if problems:
        print(f"{what}: {len(problems)} mismatches")
        return 1
    print(f"{what}: {n} tensors match")
    return 0


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("write", help="write the pattern file")
    p.add_argument("file")
    p.set_defaults(run=lambda a: write_pattern(a.file) or 0)
    p = sub.add_parser("read", help="print the tensors of a file")
    p.add_argument("file")
    p.set_defaults(run=cmd_read)
    p = sub.add_parser("verify", help="check a file holds the pattern")
    p.add_argument("file")
    p.set_defaults(run=cmd_verify)
    p = sub.add_parser("compare", help="check two files hold the same tensors")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(run=cmd_compare)
    args = parser.parse_args()
    try:
        return args.run(args)
    except Exception as e:  # a file the reference reader rejects is a mismatch
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
