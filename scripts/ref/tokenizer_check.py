#!/usr/bin/env python3
"""Compares `lact lm tokenizer encode` with the Hugging Face `tokenizers`
library on the same tokenizer.json and text: exact id parity, and that the
ids decode back to the text.

usage: tokenizer_check.py LACT_BINARY TOKENIZER_JSON TEXT_FILE [TEXT_FILE...]
       tokenizer_check.py --train LACT_BINARY OUT_DIR TEXT_FILE [TEXT_FILE...]

The second form makes the tokenizers to compare: `tokenizers` trains a
GPT-2-style and a Llama-3-style byte-level BPE on the texts, `lact lm
tokenizer train` trains one of each too, and every one of the four is
checked on the texts plus a generated file of awkward text (scripts,
emoji, digit runs, contractions in capitals, CRLF, tabs, runs of spaces).
Needs `pip install tokenizers`. Exit code 0 when every file matches.
"""
import os
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


LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
          r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

AWKWARD = ("Hello, World! I'M here; THEY'LL see. We've 1234567 apples & 3.14159 pies.\r\n"
           "\tTabbed\t\tline   with    runs of spaces   \n\n\n"
           "Grüße aus Köln — naïve café, Ελληνικά, русский текст, 日本語のテキスト, 中文, 한국어.\n"
           "Emoji 👍🏽 family 👨‍👩‍👧 flags 🇫🇷 math ∑∫√ arrows →⇒ and ‘quotes’ “double”.\n"
           "x=y+1;if(a<b){return c[i]*2;}  // code\n  trailing spaces   \n"
           "numbers 00042 1,000,000 3e-5 0x1F\u00a0nbsp\u2003em-space end")


def train_reference(kind, texts, path):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.save(path)


def train_mode(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    binary, out, files = argv[2], argv[3], argv[4:]
    os.makedirs(out, exist_ok=True)
    awkward = os.path.join(out, "awkward.txt")
    with open(awkward, "w", encoding="utf-8", newline="") as f:
        f.write(AWKWARD)
    texts = [open(p, encoding="utf-8", errors="replace").read() for p in files] + [AWKWARD]
    toks = []
    for kind in ("gpt2", "llama3"):
        path = os.path.join(out, f"hf-{kind}.json")
        train_reference(kind, texts, path)
        toks.append(path)
        path = os.path.join(out, f"lact-{kind}.json")
        subprocess.run([binary, "lm", "tokenizer", "train", "--vocab", "3000", "--pretok", kind,
                        "--out", path, "--quiet"] + files + [awkward], check=True)
        toks.append(path)
    failed = 0
    for tok in toks:
        print(f"== {os.path.basename(tok)}")
        failed += main(["", binary, tok] + files + [awkward]) != 0
    return 1 if failed else 0


def main(argv):
    if len(argv) > 1 and argv[1] == "--train":
        return train_mode(argv)
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
