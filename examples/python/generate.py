#!/usr/bin/env python3
"""Generate from a model with the Python binding.

    python3 examples/python/generate.py [MODEL] [--prompt TEXT | --tokens 1,2,3] [-n N]
                                        [--seed S] [--temp T]

MODEL defaults to the bundled examples/models/kjv-serial.  With a tokenizer in
the model the text streams out; otherwise the token ids do.  Set SKIPLESS_LIBRARY
to lib/libskipless.so.1 to use the library of a source tree."""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the package from the source tree, unless installed
import skipless  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=os.path.join(HERE, "..", "models", "kjv-serial"))
    ap.add_argument("--prompt", help="prompt text (needs a tokenizer in the model)")
    ap.add_argument("--tokens", help="prompt token ids, comma-separated")
    ap.add_argument("-n", type=int, default=64, help="tokens to generate")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--temp", type=float, default=None)
    args = ap.parse_args()
    try:
        with skipless.Model.load(args.model) as model, skipless.Context(model) as ctx:
            if args.tokens:
                prompt = [int(t) for t in args.tokens.split(",")]
            elif args.prompt is not None:
                prompt = args.prompt
            else:  # a default prompt: some text if the model can read it
                prompt = "In the beginning" if model.has_tokenizer else [1]
            gen = ctx.generate(prompt, max_tokens=args.n, seed=args.seed, temperature=args.temp)
            for piece in gen:
                print(piece, end="" if isinstance(piece, str) else " ", flush=True)
            print()
            print(f"{gen.n_generated} tokens, stop: {gen.stop_reason}", file=sys.stderr)
    except skipless.SkiplessError as e:
        sys.exit(f"generate: {e}")


if __name__ == "__main__":
    main()
