#!/usr/bin/python3
"""Write a seeded random skipless model of a given shape (for benchmarks).

    /usr/bin/python3 examples/tools/random_model.py OUT_DIR --hidden 1024 --layers 4 \
        --heads 8 --kv-heads 2 --ffn 3584 --vocab 8000 [--block serial|parallel] [--dtype F32|F16]

Weights are N(0, 1/in); q_proj/o_proj get 2 I added so they are well
conditioned.  Not a trained model: for timing and memory measurements only.
"""
import argparse, json, os, struct
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--hidden", type=int, default=1024)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--heads", type=int, default=8)
ap.add_argument("--kv-heads", type=int, default=2)
ap.add_argument("--ffn", type=int, default=3584)
ap.add_argument("--vocab", type=int, default=8000)
ap.add_argument("--block", default="serial")
ap.add_argument("--dtype", default="F32")
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
rng = np.random.default_rng(a.seed)
d, hd = a.hidden, a.hidden // a.heads
np_dtype = {"F32": "<f4", "F16": "<f2"}[a.dtype]

def mat(o, i, eye=False):
    w = rng.standard_normal((o, i), dtype=np.float32) / np.float32(np.sqrt(i))
    if eye:
        w += 2 * np.eye(o, i, dtype=np.float32)
    return w

tensors = {"model.embed_tokens.weight": mat(a.vocab, d) * np.float32(np.sqrt(d))}
for l in range(a.layers):
    p = f"model.layers.{l}."
    tensors[p + "self_attn.q_proj.weight"] = mat(a.heads * hd, d, eye=True)
    tensors[p + "self_attn.k_proj.weight"] = mat(a.kv_heads * hd, d)
    tensors[p + "self_attn.v_proj.weight"] = mat(a.kv_heads * hd, d)
    tensors[p + "self_attn.o_proj.weight"] = mat(d, a.heads * hd, eye=True)
    tensors[p + "mlp.gate_proj.weight"] = mat(a.ffn, d)
    tensors[p + "mlp.up_proj.weight"] = mat(a.ffn, d)
    tensors[p + "mlp.down_proj.weight"] = mat(d, a.ffn)
tensors["lm_head.weight"] = mat(a.vocab, d)
header, off = {}, 0
for k, v in tensors.items():
    n = v.size * np.dtype(np_dtype).itemsize
    header[k] = {"dtype": a.dtype, "shape": list(v.shape), "data_offsets": [off, off + n]}
    off += n
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
os.makedirs(a.out, exist_ok=True)
with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for v in tensors.values():
        f.write(v.astype(np_dtype).tobytes())
cfg = {"hidden_size": d, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
       "num_key_value_heads": a.kv_heads, "intermediate_size": a.ffn, "vocab_size": a.vocab,
       "max_position_embeddings": 4096, "hidden_act": "silu", "block_type": a.block,
       "ffn_type": "glu"}
with open(os.path.join(a.out, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
