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

Scales keep activations of the order of one through 32 blocks without skips or norms,
so that the merge's verification (logits of probe tokens, original against merged) compares
numbers that carry the whole stack: N(0, 1/in) weights, then each block calibrated on
--probe-tokens probe tokens (the merge's own count, at positions 0, 1, ...) run through the
blocks written so far with test/reference.py's float64 attention and FFN on the BF16-rounded
weights: o_proj scaled so that the attention output has RMS 1, down_proj so that the block
output has.  q_proj is a random orthogonal matrix (one QR, then per layer a random column
permutation and signs) plus a 1 % Gaussian perturbation, so that its 2-norm condition number
is about 1.02 (the merge reports the 1-norm estimate, about 2d/pi = 2600 for an orthogonal
matrix: 2659 on a 1-layer cut), well under the merge's limit (a Gaussian 4096 x 4096 q_proj
exceeds it).  The scales are printed (stderr) and written to OUT_DIR/calibration.json.
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
ap.add_argument("--probe-tokens", type=int, default=32)
a = ap.parse_args()
if a.shard_size < 1 or a.hidden % a.heads or a.heads % a.kv_heads:
    sys.exit("make_7b: --shard-size must be >= 1, heads must divide hidden and kv-heads heads")

d, hd, f, V, L = a.hidden, a.hidden // a.heads, a.ffn, a.vocab, a.layers
qd, kvd = a.heads * hd, a.kv_heads * hd
rng = np.random.default_rng(a.seed)

# The calibration's float64 attention and FFN: the independent reference of the tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test"))
import reference  # noqa: E402

cfg = {"architectures": ["SkiplessForCausalLM"], "model_type": "skipless",
       "hidden_size": d, "num_hidden_layers": L, "num_attention_heads": a.heads,
       "num_key_value_heads": a.kv_heads, "head_dim": hd, "intermediate_size": f, "vocab_size": V,
       "max_position_embeddings": 32768, "hidden_act": "silu", "block_type": "serial",
       "ffn_type": "glu", "position_embedding": "rope", "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
       "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
ref_cfg = reference.Config(cfg)


def to_bf16(x):
    """float32 -> bfloat16 bits, round to nearest even (NaN-free input)."""
    u = x.view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2")


def bf16_values(x):
    """float32 -> the float64 values of its BF16 rounding (what the file will hold)."""
    return (to_bf16(x).astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)


def rms(x):
    return float(np.sqrt(np.mean(x * x)))


def gauss(o, i):
    return lambda: rng.standard_normal((o, i), dtype=np.float32) * np.float32(1.0 / np.sqrt(i))

base_q = None
def q_proj():
    global base_q
    if base_q is None:  # one QR in float64; per layer a permuted, sign-flipped copy
        base_q = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
    perm = rng.permutation(d)
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=d)
    w = base_q[:, perm] * signs[None, :]
    return w + rng.standard_normal((d, d), dtype=np.float32) * np.float32(0.01 / np.sqrt(d))

# Calibration state: the probe tokens' hidden states [probe, d] after the blocks made so far
# (float64, from the BF16-rounded weights), the current block's tensors, the scales.
probe_ids = np.random.default_rng(a.seed + 1).integers(0, V, size=a.probe_tokens)
cal = {"x": None, "layer": -1, "w": {}, "scales": []}
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def embed():
    e = rng.standard_normal((V, d), dtype=np.float32)  # rows of RMS 1
    cal["x"] = bf16_values(e[probe_ids])
    return e


def calibrate(l):
    """Make block l's tensors; scale o_proj and down_proj so that the probe's attention
    output and block output have RMS 1."""
    w = dict(zip(PROJ, (q_proj(), gauss(kvd, d)(), gauss(kvd, d)(), gauss(d, qd)(),
                        gauss(f, d)(), gauss(f, d)(), gauss(d, f)())))
    lay = reference.Layer()
    lay.q, lay.k, lay.v = ((bf16_values(w[n]), None) for n in PROJ[:3])
    lay.gate, lay.up = ((bf16_values(w[n]), None) for n in PROJ[4:6])
    heads = reference.attention(ref_cfg, lay, cal["x"])  # [probe, H hd], before o_proj
    s_o = 1.0 / rms(heads @ bf16_values(w["o_proj"]).T)
    w["o_proj"] *= np.float32(s_o)
    a_out = heads @ bf16_values(w["o_proj"]).T
    lay.down = (bf16_values(w["down_proj"]), None)
    s_down = 1.0 / rms(reference.ffn(ref_cfg.act, lay, a_out))
    w["down_proj"] *= np.float32(s_down)
    lay.down = (bf16_values(w["down_proj"]), None)
    cal["x"] = reference.ffn(ref_cfg.act, lay, a_out)
    cal["scales"].append({"layer": l, "o_proj": s_o, "down_proj": s_down,
                          "attention_rms": rms(a_out), "block_rms": rms(cal["x"])})
    cal["layer"], cal["w"] = l, w


def block_tensor(l, proj):
    def make():
        if cal["layer"] != l:
            calibrate(l)
        return cal["w"].pop(proj)
    return make

# (name, shape, maker) in the order they are written: embed, blocks, norm, head.
tensors = [("model.embed_tokens.weight", (V, d), embed)]
for l in range(L):
    p = f"model.layers.{l}."
    shapes = ((qd, d), (kvd, d), (kvd, d), (d, qd), (f, d), (f, d), (d, f))
    tensors += [(p + ("self_attn." if i < 4 else "mlp.") + n + ".weight", shapes[i], block_tensor(l, n))
                for i, n in enumerate(PROJ)]
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
    extra = [("config.json", json.dumps(cfg, indent=2) + "\n"),
             ("calibration.json", json.dumps({"probe_tokens": probe_ids.tolist(), "blocks": cal["scales"]},
                                             indent=1) + "\n")]
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
sc = cal["scales"]
print(f"make_7b: calibrated {len(sc)} blocks on {a.probe_tokens} probe tokens: o_proj scales "
      f"{min(b['o_proj'] for b in sc):.3g}..{max(b['o_proj'] for b in sc):.3g}, down_proj scales "
      f"{min(b['down_proj'] for b in sc):.3g}..{max(b['down_proj'] for b in sc):.3g}")
print(f"make_7b: {a.out}: {weights:,} weights in linear layers and embeddings, {total / 1e9:.2f} GB in "
      f"{n} shard(s), {time.time() - t0:.0f} s")
