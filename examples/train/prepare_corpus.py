#!/usr/bin/python3
"""Dump the King James Bible from Debian's bible-kjv package as plain text.

    /usr/bin/python3 examples/train/prepare_corpus.py [OUT_DIR]   # default build/kjv

Needs the `bible` program (apt-get install bible-kjv).  `bible -f` turns
pretty-printing off, so every verse comes out on one line as "Ge1:1 In the
beginning ..."; the range Gen1:1-Rev22:21 is the whole text (31102 verses).
The reference is stripped, leaving one verse per line.

Deterministic split by chapter: every 20th chapter (running chapter index
i with i % 20 == 10, 1189 chapters in all) goes to valid.txt, the rest to
train.txt.  Nothing is random; the output is identical on every run.
"""
import os
import re
import subprocess
import sys

VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build/kjv"
    text = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True,
                          capture_output=True, stdin=subprocess.DEVNULL).stdout.decode("ascii")
    train, valid = [], []
    chapter_index, last = -1, None
    n_verses = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        m = VERSE.match(line)
        if not m:
            sys.exit(f"prepare_corpus: unexpected line from bible: {line!r}")
        key = (m.group(1), m.group(2))
        if key != last:
            chapter_index += 1
            last = key
        (valid if chapter_index % 20 == 10 else train).append(m.group(4).strip())
        n_verses += 1
    if n_verses != 31102:
        sys.exit(f"prepare_corpus: expected 31102 verses, got {n_verses}")
    os.makedirs(out, exist_ok=True)
    for name, lines in (("train.txt", train), ("valid.txt", valid)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    print(f"prepare_corpus: {n_verses} verses, {chapter_index + 1} chapters -> "
          f"{out}/train.txt ({len(train)} verses), {out}/valid.txt ({len(valid)} verses)")


if __name__ == "__main__":
    main()
