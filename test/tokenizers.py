#!/usr/bin/python3
"""Test tokenizers: tiny byte-level BPE tokenizer.json files and models carrying them.

    /usr/bin/python3 test/tokenizers.py OUTDIR        (OUTDIR of test/models.py)

Trains, deterministically, a byte-level BPE on the small built-in CORPUS
(standard BPE: count adjacent pairs inside pre-tokenized words, merge the most
frequent, ties broken by the pair's text) and writes two tokenizer.json
variants that together cover the supported subset:

  OUTDIR/tokenizers/bpe_plain.json    300 merges as "a b" strings, pre-tokenizer
      ByteLevel (add_prefix_space false), post-processor ByteLevel, added tokens
      "<|endoftext|>" (special, appended) and "<sep>" (not special)
  OUTDIR/tokenizers/bpe_prefix.json   200 merges as ["a", "b"] pairs, pre-tokenizer
      Sequence[ByteLevel add_prefix_space true], ignore_merges, "<|endoftext|>"
      inside the vocab and listed as added token with the same id (GPT-2 style),
      non-special "<sep>" and special "<|pad|>" (normalized false)

and models (random weights, vocab_size = tokenizer size) that carry them:

  OUTDIR/models/tok_plain/            directory: config.json, model.safetensors, tokenizer.json
  OUTDIR/models/tok_prefix.safetensors  single file: __metadata__ "tokenizer.json"

OUTDIR/tokenizers.json lists them: [{"name", "model", "tokenizer", "format"}].
The training only has to be deterministic, not faithful: the ids any
tokenizer.json gives are checked against @huggingface/tokenizers
(test/tokenizers_js/compare.mjs).
"""

import argparse
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples", "train"))
import models  # noqa: E402
from bpe import bytes_to_unicode  # noqa: E402  GPT-2's byte -> printable character map

CORPUS = """\
In the beginning the small model knew nothing; it learned to count 1, 2, 3 and 42.
The quick brown fox jumps over the lazy dog. Don't stop, we'll see what they've done.
Skipless transformers have no skip connections and no normalization, so linear
layers merge: q_proj and o_proj disappear. It's exact, isn't it? Yes -- it is!
Café, naïve, résumé, façade, Ångström, Zürich: accents are bytes too.
Numbers 2024, 3.14159, 1e-6 and 100% matter; so do tabs\tand  double  spaces.
"Quoted text", (parentheses), [brackets], {braces} <angles> & ampersands...
the the the then there these those this that than thin think thing things
""" * 3


B2U = bytes_to_unicode()
# Approximation of the GPT-2 split, good enough to train on (Python's re has no \p{L}).
SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


def train(n_merges):
    """Return (vocab list in id order, merges as (a, b) pairs)."""
    words = {}
    for w in SPLIT.findall(CORPUS):
        key = tuple(B2U[b] for b in w.encode("utf-8"))
        words[key] = words.get(key, 0) + 1
    vocab = [B2U[b] for b in range(256)]
    known = set(vocab)
    merges = []
    while len(merges) < n_merges:
        counts = {}
        for w, c in words.items():
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + c
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        new = best[0] + best[1]
        if new not in known:
            vocab.append(new)
            known.add(new)
        nw = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + c
        words = nw
    return vocab, merges


def added(id_, content, special, normalized=None):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": (not special) if normalized is None else normalized, "special": special}


def byte_level(prefix):
    return {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": True}


def bpe_plain():
    vocab, merges = train(300)
    n = len(vocab)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(n, "<|endoftext|>", True), added(n + 1, "<sep>", False)],
        "normalizer": None, "pre_tokenizer": byte_level(False), "post_processor": byte_level(False),
        "decoder": byte_level(False),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(vocab)},
                  "merges": [f"{a} {b}" for a, b in merges]},
    }


def bpe_prefix():
    vocab, merges = train(200)
    eot = len(vocab)
    vocab.append("<|endoftext|>")
    n = len(vocab)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(eot, "<|endoftext|>", True), added(n, "<sep>", False),
                         added(n + 1, "<|pad|>", True, normalized=False)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [byte_level(True)]},
        "post_processor": None, "decoder": byte_level(True),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": True, "vocab": {t: i for i, t in enumerate(vocab)},
                  "merges": [[a, b] for a, b in merges]},
    }


def size(tok):
    return len(tok["model"]["vocab"]) + sum(a["content"] not in tok["model"]["vocab"] for a in tok["added_tokens"])


def write_model(outdir, name, fmt, tok_text, vocab_size):
    s = models.spec(name, 32, 2, 4, 2, 8, 64, vocab_size, "silu", True, fmt=fmt)
    rng = np.random.default_rng(models.seed_of(name))
    config = models.make_config(s)
    tensors = models.make_tensors(s, rng)
    models.calibrate(config, tensors, [int(t) for t in rng.integers(0, vocab_size, size=12)])
    pairs, data = models.layout(models.tensor_entries(tensors, s["dtype"]))
    if fmt == "dir":
        rel = f"models/{name}"
        path = os.path.join(outdir, rel)
        models.write_bytes(os.path.join(path, "config.json"), models.config_text(config).encode())
        models.write_bytes(os.path.join(path, "model.safetensors"),
                           models.safetensors_bytes(models.header_bytes(pairs), data))
        models.write_bytes(os.path.join(path, "tokenizer.json"), tok_text.encode("utf-8"))
    else:
        rel = f"models/{name}.safetensors"
        meta = {"format": "pt", "config": json.dumps(config), "tokenizer.json": tok_text}
        models.write_bytes(os.path.join(outdir, rel),
                           models.safetensors_bytes(models.header_bytes(pairs, meta), data))
    return rel


# The same command-line shape as models.py's main, by design (each generator is its own command).
def main(argv):
    ap = argparse.ArgumentParser(prog="tokenizers.py", description=(__doc__ or "").strip().split("\n")[0])
    ap.add_argument("outdir", metavar="OUTDIR", help="the test models' directory (tokenizers/ and tok_* go there)")
    outdir = ap.parse_args(argv[1:]).outdir
    entries = []
    for name, tok, model_name, fmt in (("bpe_plain", bpe_plain(), "tok_plain", "dir"),
                                       ("bpe_prefix", bpe_prefix(), "tok_prefix", "file")):
        text = json.dumps(tok, ensure_ascii=False, indent=1) + "\n"
        rel = f"tokenizers/{name}.json"
        models.write_bytes(os.path.join(outdir, rel), text.encode("utf-8"))
        model_rel = write_model(outdir, model_name, fmt, text, size(tok))
        entries.append({"name": name, "tokenizer": rel, "model": model_rel, "format": fmt,
                        "size": size(tok)})
    models.write_json(os.path.join(outdir, "tokenizers.json"), entries)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
