#!/usr/bin/python3
"""Byte-level BPE (GPT-2 style) trainer, encoder and decoder in pure Python.

    /usr/bin/python3 examples/train/bpe.py train TEXT_FILE OUT.json [--vocab-size 2048]
    /usr/bin/python3 examples/train/bpe.py encode TOKENIZER.json --text "In the beginning"
    /usr/bin/python3 examples/train/bpe.py decode TOKENIZER.json --tokens 1,2,3

The tokenizer.json written is a Hugging Face `tokenizers` file: ByteLevel
pre-tokenizer (GPT-2 split regex, no prefix space), BPE model with merges,
ByteLevel decoder, and one special token "<|endoftext|>" (the last id).
Ids are dense: 0..255 are the 256 bytes (in byte order, spelled with GPT-2's
byte-to-unicode map), then one id per merge in merge order, then the
special token.

The GPT-2 split regex is

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

Python's `re` has no \\p{L}, so `pretokenize` is a hand-written scanner that
tries the alternatives in order at each position, exactly as a backtracking
regex engine does, with letters/numbers taken from unicodedata categories
(L*, N*) and whitespace = the Unicode White_Space property (what \\s means in
Oniguruma, which Hugging Face uses).
"""
import argparse
import heapq
import json
import sys
import unicodedata
from collections import Counter

SPECIAL = "<|endoftext|>"

# Unicode White_Space (PropList.txt), the meaning of \s in Hugging Face's regex.
WHITE_SPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                        "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 bytes to printable unicode characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}


def _is_letter(c):
    return unicodedata.category(c)[0] == "L"


def _is_number(c):
    return unicodedata.category(c)[0] == "N"


def _is_other(c):
    """[^\\s\\p{L}\\p{N}]"""
    return c not in WHITE_SPACE and not _is_letter(c) and not _is_number(c)


def pretokenize(text):
    """Split text like the GPT-2 regex (see the module docstring)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        # 's|'t|'re|'ve|'m|'ll|'d
        if c == "'":
            hit = next((s for s in CONTRACTIONS if text.startswith(s, i)), None)
            if hit:
                out.append(hit)
                i += len(hit)
                continue
        # ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
        start = i + 1 if c == " " and i + 1 < n else i
        matched = False
        for cls in (_is_letter, _is_number, _is_other):
            if cls(text[start]):
                j = start + 1
                while j < n and cls(text[j]):
                    j += 1
                out.append(text[i:j])
                i = j
                matched = True
                break
        if matched:
            continue
        # A lone " " at the end of the text falls through to here, as does
        # any whitespace.  \s+(?!\S): the longest whitespace run not followed
        # by a non-space, backtracking one character if needed; else \s+.
        j = i
        while j < n and text[j] in WHITE_SPACE:
            j += 1
        if j == i:   # cannot happen: every character is L, N, other or space
            raise AssertionError(f"pretokenize: no alternative matches at {i}")
        if j < n and j - i > 1:
            j -= 1
        out.append(text[i:j])
        i = j
    return out


def _word_symbols(word):
    return [b for b in word.encode("utf-8")]


def train(text, vocab_size):
    """Learn merges until the vocabulary (256 bytes + merges + special) has vocab_size ids.

    Works on the table of distinct pre-tokenized words and their counts; pair
    counts are updated incrementally for the words that contain the merged
    pair, and the best pair comes from a lazily-invalidated heap.  Ties in
    count go to the smallest (left id, right id).  Returns the merges as a
    list of (left id, right id); merge k creates id 256 + k.
    """
    n_merges = vocab_size - 256 - 1
    counts = Counter(pretokenize(text))
    words = [_word_symbols(w) for w in counts]
    freqs = list(counts.values())
    pair_count = Counter()
    where = {}
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            pair_count[p] += f
            where.setdefault(p, set()).add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges and heap:
        negc, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negc:
            continue          # stale entry
        if -negc < 2:
            break
        new_id = 256 + len(merges)
        merges.append(pair)
        a, b = pair
        changed = set()
        for wi in where.pop(pair):
            w, f = words[wi], freqs[wi]
            for p in zip(w, w[1:]):
                pair_count[p] -= f
                changed.add(p)
            merged, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and w[k] == a and w[k + 1] == b:
                    merged.append(new_id)
                    k += 2
                else:
                    merged.append(w[k])
                    k += 1
            words[wi] = merged
            for p in zip(merged, merged[1:]):
                pair_count[p] += f
                changed.add(p)
                where.setdefault(p, set()).add(wi)
        for p in changed:
            c = pair_count[p]
            if c <= 0:
                del pair_count[p]
            elif p != pair:
                heapq.heappush(heap, (-c, p))
        pair_count.pop(pair, None)
    if len(merges) < n_merges:
        raise ValueError(f"only {len(merges)} merges possible, {n_merges} requested")
    return merges


class Tokenizer:
    """Encoder/decoder for the tokenizer.json files this module writes."""

    def __init__(self, merges):
        self.merges = list(merges)
        self.rank = {p: (r, 256 + r) for r, p in enumerate(self.merges)}
        self.strings = [BYTE_ENCODER[b] for b in range(256)]
        for a, b in self.merges:
            self.strings.append(self.strings[a] + self.strings[b])
        self.special_id = len(self.strings)
        self.strings.append(SPECIAL)
        self.cache = {}

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        vocab = tj["model"]["vocab"]
        merges = []
        for m in tj["model"]["merges"]:
            left, right = m.split(" ")
            merges.append((vocab[left], vocab[right]))
        tok = cls(merges)
        if tok.vocab() != vocab:
            raise ValueError(f"{path}: vocab is not the one its merges imply")
        return tok

    @property
    def vocab_size(self):
        return len(self.strings)

    def vocab(self):
        return {s: i for i, s in enumerate(self.strings)}

    def _encode_word(self, word):
        ids = self.cache.get(word)
        if ids is not None:
            return ids
        w = _word_symbols(word)
        while len(w) > 1:
            best = min((self.rank.get(p, (1 << 30, 0)) for p in zip(w, w[1:])))
            if best[0] == 1 << 30:
                break
            a, b = self.merges[best[0]]
            merged, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and w[k] == a and w[k + 1] == b:
                    merged.append(best[1])
                    k += 2
                else:
                    merged.append(w[k])
                    k += 1
            w = merged
        self.cache[word] = w
        return w

    def encode(self, text):
        """Ids of text; "<|endoftext|>" in the text becomes the special id."""
        ids = []
        for k, part in enumerate(text.split(SPECIAL)):
            if k:
                ids.append(self.special_id)
            for word in pretokenize(part):
                ids.extend(self._encode_word(word))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            if i == self.special_id:
                out += SPECIAL.encode()
            else:
                out += bytes(BYTE_DECODER[c] for c in self.strings[i])
        return out.decode("utf-8", errors="replace")

    def to_json(self):
        def byte_level(**kw):
            return {"type": "ByteLevel", **kw, "use_regex": True}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [{"id": self.special_id, "content": SPECIAL, "single_word": False,
                              "lstrip": False, "rstrip": False, "normalized": False,
                              "special": True}],
            "normalizer": None,
            "pre_tokenizer": byte_level(add_prefix_space=False, trim_offsets=True),
            "post_processor": byte_level(add_prefix_space=True, trim_offsets=False),
            "decoder": byte_level(add_prefix_space=True, trim_offsets=True),
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": "", "end_of_word_suffix": "",
                      "fuse_unk": False, "byte_fallback": False,
                      "vocab": self.vocab(),
                      "merges": [f"{self.strings[a]} {self.strings[b]}" for a, b in self.merges]},
        }

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=1)
            f.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("text")
    t.add_argument("out")
    t.add_argument("--vocab-size", type=int, default=2048)
    e = sub.add_parser("encode")
    e.add_argument("tokenizer")
    e.add_argument("--text", required=True)
    d = sub.add_parser("decode")
    d.add_argument("tokenizer")
    d.add_argument("--tokens", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "train":
        with open(a.text, encoding="utf-8") as f:
            tok = Tokenizer(train(f.read(), a.vocab_size))
        tok.save(a.out)
        print(f"bpe: {tok.vocab_size} tokens ({len(tok.merges)} merges) -> {a.out}")
    elif a.cmd == "encode":
        print(",".join(map(str, Tokenizer.load(a.tokenizer).encode(a.text))))
    else:
        ids = [int(x) for x in a.tokens.split(",") if x.strip()]
        sys.stdout.write(Tokenizer.load(a.tokenizer).decode(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
