#!/usr/bin/env python3
"""Compares `lact lm tokenizer encode` with the Hugging Face `tokenizers`
library on the same tokenizer.json and text: exact id parity, and that the
ids decode back to the text.

usage: tokenizer_check.py LACT_BINARY TOKENIZER_JSON TEXT_FILE [TEXT_FILE...]
Needs `pip install tokenizers`. Exit code 0 when every file matches.
"""
import json
import subprocess
import sys


def lact_encode(binary, tok, data):
    out = subprocess.run([binary, "lm", "tokenizer", "encode", "--tokenizer", tok],
                         input=data, capture_output=True, check=True)
    return json.loads(out.stdout)


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    from tokenizers import Tokenizer  # imported late so --help works without it

    binary, tok_path, files = argv[1], argv[2], argv[3:]
    ref = Tokenizer.from_file(tok_path)
    failed = 0
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        # The reference takes str: compare on valid UTF-8 text only.
        text = data.decode("utf-8", errors="replace")
        data = text.encode("utf-8")
        want = ref.encode(text, add_special_tokens=False).ids
        got = lact_encode(binary, tok_path, data)
        if got != want:
            i = first_difference(got, want)
            print(f"{path}: MISMATCH at token {i}: lact {got[i:i + 8]} vs tokenizers "
                  f"{want[i:i + 8]} ({len(got)} vs {len(want)} tokens)")
            failed += 1
            continue
        back = ref.decode(got, skip_special_tokens=False)
        if back != text:
            print(f"{path}: ids match but decode differs")
            failed += 1
            continue
        print(f"{path}: ok ({len(got)} tokens)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
