#!/usr/bin/python3
"""Write docs/model-kjv-<name>.md from a trained model directory.

    /usr/bin/python3 examples/train/model_card.py examples/models/kjv-serial [docs/model-kjv-serial.md]

All numbers come from the model's config.json, model.safetensors and the
fixture.json that examples/train/train.py wrote while training it.
"""
import json
import os
import struct
import sys

RECIPE = """\
Skipless stacks (no skip connections, no norms inside) lose the signal at
initialisation unless every block starts close to an isometry of the stream
(He & Hofmann, "Simplifying Transformer Blocks", ICLR 2024).  The recipe
(`init_model` and `train_model` in `examples/train/train.py`):

- **Small depth**: {L} blocks.
- **Unit-variance stream**: embedding N(0, 1); the single final RMSNorm
  (`model.norm.weight`, allowed by the format, outside the stack) starts at
  1/sqrt(d) so the tied head gives logits of about unit scale.
- **Value path near identity**: `v_proj` has orthonormal rows{o_proj}, so the
  value path starts as a rotation of the stream (the analogue of the paper's
  identity-initialised value and projection weights; an exact identity does
  not exist for GQA's narrower `v_proj`).
- **Attention**: {attn_init}
- **FFN**: `gate_proj`, `up_proj` N(0, 1/d), `down_proj` N(0, 1/f), then
  `down_proj`{rescale} rescaled on a calibration batch (8 x 256 tokens) so that
  every block output has unit RMS (data-dependent, LSUV-style).
- **Optimiser**: AdamW (betas 0.9/0.95, eps 1e-8), weight decay 0.1 on the
  block matrices (none on embedding and norm), peak learning rate {lr:g},
  linear warmup over the first 10 % of steps (at most 100), cosine decay to
  10 % of the peak, gradient-norm clipping at 1.0.
- **Data**: {batch} windows x {seq} tokens per step, window starts a seeded
  permutation of all positions in train.txt (deterministic order),
  {steps} steps = {tokens_seen:,} tokens ({epochs:.2f} epochs).  Seed {seed}.
"""

SERIAL_ATTN = """\
`k_proj` has orthonormal rows; each query head of `q_proj` starts as
  its group's `k_proj` rows (the group's other heads add a distinct part of
  an orthonormal basis of the rest of the space), so every query head starts
  by matching keys like the current token's (its own position and earlier
  occurrences of the same token) instead of averaging the context away --
  in a serial skipless block uniform causal averaging would erase the token
  itself.  The construction keeps `q_proj` well conditioned (Q = T U, U
  orthogonal, T unit block-triangular), which the merge needs: Q removal
  solves with `q_proj`."""

PARALLEL_ATTN = """\
there is no `q_proj`: the query is the stream itself.  `k_proj` starts at
  0.1 x orthonormal rows, so attention starts near uniform causal averaging
  (the paper's zero-query init); the parallel FFN(x) branch carries the
  current token meanwhile."""


def safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def main():
    model = sys.argv[1].rstrip("/")
    name = os.path.basename(model)
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join("docs", f"model-{name}.md")
    cfg = json.load(open(os.path.join(model, "config.json")))
    fx = json.load(open(os.path.join(model, "fixture.json")))
    st = fx["training"]
    hdr = safetensors_header(os.path.join(model, "model.safetensors"))
    hdr.pop("__metadata__", None)
    n_params = sum(eval("*".join(map(str, v["shape"])) or "1") for v in hdr.values())
    size = os.path.getsize(os.path.join(model, "model.safetensors"))
    serial = cfg["block_type"] == "serial"
    d, L, H, KV, hd, f, V = (cfg[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                "num_key_value_heads", "head_dim", "intermediate_size",
                                                "vocab_size"))
    per_layer = {}
    for k, v in hdr.items():
        if k.startswith("model.layers.0."):
            per_layer[k[len("model.layers.0."):]] = v["shape"]
    recipe = RECIPE.format(
        o_proj=" and `o_proj` is a random orthogonal matrix" if serial else
        " (there is no `o_proj`: the attention output is added to the stream as is)",
        attn_init=SERIAL_ATTN if serial else PARALLEL_ATTN,
        rescale=" and `o_proj`" if serial else "", lr=st["lr"], batch=st["batch"], seq=st["seq"],
        steps=st["steps"], tokens_seen=st["tokens_seen"], epochs=st["tokens_seen"] / st["train_tokens"],
        seed=st["seed"], L=cfg["num_hidden_layers"])
    block = ("**serial** blocks, `x <- down(silu(gate o) * up o)` with "
             "`o = o_proj(attention(q_proj x, k_proj x, v_proj x))`" if serial else
             "**parallel** blocks in the trained form without Q and P (arXiv 2404.12362, Fig. 3): "
             "`x <- attention(x, k_proj x, v_proj x) + down(silu(gate x) * up x)` -- the attention "
             "reads the stream directly (no `q_proj`) and its output goes straight back into the "
             "stream (no `o_proj`)")
    lines = [
        f"# Model card: {name}",
        "",
        f"A small skipless transformer trained on the King James Bible, bundled with libskipless as "
        + ("the default demo model." if serial else "the demo of parallel blocks trained without Q and P."),
        f"Files: `examples/models/{name}/` -- `config.json`, `model.safetensors` (F32, {size:,} bytes), "
        "`tokenizer.json`, and the test fixture `fixture.json` + `fixture_logits.npy`.",
        "",
        "## Shape",
        "",
        f"{block}; no skip connections and no normalisation inside the stack; one final RMSNorm "
        f"(eps {cfg['rms_norm_eps']:g}) before the tied LM head (`tie_word_embeddings: true`, no "
        "`lm_head.weight`).",
        "",
        "| | |",
        "|---|---|",
        f"| layers | {L} ({cfg['block_type']}) |",
        f"| hidden size d | {d} |",
        f"| attention | {H} query heads, {KV} KV heads (GQA), head_dim {hd}, RoPE theta {cfg['rope_theta']:g} "
        "(rotate-half, full head) |",
        f"| FFN | SwiGLU (silu), intermediate size {f} |",
        f"| vocabulary | {V} (byte-level BPE) |",
        f"| context | trained on {st['seq']} tokens; `max_position_embeddings` {cfg['max_position_embeddings']} |",
        f"| parameters | {n_params:,} |",
        "",
        "Tensors of each block: " + ", ".join(f"`{k}` {v}" for k, v in sorted(per_layer.items())) + ".",
        "",
        "## Corpus",
        "",
        "The King James Version as printed by the `bible` program of Debian's `bible-kjv` package "
        "(4.38; `bible -f Gen1:1-Rev22:21`, one verse per line, verse references stripped), made by "
        "`examples/train/prepare_corpus.py`: 31,102 verses in 1,189 chapters, all ASCII. Every 20th "
        "chapter (chapter index % 20 == 10) is held out as validation. "
        f"Train: {st['train_tokens']:,} tokens; validation: {st['valid_tokens']:,} tokens "
        f"= {st['valid_bytes']:,} bytes ({st['valid_bytes'] / st['valid_tokens']:.3f} bytes/token). "
        "The corpus is not committed; the script regenerates it.",
        "",
        "## Tokenizer",
        "",
        f"`tokenizer.json` (Hugging Face format): byte-level BPE, {st['vocab_size']} tokens = 256 byte "
        f"tokens (ids 0-255 in byte order) + {st['merges']} merges (ids 256-{255 + st['merges']}) + "
        f"the special token `<|endoftext|>` (id {st['vocab_size'] - 1}); ByteLevel pre-tokenizer "
        "(GPT-2 split regex, no prefix space) and decoder. Trained on train.txt by "
        "`examples/train/bpe.py` (pure Python: word-frequency table of the pre-tokenized text, "
        "most frequent pair merged each step, incremental pair counts, ties to the smaller id pair; "
        "about 2 s). Both demo models share it.",
        "",
        "## Training",
        "",
        "```sh",
        "/usr/bin/python3 examples/train/prepare_corpus.py build/kjv",
        st["command"],
        "```",
        "",
        "PyTorch 1.13 from Debian (`python3-torch`), CPU only, `torch.set_num_threads(2)`, "
        "`torch.use_deterministic_algorithms(True)`, fixed seeds. The one script trains the tokenizer "
        "and both demo models and writes the fixtures.",
        "",
        recipe,
        "## Results",
        "",
        "| | |",
        "|---|---|",
        f"| training time | {st['train_seconds']:.0f} s for {st['steps']} steps; {st['model_wall_seconds']:.0f} s "
        "for this model including init, evaluation and export (wall clock on the 2-core build "
        "machine while other jobs shared it) |",
        f"| final train loss | {st['train_loss']:.4f} nats/token (first {st['valid_tokens']:,} tokens of train.txt) |",
        f"| final validation loss | {st['val_loss']:.4f} nats/token = {st['val_bits_per_byte']:.4f} bits/byte |",
        "",
        "Losses are the mean next-token cross-entropy over non-overlapping 256-token windows; bits/byte "
        "= nats/token / ln 2 / (bytes per token of valid.txt). For scale: a unigram model of this "
        "tokenizer is about 6 nats/token.",
        "",
        "## Check against libskipless",
        "",
        "`make check` runs `test/test_trained.py`: `skipless logits` on the fixture prompt reproduces "
        "the PyTorch logits in `fixture_logits.npy` (max |diff| / max |ref| < 1e-4), so does the "
        "independent float64 reference `test/reference.py`"
        + ("; the model merged with `skipless merge --remove qp` (Q and P removed) still matches, and "
           "its 200 greedy tokens equal the unmerged model's." if serial else "."),
        "",
        "## Sample output",
        "",
        "Greedy continuation (200 tokens, PyTorch, decoded with `examples/train/bpe.py`) of the prompt "
        "in `fixture.json`:",
        "",
        "```",
        fx["prompt"] + fx["greedy_text"],
        "```",
        "",
        "## License",
        "",
        "The King James Version (1611) is in the public domain (the Debian package's copyright file: "
        "\"The copyright for the King James Version text of the Bible is expired\"); in the United "
        "Kingdom the Crown's letters patent still restrict its printing. The `bible-kjv` program "
        "itself is GPL-2+, but neither its code nor its data files are redistributed here: only "
        "the weights trained on the text, under libskipless's license.",
        "",
    ]
    with open(out, "w") as fh:
        fh.write("\n".join(lines))
    print(f"model_card: wrote {out}")


if __name__ == "__main__":
    main()
