#!/usr/bin/python3
"""Write a seeded Mistral-7B-shaped skipless checkpoint, sharded as Hugging Face does.

    /usr/bin/python3 bench/make_7b.py OUT_DIR [--layers 32] [--shard-size 5000000000] [--seed 7]

Shape (Mistral-7B): hidden 4096, 32 layers, 32 query / 8 KV heads of 128, SwiGLU 14336,
vocab 32000, untied lm_head, a final RMSNorm, BF16 weights: 7,241,465,856 weights in
linear layers and embeddings, 14.5 GB.  Not a trained model: for timing, memory and the
merge's exactness at the paper's scale (issue 13, `make bench-7b`).

The tensors are written in order, one at a time, into shards
model-{i:05d}-of-{n:05d}.safetensors of at most --shard-size bytes (a tensor larger than
the limit alone in its shard) with model.safetensors.index.json, so memory stays at one
tensor.  Each file is written under a temporary name and renamed at the end; the free disk
space is checked first.

Scales keep activations of the order of one through 32 blocks without skips or norms:
N(0, 1/in) weights, down_proj times 1.7 (silu(g) * u has variance about 0.35), and
q_proj a random orthogonal matrix (one QR, then per layer a random column permutation and
signs) plus a 1 % Gaussian perturbation, so that its 2-norm condition number is about 1.02
(the merge reports the 1-norm estimate, about 2d/pi = 2600 for an orthogonal matrix: 2659 on
a 1-layer cut), well under the merge's limit (a Gaussian 4096 x 4096 q_proj exceeds it).
"""
import argparse
import json
import os
import shutil
import struct
import sys
import time

import numpy as np

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("out")
ap.add_argument("--layers", type=int, default=32)
ap.add_argument("--hidden", type=int, default=4096)
ap.add_argument("--heads", type=int, default=32)
ap.add_argument("--kv-heads", type=int, default=8)
ap.add_argument("--ffn", type=int, default=14336)
ap.add_argument("--vocab", type=int, default=32000)
ap.add_argument("--shard-size", type=int, default=5_000_000_000)
ap.add_argument("--seed", type=int, default=7)
a = ap.parse_args()
if a.shard_size < 1 or a.hidden % a.heads or a.heads % a.kv_heads:
    sys.exit("make_7b: --shard-size must be >= 1, heads must divide hidden and kv-heads heads")

d, hd, f, V, L = a.hidden, a.hidden // a.heads, a.ffn, a.vocab, a.layers
qd, kvd = a.heads * hd, a.kv_heads * hd
rng = np.random.default_rng(a.seed)

# (name, shape, maker) in the order they are written: embed, blocks, norm, head.
def gauss(o, i, gain=1.0):
    return lambda: rng.standard_normal((o, i), dtype=np.float32) * np.float32(gain / np.sqrt(i))

base_q = None
def q_proj():
    global base_q
    if base_q is None:  # one QR in float64; per layer a permuted, sign-flipped copy
        base_q = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
    perm = rng.permutation(d)
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=d)
    w = base_q[:, perm] * signs[None, :]
    return w + rng.standard_normal((d, d), dtype=np.float32) * np.float32(0.01 / np.sqrt(d))

tensors = [("model.embed_tokens.weight", (V, d), gauss(V, d, np.sqrt(d)))]
for l in range(L):
    p = f"model.layers.{l}."
    tensors += [(p + "self_attn.q_proj.weight", (qd, d), q_proj),
                (p + "self_attn.k_proj.weight", (kvd, d), gauss(kvd, d)),
                (p + "self_attn.v_proj.weight", (kvd, d), gauss(kvd, d)),
                (p + "self_attn.o_proj.weight", (d, qd), gauss(d, qd)),
                (p + "mlp.gate_proj.weight", (f, d), gauss(f, d)),
                (p + "mlp.up_proj.weight", (f, d), gauss(f, d)),
                (p + "mlp.down_proj.weight", (d, f), gauss(d, f, 1.7))]
tensors += [("model.norm.weight", (d,), lambda: np.ones(d, dtype=np.float32)),
            ("lm_head.weight", (V, d), gauss(V, d))]

def nbytes(shape):
    return int(np.prod(shape)) * 2  # BF16

# Shards filled in tensor order, as transformers' save_pretrained does.
shards, cur, cur_bytes = [], [], 0
for t in tensors:
    b = nbytes(t[1])
    if cur and cur_bytes + b > a.shard_size:
        shards.append(cur)
        cur, cur_bytes = [], 0
    cur.append(t)
    cur_bytes += b
shards.append(cur)
total = sum(nbytes(t[1]) for t in tensors)

os.makedirs(a.out, exist_ok=True)
free = shutil.disk_usage(a.out).free
need = total + (64 << 20)
if free < need:
    sys.exit(f"make_7b: {a.out}: {free / 1e9:.1f} GB free, {need / 1e9:.1f} GB needed; free some space first")

def to_bf16(x):
    """float32 -> bfloat16 bits, round to nearest even (NaN-free input)."""
    u = x.view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2")

t0 = time.time()
n = len(shards)
names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" if n > 1 else "model.safetensors" for i in range(n)]
weight_map, written, done = {}, [], 0
try:
    for name, group in zip(names, shards):
        header, off = {}, 0
        for tname, shape, _ in group:
            header[tname] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + nbytes(shape)]}
            off += nbytes(shape)
            weight_map[tname] = name
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        tmp = os.path.join(a.out, "." + name + ".tmp")
        written.append((tmp, os.path.join(a.out, name)))
        with open(tmp, "wb") as fp:
            fp.write(struct.pack("<Q", len(h)) + h)
            for tname, shape, make in group:
                fp.write(to_bf16(np.ascontiguousarray(make(), dtype=np.float32)).tobytes())
                done += nbytes(shape)
                el = time.time() - t0
                print(f"\rmake_7b: {done / 1e9:6.2f} of {total / 1e9:.2f} GB, {el:5.0f} s, "
                      f"{el / done * (total - done):4.0f} s left", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    cfg = {"architectures": ["SkiplessForCausalLM"], "model_type": "skipless",
           "hidden_size": d, "num_hidden_layers": L, "num_attention_heads": a.heads,
           "num_key_value_heads": a.kv_heads, "head_dim": hd, "intermediate_size": f, "vocab_size": V,
           "max_position_embeddings": 32768, "hidden_act": "silu", "block_type": "serial",
           "ffn_type": "glu", "position_embedding": "rope", "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    extra = [("config.json", json.dumps(cfg, indent=2) + "\n")]
    if n > 1:
        extra.append(("model.safetensors.index.json",
                      json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"))
    for name, text in extra:
        tmp = os.path.join(a.out, "." + name + ".tmp")
        written.append((tmp, os.path.join(a.out, name)))
        with open(tmp, "w") as fp:
            fp.write(text)
    for tmp, final in written:
        os.replace(tmp, final)
except BaseException:
    for tmp, _ in written:
        if os.path.exists(tmp):
            os.unlink(tmp)
    raise
weights = sum(int(np.prod(s)) for _, s, _ in tensors if len(s) == 2)
print(f"make_7b: {a.out}: {weights:,} weights in linear layers and embeddings, {total / 1e9:.2f} GB in "
      f"{n} shard(s), {time.time() - t0:.0f} s")
