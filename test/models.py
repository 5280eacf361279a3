#!/usr/bin/python3
"""Generate the libskipless test models, their reference logits and bad models.

    /usr/bin/python3 test/models.py OUTDIR

writes, deterministically (fixed seeds, identical bytes on every run):

  OUTDIR/models/<name>/{config.json,model.safetensors}   directory format
  OUTDIR/models/<name>.safetensors                       single-file format
  OUTDIR/<name>.ref.npy        float64 reference logits [n, V] for the prompt
  OUTDIR/bad/<name>[.safetensors]   malformed models, each wrong in one way
  OUTDIR/manifest.json

The reference logits are computed by reference.py from the *written* files,
so F16/BF16 rounding of the weights is part of the reference.

Weights are random but scaled so the skipless stack neither explodes nor
vanishes: after drawing a layer, its output projection(s) are rescaled so the
block output has RMS 1 on the model's prompt, and the head is rescaled so the
logits have a standard deviation of about 3.  Square q/k/v/o projections are
well conditioned (orthogonal times diag(uniform(0.7, 1.3))) because a merge
test inverts them.
"""

import argparse
import json
import os
import struct
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402


# ---------------------------------------------------------------------------
# safetensors writing
# ---------------------------------------------------------------------------

def encode(array, dtype):
    """Little-endian bytes of a float64 array stored as F32, F16 or BF16."""
    a = np.ascontiguousarray(array, dtype=np.float64)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "BF16":
        # Round-to-nearest-even from float32 to its upper 16 bits.
        bits = a.astype("<f4").view("<u4").astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return rounded.astype("<u2").tobytes()
    raise ValueError(dtype)


def tensor_entries(tensors, dtype):
    """[(name, dtype, shape, raw bytes)] in the tensors' insertion order."""
    return [(name, dtype, list(a.shape), encode(a, dtype)) for name, a in tensors.items()]


def layout(entries):
    """Place entries back to back.

    Returns (header_pairs, data): header_pairs is a list of (name, entry dict)
    in order (a list, so tests can inject duplicate keys), data the data area.
    """
    pairs, chunks, offset = [], [], 0
    for name, dtype, shape, raw in entries:
        pairs.append((name, {"dtype": dtype, "shape": list(shape),
                             "data_offsets": [offset, offset + len(raw)]}))
        chunks.append(raw)
        offset += len(raw)
    return pairs, b"".join(chunks)


def header_bytes(pairs, metadata=None):
    """Serialize header pairs as a JSON object (space-padded to 8 bytes)."""
    items = []
    if metadata is not None:
        items.append(json.dumps("__metadata__") + ":" + json.dumps(metadata))
    for key, value in pairs:
        items.append(json.dumps(key) + ":" + json.dumps(value, separators=(",", ":")))
    text = ("{" + ",".join(items) + "}").encode("utf-8")
    return text + b" " * (-len(text) % 8)


def safetensors_bytes(header, data, header_len=None):
    """8-byte length + header + data; header_len overrides the length field."""
    n = len(header) if header_len is None else header_len
    return struct.pack("<Q", n) + header + data


def write_json(path, obj):
    """obj as indented JSON and a final newline (manifest.json, tokenizers.json)."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def write_bytes(path, blob):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)


def config_text(config):
    return json.dumps(config, indent=2) + "\n"


INDEX_NAME = "model.safetensors.index.json"


def shard_groups(entries, limit):
    """Hugging Face's split of entries into shards of at most `limit` bytes,
    filled in tensor order; a tensor larger than the limit is alone in its shard."""
    groups, current, size = [], [], 0
    for entry in entries:
        n = len(entry[3])
        if current and (n > limit or size + n > limit):
            groups.append(current)
            current, size = [], 0
        current.append(entry)
        size += n
        if n > limit:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def shard_name(i, n):
    return f"model-{i:05d}-of-{n:05d}.safetensors"


def index_text(weight_map, total_size):
    """The index as transformers writes it (sorted keys, indent 2)."""
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


def write_sharded(path, config, entries, limit):
    """config.json, the shards and the index of a sharded directory model."""
    groups = shard_groups(entries, limit)
    weight_map = {}
    for i, group in enumerate(groups):
        name = shard_name(i + 1, len(groups))
        pairs, data = layout(group)
        write_bytes(os.path.join(path, name),
                    safetensors_bytes(header_bytes(pairs, {"format": "pt"}), data))
        weight_map.update({e[0]: name for e in group})
    write_bytes(os.path.join(path, "config.json"), config_text(config).encode())
    total = sum(len(e[3]) for e in entries)
    write_bytes(os.path.join(path, INDEX_NAME), index_text(weight_map, total).encode())
    return groups


def write_model(outdir, relpath, fmt, config, tensors, dtype, shard=None):
    """Write a valid model in 'dir', 'file' or 'sharded' (shard: the limit) format."""
    write_entries(outdir, relpath, fmt, config, tensor_entries(tensors, dtype), shard)


def write_entries(outdir, relpath, fmt, config, entries, shard=None):
    """write_model for entries [(name, dtype, shape, raw bytes)]."""
    path = os.path.join(outdir, relpath)
    if fmt == "sharded":
        write_sharded(path, config, entries, shard)
        return
    pairs, data = layout(entries)
    if fmt == "dir":
        write_bytes(os.path.join(path, "config.json"), config_text(config).encode())
        write_bytes(os.path.join(path, "model.safetensors"),
                    safetensors_bytes(header_bytes(pairs), data))
    else:
        meta = {"config": json.dumps(config)}
        write_bytes(path, safetensors_bytes(header_bytes(pairs, meta), data))


# ---------------------------------------------------------------------------
# random weights
# ---------------------------------------------------------------------------

def seed_of(name):
    return zlib.crc32(name.encode("utf-8"))


def dense(rng, out_dim, in_dim):
    """N(0, 1/in) entries; square matrices get an orthogonal*diag form."""
    if out_dim == in_dim:
        q, r = np.linalg.qr(rng.standard_normal((out_dim, in_dim)))
        q = q * np.sign(np.diag(r))            # a proper Haar-random orthogonal
        return q * rng.uniform(0.7, 1.3, size=in_dim)[None, :]
    return rng.standard_normal((out_dim, in_dim)) / np.sqrt(in_dim)


DEFAULTS = {"rope_theta": 10000.0, "partial_rotary_factor": 1.0,
            "tie_word_embeddings": False, "rms_norm_eps": 1e-6,
            "block_type": "serial", "position_embedding": "rope"}


def make_config(s):
    """config.json dict for a spec; with explicit=False, defaults are omitted."""
    c = {"hidden_size": s["d"], "num_hidden_layers": s["L"],
         "num_attention_heads": s["H"], "num_key_value_heads": s["KV"],
         "head_dim": s["hd"], "intermediate_size": s["f"], "vocab_size": s["V"],
         "max_position_embeddings": 64, "hidden_act": s["act"],
         "rope_theta": s["theta"], "partial_rotary_factor": s["partial"],
         "tie_word_embeddings": s["tie"], "rms_norm_eps": s["eps"],
         "block_type": s["block"], "position_embedding": s["pos"]}
    if not s["explicit"]:
        for key, value in DEFAULTS.items():
            if c[key] == value:
                del c[key]
        if s["KV"] == s["H"]:
            del c["num_key_value_heads"]
        if s["hd"] * s["H"] == s["d"]:
            del c["head_dim"]
    return c


def make_tensors(s, rng):
    """Random float64 tensors (ordered dict) for a spec, before calibration."""
    d, H, KV, hd, f, V = s["d"], s["H"], s["KV"], s["hd"], s["f"], s["V"]
    t = {"model.embed_tokens.weight": rng.standard_normal((V, d))}

    def lin(name, out_dim, in_dim):
        t[name + ".weight"] = dense(rng, out_dim, in_dim)
        if s["bias"]:
            t[name + ".bias"] = 0.1 * rng.standard_normal(out_dim)

    for i in range(s["L"]):
        p = f"model.layers.{i}."
        for proj, out_dim, in_dim in (("q", H * hd, d), ("k", KV * hd, d),
                                      ("v", KV * hd, d), ("o", d, H * hd)):
            if proj not in s["absent"]:
                lin(p + f"self_attn.{proj}_proj", out_dim, in_dim)
        if s["glu"]:
            lin(p + "mlp.gate_proj", f, d)
        lin(p + "mlp.up_proj", f, d)
        lin(p + "mlp.down_proj", d, f)
    if s["norm"]:
        t["model.norm.weight"] = rng.uniform(0.8, 1.2, size=d)
    if not s["tie"]:
        lin("lm_head", V, d)
    return t


def rms(x):
    return float(np.sqrt(np.mean(x * x)))


def calibrate(config, t, tokens, logit_std=3.0):
    """Rescale output projections so every block output has RMS ~1 on the
    prompt and the logits have standard deviation ~logit_std (in place)."""
    c = config
    model = reference.Model(c, t)
    x = model.embed_tokens(tokens)
    L = c["num_hidden_layers"]
    for i in range(L):
        p = f"model.layers.{i}."
        scaled = [p + "mlp.down_proj"]
        if c.get("block_type", "serial") == "parallel":
            if p + "self_attn.o_proj.weight" in t:
                scaled.append(p + "self_attn.o_proj")
            else:
                # o(attn) is fixed: solve rms(a + s*F) = 1 for the FFN scale s.
                layer = model.layers[i]
                a = reference.attention(model.config, layer, x)
                F = reference.ffn(model.config.act, layer, x)
                qa, qb, qc = np.mean(F * F), 2 * np.mean(a * F), np.mean(a * a) - 1.0
                disc = qb * qb - 4 * qa * qc
                scale = (-qb + np.sqrt(disc)) / (2 * qa) if disc > 0 else 1.0
                if scale <= 0:
                    scale = 1.0
                _scale(t, scaled, scale)
                model = reference.Model(c, t)
                x = model.block(i, x)
                continue
        y = model.block(i, x)
        _scale(t, scaled, 1.0 / rms(y))
        model = reference.Model(c, t)
        x = model.block(i, x)
    # Head: bring the logits to a standard deviation of about logit_std.
    factor = logit_std / float(np.std(model.head(x)))
    if "lm_head.weight" in t:
        _scale(t, ["lm_head"], factor)
    elif "model.norm.weight" in t:
        t["model.norm.weight"] = t["model.norm.weight"] * factor
    else:  # tied head without final norm: shrink the last block's output
        p = f"model.layers.{L - 1}."
        names = [p + "mlp.down_proj"]
        if c.get("block_type", "serial") == "parallel" and p + "self_attn.o_proj.weight" in t:
            names.append(p + "self_attn.o_proj")
        _scale(t, names, factor)


def _scale(t, names, factor):
    for name in names:
        for suffix in (".weight", ".bias"):
            if name + suffix in t:
                t[name + suffix] = t[name + suffix] * factor


# ---------------------------------------------------------------------------
# quantized weights, quantized here (independently of the library) and stored
# as compressed-tensors does (docs/model-format.md, docs/quantization.md)
# ---------------------------------------------------------------------------

def f16(x):
    """float64 -> F16 through float32, nearest even each time (how a scale is stored)."""
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float16)


def round_half_away(v):
    """Round to nearest, ties away from zero (C's round()), exactly."""
    a = np.abs(v)
    r = np.floor(a)
    return np.copysign(r + (a - r >= 0.5), v)


def quantize(w, kind):
    """llama.cpp's Q8_0 ("q8": d = max|x| / 127) or Q4_0 ("q4": d = m / -8, m the
    first x of largest magnitude) per group of 32 inputs of a row, the scale
    rounded to F16 and q = round(x / scale) clamped: (q int64 [out, in], scale
    float16 [out, in / 32])."""
    out, inp = w.shape
    g = np.asarray(w, dtype=np.float64).reshape(out, inp // 32, 32)
    if kind == "q8":
        d = np.max(np.abs(g), axis=2) / 127.0
    else:
        m = np.take_along_axis(g, np.argmax(np.abs(g), axis=2)[..., None], axis=2)[..., 0]
        d = m / -8.0
    scale = f16(d)
    s = scale.astype(np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(s != 0, g / np.where(s != 0, s, 1.0), 0.0)
    lo, hi = (-127, 127) if kind == "q8" else (-8, 7)
    return np.clip(round_half_away(v), lo, hi).astype(np.int64).reshape(out, inp), scale


def pack_int32(q):
    """compressed-tensors' pack_to_int32 of 4-bit q [out, in]: element c of a row in
    bits 4 (c % 8) .. of word c / 8, as the unsigned q + 8."""
    out, inp = q.shape
    n = (q + 8).astype(np.uint32).reshape(out, inp // 8, 8)
    words = np.zeros((out, inp // 8), dtype=np.uint32)
    for k in range(8):
        words |= n[:, :, k] << np.uint32(4 * k)
    return words.view(np.int32)


LIN_ORDER = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def linear_modules(config, tensors):
    """The present linear layers in the library's order: block by block, then lm_head."""
    names = [f"model.layers.{i}.{n}" for i in range(config["num_hidden_layers"]) for n in LIN_ORDER]
    return [m for m in names + ["lm_head"] if m + ".weight" in tensors]


def quant_config(kinds, modules):
    """The quantization_config of modules stored as kinds[m] ("q8", "q4", None):
    one kind: the class "Linear" with the others ignored; both: format
    mixed-precision, each group naming its modules."""
    used = [k for k in ("q8", "q4") if any(kinds.get(m) == k for m in modules)]
    mixed = len(used) == 2
    fmt = {"q8": "int-quantized", "q4": "pack-quantized"}
    groups = {}
    for i, k in enumerate(used):
        g = {"targets": [m for m in modules if kinds.get(m) == k] if mixed else ["Linear"],
             "weights": {"num_bits": 8 if k == "q8" else 4, "type": "int", "symmetric": True,
                         "strategy": "group", "group_size": 32, "dynamic": False, "actorder": None},
             "input_activations": None, "output_activations": None}
        if mixed:
            g["format"] = fmt[k]
        groups[f"group_{i}"] = g
    return {"quant_method": "compressed-tensors", "format": "mixed-precision" if mixed else fmt[used[0]],
            "quantization_status": "compressed", "config_groups": groups,
            "ignore": [m for m in modules if kinds.get(m) is None], "kv_cache_scheme": None}


def quant_entries(tensors, dtype, kinds, scale_dtype="F16"):
    """Entries of tensors (float64, already rounded to dtype) with layer X stored
    as kinds.get(X): "q8" (X.weight I8), "q4" (X.weight_packed I32, X.weight_shape
    I64) with X.weight_scale; None: dtype."""
    ents = []
    for name, a in tensors.items():
        module = name[:-len(".weight")] if name.endswith(".weight") else None
        kind = kinds.get(module)
        if kind is None:
            ents.append((name, dtype, list(a.shape), encode(a, dtype)))
            continue
        q, scale = quantize(a, kind)
        out, inp = a.shape
        if kind == "q8":
            ents.append((module + ".weight", "I8", [out, inp], q.astype("<i1").tobytes()))
        else:
            ents.append((module + ".weight_packed", "I32", [out, inp // 8], pack_int32(q).astype("<i4").tobytes()))
        ents.append((module + ".weight_scale", scale_dtype, list(scale.shape),
                     encode(scale.astype(np.float64), scale_dtype)))
        if kind == "q4":
            ents.append((module + ".weight_shape", "I64", [2], np.array([out, inp], dtype="<i8").tobytes()))
    return ents


def qspec(name, source, kind, fmt="dir", keep=(), scales="F16", shard=None):
    return dict(name=name, source=source, kind=kind, fmt=fmt, keep=tuple(keep), scales=scales, shard=shard)


# Quantized models (manifest "quantized"), each from a valid model's stored
# weights: kind q8 / q4 for every linear layer but `keep` (a module or a
# projection's short name), or "mixed" (attention and head 8-bit, MLP 4-bit).
QUANTIZED = [
    qspec("q8_serial_mha_silu_glu", "serial_mha_silu_glu", "q8"),
    qspec("q4_serial_mha_silu_glu_keep_head", "serial_mha_silu_glu", "q4", keep=("lm_head",)),
    qspec("q4_serial_gqa_gelu_mlp_f16_file", "serial_gqa_gelu_mlp_rope25_f16_defaults", "q4", fmt="file"),
    qspec("q8_parallel_tied_f16_keep_down", "parallel_gqa_tanh_mlp_rope25_tied_f16", "q8",
          keep=("down_proj",)),
    qspec("q4_sharded_serial_gqa_bias_f16", "sharded_serial_gqa_silu_glu_bias_f16", "q4", fmt="sharded",
          shard=3000),
    qspec("mixed_q8_attn_q4_mlp_bias_bf16", "serial_mha_tanh_glu_bias_bf16", "mixed", fmt="file"),
    qspec("q8_f32_scales_noq_noo", "serial_noq_noo", "q8", scales="F32"),
    qspec("q4_bf16_scales_nok_nov", "serial_gqa_nok_nov_wideheads_file", "q4", scales="BF16", fmt="file"),
]


def quant_kinds(q, modules):
    def kind(m):
        if q["kind"] == "mixed":
            return "q4" if ".mlp." in m else "q8"
        short = m.rsplit(".", 1)[-1]
        return None if m in q["keep"] or short in q["keep"] else q["kind"]
    return {m: kind(m) for m in modules}


def build_quantized(outdir, q, sources):
    """Quantize a valid model's stored weights, write the model and its reference."""
    src = sources[q["source"]]
    config, tensors = reference.read_model_files(os.path.join(outdir, src["path"]))
    tensors = dict(tensors)
    if config.get("tie_word_embeddings") and "lm_head" not in q["keep"]:
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]   # a head of its own, quantized
        config = dict(config, tie_word_embeddings=False)
    modules = linear_modules(config, tensors)
    kinds = quant_kinds(q, modules)
    config = dict(config, quantization_config=quant_config(kinds, modules))
    rel = f"models/{q['name']}" + (".safetensors" if q["fmt"] == "file" else "")
    write_entries(outdir, rel, q["fmt"], config, quant_entries(tensors, src["dtype"], kinds, q["scales"]),
                  q["shard"])
    ref = reference.logits(os.path.join(outdir, rel), src["tokens"])
    np.save(os.path.join(outdir, q["name"] + ".ref.npy"), np.ascontiguousarray(ref, dtype=np.float64))
    counts = {}
    for m in modules:
        key = {"q8": "Q8_0", "q4": "Q4_0", None: src["dtype"]}[kinds[m]]
        counts[key] = counts.get(key, 0) + int(tensors[m + ".weight"].size)
    entry = {"name": q["name"], "path": rel, "format": q["fmt"], "source": q["source"], "tokens": src["tokens"],
             "ref": q["name"] + ".ref.npy", "scales": q["scales"], "dtype_weights": counts,
             "weight_dtype": next(iter(counts)) if len(counts) == 1 else "mixed"}
    # what skl_model_quantize_to makes the same tensors from (F16 scales, one type)
    if q["kind"] != "mixed" and q["scales"] == "F16":
        entry["made_by"] = {"type": q["kind"] + "_0", "keep": list(q["keep"]), "max_shard_size": q["shard"] or 0}
    return entry


# ---------------------------------------------------------------------------
# the valid models
# ---------------------------------------------------------------------------

def spec(name, d, L, H, KV, hd, f, V, act, glu, block="serial", pos="rope",
         partial=1.0, theta=10000.0, bias=False, norm=True, tie=False,
         dtype="F32", fmt="dir", absent=(), explicit=True, eps=1e-6, shard=None):
    return dict(name=name, d=d, L=L, H=H, KV=KV, hd=hd, f=f, V=V, act=act, glu=glu,
                block=block, pos=pos, partial=partial, theta=theta, bias=bias,
                norm=norm, tie=tie, dtype=dtype, fmt=fmt, absent=tuple(absent),
                explicit=explicit, eps=eps, shard=shard)


SPECS = [
    spec("serial_mha_silu_glu", 64, 2, 4, 4, 16, 128, 128, "silu", True),
    spec("serial_mha_gelu_glu_bias_file", 48, 3, 4, 4, 12, 96, 96, "gelu", True,
         bias=True, fmt="file"),
    spec("serial_gqa_relu_mlp_bf16_nonorm", 64, 2, 4, 2, 16, 96, 100, "relu", False,
         norm=False, dtype="BF16"),
    spec("serial_mqa_gelunew_glu_rope50_bias_f16", 32, 2, 4, 1, 8, 64, 64, "gelu_new",
         True, partial=0.5, bias=True, dtype="F16", fmt="file"),
    spec("parallel_gqa_tanh_mlp_rope25_tied_f16", 64, 2, 4, 2, 16, 128, 128,
         "gelu_pytorch_tanh", False, block="parallel", partial=0.25, tie=True,
         dtype="F16"),
    spec("serial_nope_silu_mlp_tied_bf16_defaults", 32, 3, 2, 2, 16, 64, 80, "silu",
         False, pos="none", tie=True, norm=False, dtype="BF16", fmt="file",
         explicit=False),
    spec("parallel_mha_relu_glu_bias_theta5e5", 48, 2, 3, 3, 16, 96, 96, "relu", True,
         block="parallel", theta=500000.0, bias=True, eps=1e-5),
    spec("serial_noq_noo", 32, 2, 4, 4, 8, 64, 64, "silu", True, absent="qo"),
    spec("parallel_gqa_noq_noo_bias_f16", 64, 2, 4, 2, 16, 128, 96, "gelu", True,
         block="parallel", bias=True, dtype="F16", fmt="file", absent="qo"),
    spec("serial_mha_nok_noo_bias_bf16", 48, 2, 4, 4, 12, 96, 72, "gelu_new", False,
         bias=True, dtype="BF16", absent="ko"),
    spec("serial_mha_nov_noo_rope50", 32, 3, 2, 2, 16, 64, 64, "relu", True,
         partial=0.5, fmt="file", absent="vo"),
    spec("serial_gqa_wideheads_bias", 32, 2, 4, 2, 16, 64, 64, "silu", True,
         bias=True),
    spec("parallel_mqa_narrowheads_tanh_glu_rope50_f16", 48, 2, 2, 1, 16, 96, 80,
         "gelu_pytorch_tanh", True, block="parallel", partial=0.5, dtype="F16",
         fmt="file"),
    spec("serial_noqkvo_gelu_mlp", 32, 2, 4, 4, 8, 64, 64, "gelu", False, fmt="file",
         absent="qkvo"),
    spec("serial_mha_tanh_glu_bias_bf16", 64, 3, 4, 4, 16, 128, 128,
         "gelu_pytorch_tanh", True, bias=True, dtype="BF16", fmt="file"),
    spec("parallel_mha_silu_mlp_nope_nonorm", 32, 2, 4, 4, 8, 64, 64, "silu", False,
         block="parallel", pos="none", norm=False),
    spec("serial_gqa_gelu_mlp_rope25_f16_defaults", 64, 2, 8, 2, 8, 128, 128, "gelu",
         False, partial=0.25, dtype="F16", explicit=False),
    spec("serial_mha_relu_glu_bias_tied_file", 32, 2, 2, 2, 16, 64, 64, "relu", True,
         bias=True, tie=True, fmt="file"),
    spec("parallel_mha_nok_nov_gelunew_glu_bf16", 32, 2, 4, 4, 8, 64, 64, "gelu_new",
         True, block="parallel", dtype="BF16", absent="kv"),
    spec("serial_gqa_nok_nov_wideheads_file", 32, 2, 4, 2, 16, 64, 64, "silu", False,
         fmt="file", absent="kv"),
]


# Sharded directories (manifest "sharded"): small shard limits give several
# shards, and a tensor larger than the limit (the embedding, lm_head) alone in one.
SHARDED = [
    spec("sharded_serial_gqa_silu_glu_bias_f16", 32, 3, 4, 2, 8, 64, 96, "silu", True,
         bias=True, dtype="F16", fmt="sharded", shard=5000),
    spec("sharded_parallel_mha_gelu_mlp_tied_bf16", 32, 2, 4, 4, 8, 64, 80, "gelu", False,
         block="parallel", tie=True, dtype="BF16", fmt="sharded", shard=12000),
]


def features(s):
    """Short feature strings describing a spec."""
    out = [s["block"]]
    out.append("mha" if s["KV"] == s["H"] else ("mqa" if s["KV"] == 1 else "gqa"))
    out += ["glu" if s["glu"] else "mlp", s["act"]]
    if s["pos"] == "none":
        out.append("nope")
    else:
        out.append("rope_full" if s["partial"] == 1.0 else f"rope_partial_{s['partial']}")
        if s["theta"] != 10000.0:
            out.append("rope_theta")
    out.append("bias" if s["bias"] else "no_bias")
    out.append("final_norm" if s["norm"] else "no_norm")
    out.append("tied" if s["tie"] else "untied")
    out += [s["dtype"].lower(), s["fmt"]]
    out += [f"no_{p}" for p in s["absent"]]
    if s["H"] * s["hd"] != s["d"]:
        out.append("heads_x_hd_ne_d")
    if not s["explicit"]:
        out.append("config_defaults")
    if s["eps"] != 1e-6:
        out.append("rms_eps")
    return out


def build_valid(outdir, s):
    """Generate, calibrate and write one valid model; write its reference."""
    rng = np.random.default_rng(seed_of(s["name"]))
    n = int(rng.integers(8, 17))
    tokens = [int(t) for t in rng.integers(0, s["V"], size=n)]
    config = make_config(s)
    tensors = make_tensors(s, rng)
    calibrate(config, tensors, tokens)
    rel = f"models/{s['name']}" + (".safetensors" if s["fmt"] == "file" else "")
    write_model(outdir, rel, s["fmt"], config, tensors, s["dtype"], s["shard"])
    ref = reference.logits(os.path.join(outdir, rel), tokens)
    np.save(os.path.join(outdir, s["name"] + ".ref.npy"),
            np.ascontiguousarray(ref, dtype=np.float64))
    entry = {"name": s["name"], "path": rel, "format": s["fmt"], "dtype": s["dtype"],
             "block_type": s["block"], "tokens": tokens, "ref": s["name"] + ".ref.npy",
             "features": features(s)}
    if s["shard"]:
        entry["max_shard_size"] = s["shard"]
        entry["shards"] = sorted(f for f in os.listdir(os.path.join(outdir, rel))
                                 if f.endswith(".safetensors"))
    return entry


# ---------------------------------------------------------------------------
# malformed models
# ---------------------------------------------------------------------------

BASE = spec("base", 16, 2, 2, 2, 8, 32, 32, "silu", True)


def base_model(s=BASE):
    """Small valid config and tensors the bad models are derived from."""
    rng = np.random.default_rng(seed_of("bad_" + s["name"]))
    return make_config(s), make_tensors(s, rng)


def file_blob(config, pairs, data, header_len=None, metadata=None):
    """Single-file bytes with the config embedded in __metadata__."""
    meta = {"config": json.dumps(config)} if metadata is None else metadata
    return safetensors_bytes(header_bytes(pairs, meta), data, header_len)


def build_bad(outdir):
    """Write the malformed models; return their manifest entries."""
    bad = []
    config, tensors = base_model()
    entries = tensor_entries(tensors, "F32")
    pairs, data = layout(entries)
    last = max(range(len(pairs)), key=lambda i: pairs[i][1]["data_offsets"][0])

    def put_file(name, blob, expect):
        rel = f"bad/{name}.safetensors"
        write_bytes(os.path.join(outdir, rel), blob)
        bad.append({"name": name, "path": rel, "expect": "SKL_ERR_" + expect})

    def put_dir(name, config_bytes, blob, expect):
        rel = f"bad/{name}"
        write_bytes(os.path.join(outdir, rel, "config.json"), config_bytes)
        write_bytes(os.path.join(outdir, rel, "model.safetensors"), blob)
        bad.append({"name": name, "path": rel, "expect": "SKL_ERR_" + expect})

    def edited(index, **changes):
        """Copy of pairs with entry `index` updated (None value deletes a field)."""
        out = [(k, dict(v)) for k, v in pairs]
        for field, value in changes.items():
            if value is None:
                del out[index][1][field]
            else:
                out[index][1][field] = value
        return out

    def without(names, extra=()):
        """Re-laid-out file from the base tensors minus `names` plus `extra`."""
        ents = [e for e in entries if e[0] not in names] + list(extra)
        return file_blob(config, *layout(ents))

    good = file_blob(config, pairs, data)
    config_ok = config_text(config).encode()
    plain_blob = safetensors_bytes(header_bytes(pairs), data)

    # -- file-level structure ------------------------------------------------
    put_file("truncated_data", good[:-16], "TRUNCATED")
    put_file("five_bytes", good[:5], "TRUNCATED")
    put_file("header_size_too_large", struct.pack("<Q", len(good) + 64) + good[8:],
             "HEADER_SIZE")

    header = header_bytes(pairs, {"config": json.dumps(config)})
    broken = header.replace(b'"dtype":', b'"dtype";', 1)
    assert len(broken) == len(header)
    put_file("header_bad_json", safetensors_bytes(broken, data), "JSON")
    put_dir("config_bad_json", config_ok.rstrip().rstrip(b"}") + b"\n", plain_blob, "JSON")

    dup = pairs[:1] + pairs              # first tensor entry appears twice, identical
    put_file("header_duplicate_key", file_blob(config, dup, data), "DUPLICATE_KEY")
    dup_cfg = config_ok.replace(b'{\n', b'{\n  "hidden_size": %d,\n' % config["hidden_size"], 1)
    put_dir("config_duplicate_key", dup_cfg, plain_blob, "DUPLICATE_KEY")

    # -- __metadata__: strings to strings only -------------------------------------
    for kind, value in (("int", 5), ("object", {"a": "b"}), ("true", True), ("null", None)):
        put_file(f"metadata_{kind}", file_blob(config, pairs, data,
                                               metadata={"config": json.dumps(config), "format": value}),
                 "METADATA")
        bad[-1]["mention"] = ['__metadata__["format"]', "expected a string"]

    # -- bounds on JSON, checked before a tree is built (docs/format.md, "Bounds") ---
    # 2^20 + 1 values in a header (the bound is 2^20), 4 Mi + 1 in a config.json (4 Mi).
    huge = [("huge", [0] * (1 << 20))] + pairs
    put_file("header_too_many_values", file_blob(config, huge, data), "JSON_LIMIT")
    put_dir("config_too_many_values", json.dumps(dict(config, huge=[0] * (4 << 20))).encode(), plain_blob,
            "JSON_LIMIT")

    # -- header entries --------------------------------------------------------
    # Drop data_offsets of the last tensor and its bytes, so the rest still tiles.
    begin = pairs[last][1]["data_offsets"][0]
    put_file("missing_data_offsets",
             file_blob(config, edited(last, data_offsets=None), data[:begin]), "HEADER")
    shape0 = pairs[0][1]["shape"]
    put_file("shape_not_ints",
             file_blob(config, edited(0, shape=[shape0[0], str(shape0[1])]), data), "HEADER")
    put_file("dtype_q7", file_blob(config, edited(0, dtype="Q7"), data), "DTYPE")

    # Tensor 0 claims 4 bytes more than its shape needs; everything still tiles.
    grown = [(k, dict(v)) for k, v in pairs]
    for i, (k, v) in enumerate(grown):
        b, e = v["data_offsets"]
        v["data_offsets"] = [b, e + 4] if i == 0 else [b + 4, e + 4]
    end0 = pairs[0][1]["data_offsets"][1]
    put_file("tensor_size_mismatch",
             file_blob(config, grown, data[:end0] + bytes(4) + data[end0:]), "TENSOR_SIZE")

    # -- tiling of the data area ---------------------------------------------
    b, e = pairs[last][1]["data_offsets"]
    put_file("out_of_range",        # sizes add up to the data area, last tensor pushed out
             file_blob(config, edited(last, data_offsets=[b + 8, e + 8]), data), "OUT_OF_RANGE")
    put_file("overlap",             # last tensor starts 8 bytes early; area shrunk to match
             file_blob(config, edited(last, data_offsets=[b - 8, e - 8]), data[:-8]), "OVERLAP")
    put_file("gap",                 # 8 unused bytes before the last tensor
             file_blob(config, edited(last, data_offsets=[b + 8, e + 8]),
                       data[:b] + bytes(8) + data[b:]), "GAP")
    put_file("trailing_bytes", good + bytes(8), "GAP")

    # -- config ----------------------------------------------------------------
    no_hidden = {k: v for k, v in config.items() if k != "hidden_size"}
    put_file("config_missing_hidden_size", file_blob(no_hidden, pairs, data), "CONFIG")
    put_file("config_bad_act", file_blob(dict(config, hidden_act="swish2"), pairs, data),
             "CONFIG")
    # Tensors consistent with H=4, KV=3 (k/v have 3 heads): only the divisibility is wrong.
    kv_spec = dict(BASE, name="kv3", H=4, KV=3, hd=4)
    kv_config, kv_tensors = base_model(kv_spec)
    put_file("config_heads_not_divisible",
             file_blob(kv_config, *layout(tensor_entries(kv_tensors, "F32"))), "CONFIG")

    # -- tensors vs config -------------------------------------------------
    down = next(i for i, (k, _) in enumerate(pairs)
                if k == "model.layers.0.mlp.down_proj.weight")
    put_file("shape_mismatch",      # down_proj declared [f, d] instead of [d, f]
             file_blob(config, edited(down, shape=pairs[down][1]["shape"][::-1]), data),
             "SHAPE")
    put_file("missing_down_proj", without({"model.layers.1.mlp.down_proj.weight"}),
             "MISSING_TENSOR")
    put_file("missing_lm_head", without({"lm_head.weight"}), "MISSING_TENSOR")
    rng = np.random.default_rng(seed_of("bad_extra"))
    foo = ("model.layers.0.mlp.foo.weight", "F32", [4, 4],
           encode(rng.standard_normal((4, 4)), "F32"))
    put_file("unexpected_tensor", without((), [foo]), "UNEXPECTED_TENSOR")
    up = tensors["model.layers.0.mlp.up_proj.weight"]
    layer99 = ("model.layers.99.mlp.up_proj.weight", "F32", list(up.shape), encode(up, "F32"))
    put_file("unexpected_layer_99", without((), [layer99]), "UNEXPECTED_TENSOR")
    bad += build_bad_sharded(outdir, config, entries)
    bad += build_bad_quantized(outdir)
    return bad


def build_bad_sharded(outdir, config, entries):
    """Sharded directories, each wrong in one way; "mention": what the message
    must name besides the directory (the index, the shard, the tensor)."""
    bad = []
    groups = shard_groups(entries, 2048)   # 13 shards; shard 2 holds q and k of layer 0
    names = [shard_name(i + 1, len(groups)) for i in range(len(groups))]
    assert len(groups) >= 3 and len(groups[1]) == 2
    total = sum(len(e[3]) for e in entries)
    good_map = {e[0]: n for n, g in zip(names, groups) for e in g}
    first, second_b = groups[0][0][0], groups[1][1][0]
    # the tensor a message about shard 2 names: its first in the (sorted) weight_map
    second = min(k for k, v in good_map.items() if v == names[1])

    def blob(group):
        pairs, data = layout(group)
        return safetensors_bytes(header_bytes(pairs, {"format": "pt"}), data)

    def put(name, expect, index=None, shards=None, mention=(), extra=None):
        """index: a weight_map dict (written with total_size as transformers
        does), or raw bytes; shards: {file name: list of entries or bytes}
        (default: the good set); extra(path) adds files."""
        rel = f"bad/{name}"
        path = os.path.join(outdir, rel)
        if shards is None:
            shards = dict(zip(names, groups))
        for fname, content in shards.items():
            write_bytes(os.path.join(path, fname),
                        content if isinstance(content, bytes) else blob(content))
        text = index_text(good_map if index is None else index, total).encode() \
            if not isinstance(index, bytes) else index
        write_bytes(os.path.join(path, "config.json"), config_text(config).encode())
        write_bytes(os.path.join(path, INDEX_NAME), text)
        if extra:
            extra(path)
        bad.append({"name": name, "path": rel, "expect": "SKL_ERR_" + expect,
                    "mention": [INDEX_NAME] + list(mention)})

    def raw(obj):
        return (json.dumps(obj, indent=2) + "\n").encode()

    # -- the index's JSON and structure ------------------------------------------
    good_text = index_text(good_map, total)
    put("shard_index_bad_json", "JSON", good_text.encode()[:-3])
    put("shard_index_duplicate_key", "DUPLICATE_KEY",
        good_text.replace('"weight_map": {', '"weight_map": {\n    "%s": "%s",' % (first, names[0]),
                          1).encode())
    put("shard_index_not_object", "INDEX", b"[]\n")
    put("shard_index_no_weight_map", "INDEX", raw({"metadata": {"total_size": total}}))
    put("shard_index_weight_map_list", "INDEX", raw({"weight_map": sorted(good_map)}))
    put("shard_index_empty_weight_map", "INDEX", raw({"weight_map": {}}))
    put("shard_index_metadata_list", "INDEX", raw({"metadata": [total], "weight_map": good_map}))
    put("shard_index_total_size_string", "INDEX",
        raw({"metadata": {"total_size": str(total)}, "weight_map": good_map}))
    put("shard_index_value_not_string", "INDEX", dict(good_map, **{first: 1}), mention=[first])

    # -- weight_map values: plain file names of regular files --------------------
    sub = "sub/" + names[0]
    put("shard_name_subdir", "SHARD_NAME", dict(good_map, **{first: sub}), mention=[first, sub],
        extra=lambda p: write_bytes(os.path.join(p, sub), blob(groups[0])))
    put("shard_name_dotdot", "SHARD_NAME", dict(good_map, **{first: ".."}), mention=[first])
    put("shard_name_parent", "SHARD_NAME", dict(good_map, **{first: "../" + names[0]}),
        mention=[first, "../" + names[0]])
    put("shard_name_empty", "SHARD_NAME", dict(good_map, **{first: ""}), mention=[first])
    without_2 = {n: g for n, g in zip(names, groups) if n != names[1]}
    put("shard_missing", "SHARD_MISSING", shards=without_2, mention=[names[1], second])
    put("shard_is_directory", "SHARD_MISSING", shards=without_2, mention=[names[1], second],
        extra=lambda p: os.makedirs(os.path.join(p, names[1]), exist_ok=True))
    put("shard_truncated", "TRUNCATED", shards=dict(zip(names, groups), **{names[2]: blob(groups[2])[:-4]}),
        mention=[names[2]])

    # -- tensors against weight_map ----------------------------------------------
    put("shard_tensor_elsewhere", "SHARD_MISMATCH", dict(good_map, **{second_b: names[0]}),
        mention=[second_b, names[0], names[1]])
    put("shard_tensor_nowhere", "SHARD_MISMATCH", shards=dict(zip(names, groups), **{names[1]: groups[1][:1]}),
        mention=[second_b, names[1]])
    put("shard_tensor_twice", "SHARD_DUPLICATE",
        shards=dict(zip(names, groups), **{names[2]: groups[2] + groups[1][1:]}),
        mention=[second_b, names[1], names[2]])
    rng = np.random.default_rng(seed_of("bad_shard_extra"))
    foo = ("model.layers.0.mlp.foo.weight", "F32", [4, 4], encode(rng.standard_normal((4, 4)), "F32"))
    put("shard_tensor_unindexed", "SHARD_UNINDEXED",
        shards=dict(zip(names, groups), **{names[2]: groups[2] + [foo]}), mention=[foo[0], names[2]])
    # Index and shards agree, but the model lacks a tensor: model.c's own check.
    up = groups[4][0][0]
    assert up == "model.layers.0.mlp.up_proj.weight" and len(groups[4]) == 1
    put("shard_model_missing_tensor", "MISSING_TENSOR", {k: v for k, v in good_map.items() if k != up},
        shards={n: g for n, g in zip(names, groups) if n != names[4]}, mention=[up])
    return bad


def build_degenerate(outdir):
    """Valid models whose activations vanish (a zero embedding) or overflow float32 (an embedding
    of 1e30): the original's own logits are all zero or not finite, so the merge's verification
    can show nothing and must say it is inconclusive."""
    entries = []
    for name, factor in (("vanishing", 0.0), ("overflowing", 1e30)):
        config, tensors = base_model()
        tensors["model.embed_tokens.weight"] = tensors["model.embed_tokens.weight"] * factor
        rel = f"degenerate/{name}"
        write_model(outdir, rel, "dir", config, tensors, "F32")
        entries.append({"name": name, "path": rel})
    return entries


# A quantizable base (every input a multiple of 32) for the malformed quantized models.
BASE_Q = spec("base_q", 32, 2, 2, 2, 16, 64, 32, "silu", True)


def build_bad_quantized(outdir):
    """Single files, each a quantized model wrong in one way (its config or a tensor)."""
    bad = []
    config, tensors = base_model(BASE_Q)
    tensors = {k: reference.decode_tensor(encode(v, "F32"), "F32", list(v.shape)) for k, v in tensors.items()}
    modules = linear_modules(config, tensors)

    def made(kind, keep=()):
        kinds = {m: None if m in keep else kind for m in modules}
        return (dict(config, quantization_config=quant_config(kinds, modules)),
                quant_entries(tensors, "F32", kinds))

    def put(name, expect, cfg, ents):
        rel = f"bad/{name}.safetensors"
        write_bytes(os.path.join(outdir, rel), file_blob(cfg, *layout(ents)))
        bad.append({"name": name, "path": rel, "expect": "SKL_ERR_" + expect})

    def with_qc(name, expect, kind, edit):
        """The base quantized as kind, its quantization_config changed by edit(qc) in place."""
        cfg, ents = made(kind)
        cfg = json.loads(json.dumps(cfg))
        edit(cfg["quantization_config"])
        put(name, expect, cfg, ents)

    def set_in(*path_value):
        def edit(qc):
            *path, value = path_value
            o = qc
            for k in path[:-1]:
                o = o[k]
            if value is DELETE:
                del o[path[-1]]
            else:
                o[path[-1]] = value
        return edit

    w = ("config_groups", "group_0", "weights")
    # -- the quantization_config, one key at a time ------------------------------
    put("quant_config_not_object", "QUANT_CONFIG", dict(made("q8")[0], quantization_config=[8]), made("q8")[1])
    with_qc("quant_method_gptq", "QUANT_CONFIG", "q8", set_in("quant_method", "gptq"))
    with_qc("quant_format_float", "QUANT_CONFIG", "q8", set_in("format", "float-quantized"))
    with_qc("quant_format_missing", "QUANT_CONFIG", "q8", set_in("format", DELETE))
    with_qc("quant_status_frozen", "QUANT_CONFIG", "q8", set_in("quantization_status", "frozen"))
    with_qc("quant_groups_empty", "QUANT_CONFIG", "q8", set_in("config_groups", {}))
    with_qc("quant_group_preset_list", "QUANT_CONFIG", "q8", set_in("config_groups", "group_0", ["Linear"]))
    with_qc("quant_weights_missing", "QUANT_CONFIG", "q8", set_in(*w, DELETE))
    with_qc("quant_num_bits_3", "QUANT_CONFIG", "q8", set_in(*w, "num_bits", 3))
    with_qc("quant_type_float", "QUANT_CONFIG", "q8", set_in(*w, "type", "float"))
    with_qc("quant_asymmetric", "QUANT_CONFIG", "q8", set_in(*w, "symmetric", False))
    with_qc("quant_dynamic", "QUANT_CONFIG", "q8", set_in(*w, "dynamic", True))
    with_qc("quant_actorder_group", "QUANT_CONFIG", "q4", set_in(*w, "actorder", "group"))
    with_qc("quant_block_structure", "QUANT_CONFIG", "q8", set_in(*w, "block_structure", [128, 128]))
    with_qc("quant_input_activations", "QUANT_CONFIG", "q8",
            set_in("config_groups", "group_0", "input_activations", {"num_bits": 8, "type": "int"}))
    with_qc("quant_targets_missing", "QUANT_CONFIG", "q8", set_in("config_groups", "group_0", "targets", DELETE))
    with_qc("quant_target_embedding_class", "QUANT_CONFIG", "q8",
            set_in("config_groups", "group_0", "targets", ["Linear", "Embedding"]))
    with_qc("quant_target_bad_regex", "QUANT_CONFIG", "q8", set_in("config_groups", "group_0", "targets", ["re:(q"]))
    with_qc("quant_target_embedding", "QUANT_CONFIG", "q8",
            set_in("config_groups", "group_0", "targets", ["Linear", "re:.*embed_tokens"]))
    with_qc("quant_ignore_not_list", "QUANT_CONFIG", "q8", set_in("ignore", "lm_head"))
    with_qc("quant_kv_cache_scheme", "QUANT_CONFIG", "q8", set_in("kv_cache_scheme", {"num_bits": 8}))
    with_qc("quant_sparsity", "QUANT_CONFIG", "q8", set_in("sparsity_config", {"format": "sparse-bitmask"}))
    with_qc("quant_mixed_group_format_missing", "QUANT_CONFIG", "q8", set_in("format", "mixed-precision"))
    with_qc("quant_group_format_other", "QUANT_CONFIG", "q8",
            set_in("config_groups", "group_0", "format", "pack-quantized"))
    with_qc("quant_group_size_128", "QUANT_GROUP", "q8", set_in(*w, "group_size", 128))
    with_qc("quant_strategy_channel", "QUANT_GROUP", "q8", set_in(*w, "strategy", "channel"))
    with_qc("quant_group_size_missing", "QUANT_GROUP", "q4", set_in(*w, "group_size", DELETE))
    with_qc("quant_pack_8bit", "UNSUPPORTED", "q8", set_in("format", "pack-quantized"))

    # -- the tensors ---------------------------------------------------------------
    q = "model.layers.0.self_attn.q_proj"

    def edited(kind, edit, keep=()):
        """The base quantized as kind, its entries changed by edit(list) in place."""
        cfg, ents = made(kind, keep)
        edit(ents)
        return cfg, ents

    def replace(name, dtype=None, shape=None, raw=None):
        def edit(ents):
            i = next(i for i, e in enumerate(ents) if e[0] == name)
            n, d, sh, r = ents[i]
            ents[i] = (n, dtype or d, shape or sh, r if raw is None else raw)
        return edit

    def drop(name):
        return lambda ents: ents.remove(next(e for e in ents if e[0] == name))

    def add(entry):
        return lambda ents: ents.append(entry)

    def scale_bytes(kind, fix):
        """q_proj's weight_scale F16 bytes with fix(values) applied."""
        _, scale = quantize(tensors[q + ".weight"], kind)
        return encode(fix(scale.astype(np.float64)), "F16")

    f32_scale = quantize(tensors[q + ".weight"], "q8")[1].astype(np.float64)
    qw = quantize(tensors[q + ".weight"], "q8")[0]
    zero_first = f32_scale.copy()
    zero_first[0, 0] = 0.0
    cases = [
        ("quant_q8_weight_f32", "QUANT_WEIGHT", "q8",
         replace(q + ".weight", "F32", None, encode(tensors[q + ".weight"], "F32")), ()),
        ("quant_q8_weight_shape", "QUANT_WEIGHT", "q8", replace(q + ".weight", None, [64, 16]), ()),
        ("quant_q4_packed_i8", "QUANT_WEIGHT", "q4", replace(q + ".weight_packed", "I8", [32, 16]), ()),
        ("quant_q4_packed_shape", "QUANT_WEIGHT", "q4", replace(q + ".weight_packed", None, [4, 32]), ()),
        ("quant_q4_weight_not_packed", "QUANT_WEIGHT", "q4",
         lambda ents: (drop(q + ".weight_packed")(ents),
                       ents.append((q + ".weight", "I8", [32, 32], qw.astype("<i1").tobytes()))), ()),
        ("quant_q4_weight_shape_missing", "QUANT_WEIGHT", "q4", drop(q + ".weight_shape"), ()),
        ("quant_q4_weight_shape_values", "QUANT_WEIGHT", "q4",
         replace(q + ".weight_shape", None, None, np.array([32, 64], dtype="<i8").tobytes()), ()),
        ("quant_q4_weight_shape_i32", "QUANT_WEIGHT", "q4",
         replace(q + ".weight_shape", "I32", [4], np.array([32, 32, 0, 0], dtype="<i4").tobytes()), ()),
        ("quant_q8_weight_shape_present", "QUANT_WEIGHT", "q8",
         add((q + ".weight_shape", "I64", [2], np.array([32, 32], dtype="<i8").tobytes())), ()),
        ("quant_scale_missing", "QUANT_SCALE", "q8", drop(q + ".weight_scale"), ()),
        ("quant_scale_shape", "QUANT_SCALE", "q8", replace(q + ".weight_scale", None, [16, 2]), ()),
        ("quant_scale_dtype_i32", "QUANT_SCALE", "q8",
         replace(q + ".weight_scale", "I32", [32, 1], np.zeros(32, dtype="<i4").tobytes()), ()),
        ("quant_scale_inf", "QUANT_SCALE", "q8",
         replace(q + ".weight_scale", None, None, scale_bytes("q8", lambda v: np.where(v == v.max(), np.inf, v))), ()),
        ("quant_scale_nan", "QUANT_SCALE", "q4",
         replace(q + ".weight_scale", None, None, scale_bytes("q4", lambda v: np.where(v == v.max(), np.nan, v))), ()),
        ("quant_scale_f32_underflow", "QUANT_SCALE", "q8",
         replace(q + ".weight_scale", "F32", None, encode(np.where(f32_scale == f32_scale.max(), 1e-9, f32_scale), "F32")), ()),
        ("quant_scale_f32_overflow", "QUANT_SCALE", "q8",
         replace(q + ".weight_scale", "F32", None, encode(np.where(f32_scale == f32_scale.max(), 1e6, f32_scale), "F32")), ()),
        ("quant_scale_zero_nonzero_group", "QUANT_SCALE", "q8",
         replace(q + ".weight_scale", None, None, encode(zero_first, "F16")), ()),
        ("quant_scale_unquantized_layer", "QUANT_SCALE", "q8",
         add(("lm_head.weight_scale", "F16", [32, 1], encode(np.ones((32, 1)), "F16"))), ("lm_head",)),
        ("quant_packed_unquantized_layer", "QUANT_WEIGHT", "q8",
         add(("lm_head.weight_packed", "I32", [32, 4], np.zeros(128, dtype="<i4").tobytes())), ("lm_head",)),
        ("quant_scale_without_weight", "QUANT_SCALE", "q8", drop(q + ".weight"), ()),
        ("quant_scale_embedding", "QUANT_SCALE", "q8",
         add(("model.embed_tokens.weight_scale", "F16", [32, 1], encode(np.ones((32, 1)), "F16"))), ()),
        ("quant_i8_norm", "DTYPE", "q8",
         replace("model.norm.weight", "I8", None, np.ones(32, dtype="<i1").tobytes()), ()),
        ("quant_i8_unquantized_weight", "DTYPE", "q8", replace("lm_head.weight", "I8", None,
                                                              np.ones(32 * 32, dtype="<i1").tobytes()), ("lm_head",)),
        ("quant_i64_bias", "DTYPE", "q8", add((q + ".bias", "I64", [32], np.zeros(32, dtype="<i8").tobytes())), ()),
        ("quant_zero_point", "UNEXPECTED_TENSOR", "q8",
         add((q + ".weight_zero_point", "I8", [32, 1], np.zeros(32, dtype="<i1").tobytes())), ()),
    ]
    for name, expect, kind, edit, keep in cases:
        put(name, expect, *edited(kind, edit, keep))

    # An integer weight in a model without a quantization_config.
    plain = [e if e[0] != q + ".weight" else (e[0], "I8", e[2], np.ones(32 * 32, dtype="<i1").tobytes())
             for e in tensor_entries(tensors, "F32")]
    put("quant_i8_without_config", "DTYPE", config, plain)
    # A quantized layer whose inputs are not a multiple of 32 (the base of 16).
    cfg16, t16 = base_model()
    kinds16 = {m: "q8" for m in linear_modules(cfg16, t16)}
    ents16 = [e if e[0] != "model.layers.0.self_attn.q_proj.weight" else
              (e[0], "I8", [16, 16], np.ones(256, dtype="<i1").tobytes()) for e in tensor_entries(t16, "F32")]
    ents16.append(("model.layers.0.self_attn.q_proj.weight_scale", "F16", [16, 1], encode(np.ones((16, 1)), "F16")))
    put("quant_inputs_not_multiple_of_32", "QUANT_GROUP",
        dict(cfg16, quantization_config=quant_config(kinds16, linear_modules(cfg16, t16))), ents16)
    return bad


DELETE = object()  # set_in: remove the key


def build_nonfinite(outdir):
    """Valid models with one NaN or infinity in a weight the merge reads: the merge must refuse
    them (SKL_ERR_NOT_FINITE) naming the tensor and the element, before LAPACK sees them."""
    entries = []
    for name, tensor, at, value in (("nan_q", "model.layers.0.self_attn.q_proj.weight", (1, 2), np.nan),
                                    ("inf_down", "model.layers.1.mlp.down_proj.weight", (3, 0), np.inf),
                                    ("ninf_embed", "model.embed_tokens.weight", (5, 7), -np.inf)):
        config, tensors = base_model()
        tensors[tensor] = tensors[tensor].copy()
        tensors[tensor][at] = value
        rel = f"nonfinite/{name}"
        write_model(outdir, rel, "dir", config, tensors, "F32")
        entries.append({"name": name, "path": rel, "tensor": tensor, "at": list(at)})
    return entries


# ---------------------------------------------------------------------------

# main's command-line handling has the shape of tokenizers.py's main, by design:
# each generator is its own command (`models.py OUTDIR`, `tokenizers.py OUTDIR`).
def main(argv):
    ap = argparse.ArgumentParser(prog="models.py", description=__doc__.split("\n")[1])
    ap.add_argument("outdir", metavar="OUTDIR", help="where the models and manifest.json are written")
    outdir = ap.parse_args(argv[1:]).outdir
    os.makedirs(outdir, exist_ok=True)
    manifest = {"models": [build_valid(outdir, s) for s in SPECS],
                "sharded": [build_valid(outdir, s) for s in SHARDED]}
    sources = {e["name"]: e for e in manifest["models"] + manifest["sharded"]}
    manifest["quantized"] = [build_quantized(outdir, q, sources) for q in QUANTIZED]
    manifest["bad"] = build_bad(outdir)
    manifest["degenerate"] = build_degenerate(outdir)
    manifest["nonfinite"] = build_nonfinite(outdir)
    write_json(os.path.join(outdir, "manifest.json"), manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
