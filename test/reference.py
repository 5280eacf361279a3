#!/usr/bin/python3
"""Float64 numpy reference forward pass for skipless transformers.

This is the independent test oracle for libskipless.  It is written from the
model-format specification only and is meant to be read top to bottom:

  1. safetensors parsing          (read_safetensors)
     quantized weights             (dequantize: compressed-tensors' int-quantized
                                   and pack-quantized layouts, as float64)
  2. model loading + validation   (load_model / Model)
  3. the building blocks          (activations, rms_norm, rope, attention, ffn)
  4. the full causal forward      (Model.forward / logits)
  5. a command line interface     (main)

A model is either a directory holding ``config.json`` and ``model.safetensors``
(or ``model.safetensors.index.json`` and the shards it names), or a single ``.safetensors`` file whose ``__metadata__`` has a ``"config"``
entry: a string holding the same JSON as config.json.

A skipless block has no residual connection and no normalization:

  serial:    x' = FFN(o(attn(x)))
  parallel:  x' = o(attn(x)) + FFN(x)

Any of the q/k/v/o projections may be absent, which means identity.

Usage as a library::

    import reference
    out = reference.logits("path/to/model", [1, 2, 3])   # float64 [n, V]

Usage from the shell::

    /usr/bin/python3 test/reference.py MODEL --tokens 1,2,3 --out FILE.npy
"""

import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np


class ModelError(ValueError):
    """Raised for any malformed model (file format, config or tensor shapes).

    `status` names the libskipless status the defect corresponds to, without
    the ``SKL_ERR_`` prefix (e.g. ``"TRUNCATED"``, ``"SHAPE"``), so tests can
    check that the reference and the library agree on what is wrong.
    """

    def __init__(self, status, message):
        super().__init__(f"[{status}] {message}")
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------
# 1. safetensors
# ---------------------------------------------------------------------------

DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "I32": 4, "I64": 8}
INT_DTYPES = {"I8": "<i1", "I32": "<i4", "I64": "<i8"}   # parts of quantized weights only


def _reject_duplicate_keys(pairs):
    """object_pairs_hook for json.loads that refuses duplicate keys."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise ModelError("DUPLICATE_KEY", f"duplicate JSON key {key!r}")
        result[key] = value
    return result


JSON_MAX_VALUES = 4 << 20     # config.json, the index, tokenizer.json (docs/model-format.md, "Bounds")
HEADER_MAX_VALUES = 1 << 20   # a safetensors header
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def parse_json(text, what, max_values=JSON_MAX_VALUES):
    """Parse JSON text strictly (duplicate keys are an error), refusing more than max_values
    values first: one plus the opening brackets and commas left once the strings are cut out."""
    outside = _JSON_STRING.sub("", text)
    if 1 + outside.count("[") + outside.count("{") + outside.count(",") > max_values:
        raise ModelError("JSON_LIMIT", f"{what}: more than {max_values} JSON values")
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except ModelError as e:
        raise ModelError(e.status, f"{what}: {e.message}") from None
    except ValueError as e:
        raise ModelError("JSON", f"{what}: invalid JSON: {e}") from None


def decode_tensor(raw, dtype, shape):
    """Turn little-endian raw bytes into a float64 array of the given shape.

    F16 is read as numpy float16; BF16 is the upper half of a float32, so the
    uint16 values are shifted left by 16 and reinterpreted as float32.  The
    integer dtypes (the parts of quantized weights) stay integer arrays of their width.
    """
    if dtype in INT_DTYPES:
        return np.frombuffer(raw, dtype=INT_DTYPES[dtype]).astype(INT_DTYPES[dtype][1:]).reshape(shape)
    if dtype == "F32":
        values = np.frombuffer(raw, dtype="<f4")
    elif dtype == "F16":
        values = np.frombuffer(raw, dtype="<f2")
    elif dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        values = bits.view(np.float32)
    else:
        raise ModelError("DTYPE", f"unsupported dtype {dtype!r}")
    return values.astype(np.float64).reshape(shape)


def read_safetensors(path):
    """Read a .safetensors file.

    Returns (tensors, metadata): tensors maps name -> float64 ndarray,
    metadata is the ``__metadata__`` dict (empty if absent).

    The layout is validated: header size, JSON, dtypes, sizes, and that the
    tensors tile the data area exactly (no gap, no overlap, nothing beyond).
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ModelError("TRUNCATED", f"{path}: file too short for the 8-byte header length")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > len(blob) - 8:
        raise ModelError("HEADER_SIZE", f"{path}: header length {header_len} exceeds file size")
    try:
        header_text = blob[8:8 + header_len].decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError("JSON", f"{path}: header is not UTF-8") from None
    header = parse_json(header_text, f"{path} header", HEADER_MAX_VALUES)
    if not isinstance(header, dict):
        raise ModelError("HEADER", f"{path}: header is not a JSON object")
    data = blob[8 + header_len:]

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise ModelError("HEADER", f"{path}: __metadata__ is not an object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise ModelError("METADATA", f"{path}: __metadata__[{key!r}] is not a string")

    ranges = []
    entries = {}
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise ModelError("HEADER", f"{path}: entry {name!r} is not an object")
        for field in ("dtype", "shape", "data_offsets"):
            if field not in entry:
                raise ModelError("HEADER", f"{path}: tensor {name!r} has no {field!r}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not (isinstance(shape, list) and all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise ModelError("HEADER", f"{path}: tensor {name!r}: shape {shape!r} is not a list of ints")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(
                isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
                and offsets[0] <= offsets[1]):
            raise ModelError("HEADER", f"{path}: tensor {name!r}: bad data_offsets {offsets!r}")
        if dtype not in DTYPE_SIZES:
            raise ModelError("DTYPE", f"{path}: tensor {name!r}: unknown dtype {dtype!r}")
        nbytes = DTYPE_SIZES[dtype] * math.prod(shape)
        if offsets[1] - offsets[0] != nbytes:
            raise ModelError("TENSOR_SIZE", f"{path}: tensor {name!r}: data_offsets span "
                             f"{offsets[1] - offsets[0]} bytes, shape*dtype needs {nbytes}")
        ranges.append((offsets[0], offsets[1], name))
        entries[name] = (dtype, shape, offsets)

    # The tensors must tile the data area exactly.  A tensor reaching past the
    # end of the data area means the file was cut short if the sizes add up to
    # more than the data area, and is simply out of range otherwise.
    ranges.sort()
    total = sum(end - begin for begin, end, _ in ranges)
    for begin, end, name in ranges:
        if end > len(data):
            status = "TRUNCATED" if total > len(data) else "OUT_OF_RANGE"
            raise ModelError(status, f"{path}: tensor {name!r} ends at byte {end}, "
                             f"the data area has {len(data)} bytes")
    position = 0
    for begin, end, name in ranges:
        if begin < position:
            raise ModelError("OVERLAP", f"{path}: tensor {name!r} overlaps the previous tensor")
        if begin > position:
            raise ModelError("GAP", f"{path}: gap before tensor {name!r}")
        position = end
    if position != len(data):
        raise ModelError("GAP", f"{path}: {len(data) - position} trailing bytes after the last tensor")

    tensors = {name: decode_tensor(data[o[0]:o[1]], dtype, shape)
               for name, (dtype, shape, o) in entries.items()}
    return tensors, metadata


def file_dtype(a):
    """"I8", "I32", "I64" for the integer arrays decode_tensor returns, else "float"."""
    return {"int8": "I8", "int32": "I32", "int64": "I64"}.get(a.dtype.name, "float")


# ---------------------------------------------------------------------------
# 2. configuration and model loading
# ---------------------------------------------------------------------------

ACTIVATIONS = ("silu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


def _positive_int(cfg, key, default=None):
    value = cfg.get(key, default)
    if value is None:
        raise ModelError("CONFIG", f"config: missing {key!r}")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ModelError("CONFIG", f"config: {key!r} must be a positive integer, got {value!r}")
    return value


def _number(cfg, key, default):
    value = cfg.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ModelError("CONFIG", f"config: {key!r} must be a number, got {value!r}")
    return float(value)


class Config:
    """The parsed configuration, with the spec's defaults filled in."""

    def __init__(self, cfg):
        if not isinstance(cfg, dict):
            raise ModelError("CONFIG", "config: not a JSON object")
        self.d = _positive_int(cfg, "hidden_size")
        self.L = _positive_int(cfg, "num_hidden_layers")
        self.H = _positive_int(cfg, "num_attention_heads")
        self.KV = _positive_int(cfg, "num_key_value_heads", self.H)
        if self.d % self.H and "head_dim" not in cfg:
            raise ModelError("CONFIG", "config: hidden_size not divisible by num_attention_heads "
                             "and no head_dim given")
        self.hd = _positive_int(cfg, "head_dim", self.d // self.H)
        self.f = _positive_int(cfg, "intermediate_size")
        self.V = _positive_int(cfg, "vocab_size")
        self.max_pos = _positive_int(cfg, "max_position_embeddings")
        self.act = cfg.get("hidden_act")
        if self.act not in ACTIVATIONS:
            raise ModelError("CONFIG", f"config: unsupported hidden_act {self.act!r}")
        self.theta = _number(cfg, "rope_theta", 10000.0)
        self.partial = _number(cfg, "partial_rotary_factor", 1.0)
        self.tie = cfg.get("tie_word_embeddings", False)
        if not isinstance(self.tie, bool):
            raise ModelError("CONFIG", "config: tie_word_embeddings must be a boolean")
        self.eps = _number(cfg, "rms_norm_eps", 1e-6)
        self.block_type = cfg.get("block_type", "serial")
        if self.block_type not in ("serial", "parallel"):
            raise ModelError("CONFIG", f"config: unsupported block_type {self.block_type!r}")
        self.position_embedding = cfg.get("position_embedding", "rope")
        if self.position_embedding not in ("rope", "none"):
            raise ModelError("CONFIG", f"config: unsupported position_embedding "
                             f"{self.position_embedding!r}")
        if self.H % self.KV:
            raise ModelError("CONFIG", "config: num_attention_heads not divisible by "
                             "num_key_value_heads")
        if not 0.0 <= self.partial <= 1.0:
            raise ModelError("CONFIG", "config: partial_rotary_factor must be in [0, 1]")
        self.rot = int(self.hd * self.partial)
        if self.rot % 2:
            raise ModelError("CONFIG", f"config: rotary dimension {self.rot} is odd")
        if self.theta <= 0:
            raise ModelError("CONFIG", "config: rope_theta must be positive")


INDEX_NAME = "model.safetensors.index.json"


def read_sharded(index_path):
    """Read a sharded checkpoint: the index (``{"metadata": {"total_size": N},
    "weight_map": {tensor: shard file}}``) and every shard it names, each
    validated like one file.  Every weight_map value must be a plain file name
    in the index's directory; every indexed tensor must be in the shard the
    index names and in no other, and every shard tensor must be indexed.
    total_size is not checked (Hugging Face does not check it either)."""
    folder = os.path.dirname(index_path)
    with open(index_path, "rb") as f:
        try:
            text = f.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError("JSON", f"{index_path}: not UTF-8") from None
    index = parse_json(text, index_path)
    if not isinstance(index, dict):
        raise ModelError("INDEX", f"{index_path}: not a JSON object")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelError("INDEX", f"{index_path}: weight_map missing, empty or not an object")
    metadata = index.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelError("INDEX", f"{index_path}: metadata is not an object")
    total = metadata.get("total_size", 0)
    if isinstance(total, bool) or not isinstance(total, (int, float)) or total < 0:
        raise ModelError("INDEX", f"{index_path}: total_size is not a non-negative number")
    for name, shard in weight_map.items():
        if not isinstance(shard, str):
            raise ModelError("INDEX", f"{index_path}: weight_map[{name!r}] is not a string")
        if not shard or "/" in shard or "\0" in shard or shard in (".", ".."):
            raise ModelError("SHARD_NAME", f"{index_path}: shard {shard!r} is not a plain file name")
    found = {}                                   # tensor -> the shard it is in
    tensors = {}
    for shard in dict.fromkeys(weight_map.values()):
        shard_path = os.path.join(folder, shard)
        if not os.path.isfile(shard_path):
            raise ModelError("SHARD_MISSING", f"{index_path}: shard {shard} missing or not a file")
        part, _ = read_safetensors(shard_path)
        for name, value in part.items():
            if name not in weight_map:
                raise ModelError("SHARD_UNINDEXED", f"{index_path}: {name} of {shard} not indexed")
            if name in found:
                raise ModelError("SHARD_DUPLICATE", f"{index_path}: {name} in {found[name]} and {shard}")
            found[name] = shard
            tensors[name] = value
    for name, shard in weight_map.items():
        if found.get(name) != shard:
            raise ModelError("SHARD_MISMATCH", f"{index_path}: {name} is in {found.get(name)}, "
                             f"the index says {shard}")
    return tensors


def read_model_files(path):
    """Return (config dict, tensors dict) from a model directory (one
    model.safetensors, or the sharded index and its shards), the index file
    itself, or a single file."""
    if path.endswith(".safetensors.index.json") and os.path.isfile(path):
        path = os.path.dirname(path) or "."
    if os.path.isdir(path):
        with open(os.path.join(path, "config.json"), "rb") as f:
            try:
                text = f.read().decode("utf-8")
            except UnicodeDecodeError:
                raise ModelError("JSON", "config.json is not UTF-8") from None
        cfg = parse_json(text, "config.json")
        single = os.path.join(path, "model.safetensors")
        if os.path.exists(single) or not os.path.exists(os.path.join(path, INDEX_NAME)):
            tensors, _ = read_safetensors(single)
        else:
            tensors = read_sharded(os.path.join(path, INDEX_NAME))
    else:
        tensors, metadata = read_safetensors(path)
        if "config" not in metadata:
            raise ModelError("CONFIG", f"{path}: __metadata__ has no 'config' entry")
        if not isinstance(metadata["config"], str):
            raise ModelError("CONFIG", f"{path}: __metadata__ 'config' must be a string")
        cfg = parse_json(metadata["config"], "embedded config")
    dequantize(cfg, tensors)
    return cfg, tensors


# ---------------------------------------------------------------------------
# 1b. quantized weights: compressed-tensors, as vLLM and transformers read them
# ---------------------------------------------------------------------------
#
# config.json "quantization_config": {"quant_method": "compressed-tensors",
#   "format": "int-quantized" | "pack-quantized" | "mixed-precision",
#   "config_groups": {NAME: {"targets": [...], "weights": {"num_bits": 8|4,
#   "type": "int", "symmetric": true, "strategy": "group", "group_size": 32},
#   "format": (mixed-precision only)}}, "ignore": [...]}
# A layer X targeted by a group (its name, "re:" + a regular expression
# matched from the start, or "Linear": every linear layer) and not ignored is
#   int-quantized:  X.weight int8 [out, in]                    w = q * s
#   pack-quantized: X.weight_packed int32 [out, in / 8], element c of a row
#                   in bits 4 (c % 8) .. of word c / 8, stored as q + 8;
#                   X.weight_shape int64 [out, in]             w = q * s
# with X.weight_scale [out, in / 32] (F16, BF16 or F32, held as F16: s is the
# scale rounded to F16) for the 32 inputs c of a row with c // 32 = g.

LINEAR_NAMES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
QUANT_PARTS = ("weight_scale", "weight_packed", "weight_shape")


def _qfail(status, message):
    raise ModelError(status, "quantization_config: " + message)


def _scheme_type(gname, g, top_format):
    """The storage of a config group's layers: "q8" (int8) or "q4" (packed nibbles)."""
    if not isinstance(g, dict):
        _qfail("QUANT_CONFIG", f"config_groups.{gname} is not an object")
    fmt = g.get("format")
    if fmt is None:
        if top_format == "mixed-precision":
            _qfail("QUANT_CONFIG", f"config_groups.{gname}.format is missing")
        fmt = top_format
    elif fmt not in ("int-quantized", "pack-quantized") or \
            (top_format != "mixed-precision" and fmt != top_format):
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.format {fmt!r}")
    for key in ("input_activations", "output_activations"):
        if g.get(key) is not None:
            _qfail("QUANT_CONFIG", f"config_groups.{gname}.{key}: activation quantization")
    w = g.get("weights")
    if not isinstance(w, dict):
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.weights is not an object")
    bits = w.get("num_bits")
    if isinstance(bits, bool) or bits not in (4, 8):
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.weights.num_bits {bits!r}")
    if w.get("type") not in (None, "int"):
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.weights.type {w.get('type')!r}")
    if w.get("symmetric") not in (None, True):
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.weights: asymmetric")
    if w.get("dynamic") not in (None, False):
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.weights: dynamic")
    if w.get("actorder") not in (None, False, "weight", "static"):
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.weights.actorder {w.get('actorder')!r}")
    if w.get("block_structure") is not None:
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.weights: block quantization")
    gs, strategy = w.get("group_size"), w.get("strategy")
    if gs is not None and (isinstance(gs, bool) or not isinstance(gs, int)):
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.weights.group_size {gs!r}")
    if strategy is not None and not isinstance(strategy, str):
        _qfail("QUANT_CONFIG", f"config_groups.{gname}.weights.strategy {strategy!r}")
    if strategy is None:   # compressed-tensors infers it from group_size
        strategy = "group" if gs and gs > 0 else "channel" if gs == -1 else "tensor"
    if strategy != "group" or gs != 32:
        _qfail("QUANT_GROUP", f"config_groups.{gname}: strategy {strategy!r}, group_size {gs!r}")
    if fmt == "int-quantized":
        return "q8"
    if bits == 8:
        _qfail("UNSUPPORTED", f"config_groups.{gname}: 8-bit pack-quantized")
    return "q4"


def _target(t, classes):
    """A target or ignore entry as (kind, value): name, re, or the class Linear."""
    if not isinstance(t, str) or not t:
        _qfail("QUANT_CONFIG", f"target {t!r} is not a non-empty string")
    if t.startswith("re:"):
        try:
            return ("re", re.compile(t[3:]))
        except re.error as e:
            _qfail("QUANT_CONFIG", f"{t!r}: {e}")
    if classes and t == "Linear":
        return ("class", None)
    if classes and "." not in t and t[0].isupper():
        _qfail("QUANT_CONFIG", f"target class {t!r}")
    return ("name", t)


def _targets(lst, classes, empty_ok):
    if lst is None and empty_ok:
        return []
    if not isinstance(lst, list) or (not lst and not empty_ok):
        _qfail("QUANT_CONFIG", f"targets/ignore {lst!r} is not a list of strings")
    return [_target(t, classes) for t in lst]


def quant_scheme(cfg):
    """A function name, linear -> "q8", "q4" or None, from config.json's quantization_config."""
    qc = cfg.get("quantization_config")
    if qc is None:
        return lambda name, linear: None
    if not isinstance(qc, dict):
        _qfail("QUANT_CONFIG", "not an object")
    if qc.get("quant_method") != "compressed-tensors":
        _qfail("QUANT_CONFIG", f"quant_method {qc.get('quant_method')!r}")
    fmt = qc.get("format")
    if fmt not in ("int-quantized", "pack-quantized", "mixed-precision"):
        _qfail("QUANT_CONFIG", f"format {fmt!r}")
    if qc.get("quantization_status") not in (None, "compressed"):
        _qfail("QUANT_CONFIG", f"quantization_status {qc.get('quantization_status')!r}")
    if qc.get("kv_cache_scheme") is not None:
        _qfail("QUANT_CONFIG", "kv_cache_scheme")
    for key in ("sparsity_config", "transform_config"):
        if qc.get(key) not in (None, {}):
            _qfail("QUANT_CONFIG", key)
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        _qfail("QUANT_CONFIG", "config_groups missing or empty")
    schemes = []
    for gname, g in groups.items():
        kind = _scheme_type(gname, g, fmt)
        schemes.append((kind, _targets(g.get("targets"), True, False)))
    ignore = _targets(qc.get("ignore"), False, True)

    def matches(t, name, linear):      # 3 exact name, 2 expression, 1 class, 0 none
        kind, v = t
        if kind == "name":
            return 3 if v == name else 0
        if kind == "class":
            return 1 if linear else 0
        return 2 if v.match(name) else 0

    def storage(name, linear):
        if any(matches(t, name, linear) for t in ignore):
            return None
        best, kind = 0, None
        for k, targets in schemes:
            for t in targets:
                if matches(t, name, linear) > best:
                    best, kind = matches(t, name, linear), k
        return kind
    return storage


def _expected_linear_shapes(c):
    """{module name: (out, in)} of every linear layer the config allows."""
    qd, kvd = c.H * c.hd, c.KV * c.hd
    shapes = {"lm_head": (c.V, c.d)}
    dims = {"q_proj": (qd, c.d), "k_proj": (kvd, c.d), "v_proj": (kvd, c.d), "o_proj": (c.d, qd),
            "gate_proj": (c.f, c.d), "up_proj": (c.f, c.d), "down_proj": (c.d, c.f)}
    for i in range(c.L):
        for n in LINEAR_NAMES:
            shapes[f"model.layers.{i}.{n}"] = dims[n.split(".")[1]]
    return shapes


def _f16(values):
    """float64 values as held in F16 (nearest even, through float32)."""
    with np.errstate(over="ignore", invalid="ignore"):    # out of range: inf, refused by the caller
        return values.astype(np.float32).astype(np.float16).astype(np.float64)


def dequantize(cfg, tensors):
    """Check every quantized layer and replace its parts by its float64 X.weight
    (in place); everything else is left for Model to check."""
    c = Config(cfg)
    storage = quant_scheme(cfg)
    if storage("model.embed_tokens", False):
        _qfail("QUANT_CONFIG", "the embedding is never quantized")
    shapes = _expected_linear_shapes(c)
    for name in list(tensors):
        dtype = file_dtype(tensors[name])
        module, _, part = name.rpartition(".")
        if module in ("model.embed_tokens", "model.norm") and part in QUANT_PARTS:
            raise ModelError("QUANT_SCALE" if part == "weight_scale" else "QUANT_WEIGHT",
                             f"{name}: {module} is never quantized")
        if module not in shapes or (module == "lm_head" and c.tie and part != "bias"):
            if dtype in INT_DTYPES and part == "weight":
                raise ModelError("DTYPE", f"{name}: integer dtype {dtype}")
            continue          # Model decides (unexpected, bias, ...)
        kind = storage(module, True)
        if kind is None:
            if part == "weight_scale":
                raise ModelError("QUANT_SCALE", f"{name}: a scale for an unquantized layer")
            if part in QUANT_PARTS:
                raise ModelError("QUANT_WEIGHT", f"{name}: a part of an unquantized layer")
            if dtype in INT_DTYPES and part in ("weight", "bias"):
                raise ModelError("DTYPE", f"{name}: integer dtype {dtype}")
            continue
        if part == "bias":
            if dtype in INT_DTYPES:
                raise ModelError("DTYPE", f"{name}: integer dtype {dtype}")
            continue
        if part not in QUANT_PARTS and part != "weight":
            continue
        out, inp = shapes[module]
        if inp % 32:
            raise ModelError("QUANT_GROUP", f"{name}: {inp} inputs, not a multiple of 32")
        a = tensors[name]
        want = {"weight_scale": (None, [out, inp // 32]), "weight_shape": ("I64", [2]),
                "weight": ("I8", [out, inp]), "weight_packed": ("I32", [out, inp // 8])}[part]
        status = "QUANT_SCALE" if part == "weight_scale" else "QUANT_WEIGHT"
        if (part == "weight" and kind == "q4") or (part in ("weight_packed", "weight_shape") and kind == "q8"):
            raise ModelError("QUANT_WEIGHT", f"{name}: not a part of a {kind} layer")
        if (want[0] is None and dtype in INT_DTYPES) or (want[0] is not None and dtype != want[0]) \
                or list(a.shape) != want[1]:
            raise ModelError(status, f"{name}: {dtype} {list(a.shape)}, expected {want[0] or 'float'} {want[1]}")
    for module, (out, inp) in shapes.items():
        kind = storage(module, True)
        if kind is None or (module == "lm_head" and c.tie):
            continue
        w = tensors.get(module + (".weight_packed" if kind == "q4" else ".weight"))
        scale = tensors.get(module + ".weight_scale")
        wshape = tensors.get(module + ".weight_shape")
        if w is not None and scale is None:
            raise ModelError("QUANT_SCALE", f"missing {module}.weight_scale")
        if w is not None and kind == "q4" and wshape is None:
            raise ModelError("QUANT_WEIGHT", f"missing {module}.weight_shape")
        if w is None and scale is not None:
            raise ModelError("QUANT_SCALE", f"{module}.weight_scale without its weight")
        if w is None and wshape is not None:
            raise ModelError("QUANT_WEIGHT", f"{module}.weight_shape without its weight")
    for module, (out, inp) in shapes.items():
        kind = storage(module, True)
        scale = tensors.get(module + ".weight_scale")
        if kind is None or scale is None:
            continue
        if kind == "q4":
            packed = tensors.pop(module + ".weight_packed").astype(np.uint32)   # two's complement words
            q = np.empty((out, inp), dtype=np.int64)
            for k in range(8):
                q[:, k::8] = ((packed >> np.uint32(4 * k)) & np.uint32(15)).astype(np.int64) - 8
        else:
            q = tensors.pop(module + ".weight").astype(np.int64)
        s = _f16(scale)
        if not np.all(np.isfinite(scale)) or not np.all(np.isfinite(s)) or np.any((scale != 0) & (s == 0)):
            raise ModelError("QUANT_SCALE", f"{module}.weight_scale: a value not finite or not an F16")
        if np.any((s == 0) & np.any(q.reshape(out, inp // 32, 32) != 0, axis=2)):
            raise ModelError("QUANT_SCALE", f"{module}.weight_scale: 0 for a group of nonzero weights")
        if kind == "q4":
            wshape = tensors.pop(module + ".weight_shape")
            if list(wshape) != [out, inp]:
                raise ModelError("QUANT_WEIGHT", f"{module}.weight_shape {list(wshape)}, expected {[out, inp]}")
        del tensors[module + ".weight_scale"]
        tensors[module + ".weight"] = q.astype(np.float64) * np.repeat(s, 32, axis=1)


class Layer:
    """Weights of one block; absent projections are None (identity)."""

    def __init__(self):
        self.q = self.k = self.v = self.o = None      # (W, b) or None
        self.gate = None                              # (W, b) or None
        self.up = self.down = None                    # (W, b)


class Model:
    """A loaded, validated model: config plus float64 weights."""

    def __init__(self, cfg_dict, tensors):
        self.config = c = Config(cfg_dict)
        remaining = dict(tensors)

        def take(name, shape, required):
            """Pop a weight (and its optional bias) and check its shape."""
            if name + ".weight" not in remaining:
                if required:
                    raise ModelError("MISSING_TENSOR", f"missing tensor {name}.weight")
                if name + ".bias" in remaining:
                    raise ModelError("UNEXPECTED_TENSOR", f"{name}.bias present without {name}.weight")
                return None
            w = remaining.pop(name + ".weight")
            if list(w.shape) != list(shape):
                raise ModelError("SHAPE", f"{name}.weight has shape {list(w.shape)}, "
                                 f"expected {list(shape)}")
            b = remaining.pop(name + ".bias", None)
            if b is not None and list(b.shape) != [shape[0]]:
                raise ModelError("SHAPE", f"{name}.bias has shape {list(b.shape)}, "
                                 f"expected [{shape[0]}]")
            return (w, b)

        def require_identity(proj, name, out_dim):
            if proj is None and out_dim != c.d:
                raise ModelError("MISSING_TENSOR", f"{name} is absent (identity) but its output size "
                                 f"{out_dim} != hidden_size {c.d}")

        self.embed = take("model.embed_tokens", [c.V, c.d], True)[0]
        if "model.embed_tokens.bias" in tensors:
            raise ModelError("UNEXPECTED_TENSOR", "unexpected tensor model.embed_tokens.bias")
        self.layers = []
        qdim, kvdim = c.H * c.hd, c.KV * c.hd
        for i in range(c.L):
            p = f"model.layers.{i}."
            layer = Layer()
            layer.q = take(p + "self_attn.q_proj", [qdim, c.d], False)
            layer.k = take(p + "self_attn.k_proj", [kvdim, c.d], False)
            layer.v = take(p + "self_attn.v_proj", [kvdim, c.d], False)
            layer.o = take(p + "self_attn.o_proj", [c.d, qdim], False)
            require_identity(layer.q, p + "self_attn.q_proj", qdim)
            require_identity(layer.k, p + "self_attn.k_proj", kvdim)
            require_identity(layer.v, p + "self_attn.v_proj", kvdim)
            require_identity(layer.o, p + "self_attn.o_proj (input H*head_dim)", qdim)
            layer.gate = take(p + "mlp.gate_proj", [c.f, c.d], False)
            layer.up = take(p + "mlp.up_proj", [c.f, c.d], True)
            layer.down = take(p + "mlp.down_proj", [c.d, c.f], True)
            self.layers.append(layer)

        self.norm = None
        if "model.norm.weight" in remaining:
            self.norm = remaining.pop("model.norm.weight")
            if list(self.norm.shape) != [c.d]:
                raise ModelError("SHAPE", f"model.norm.weight has shape {list(self.norm.shape)}, "
                                 f"expected [{c.d}]")

        if c.tie:
            if "lm_head.weight" in remaining:
                raise ModelError("UNEXPECTED_TENSOR", "lm_head.weight present although tie_word_embeddings")
            self.head_w = self.embed
            self.head_b = remaining.pop("lm_head.bias", None)
            if self.head_b is not None and list(self.head_b.shape) != [c.V]:
                raise ModelError("SHAPE", f"lm_head.bias has shape {list(self.head_b.shape)}, "
                                 f"expected [{c.V}]")
        else:
            self.head_w, self.head_b = take("lm_head", [c.V, c.d], True)

        if remaining:
            raise ModelError("UNEXPECTED_TENSOR", f"unexpected tensor(s): {sorted(remaining)}")

    # -- forward -----------------------------------------------------------

    def embed_tokens(self, tokens):
        """x = E[t], shape [n, d]."""
        tokens = list(tokens)
        if not tokens:
            raise ValueError("empty token list")
        for t in tokens:
            if not 0 <= t < self.config.V:
                raise ValueError(f"token {t} out of vocabulary [0, {self.config.V})")
        if len(tokens) > self.config.max_pos:
            raise ValueError(f"{len(tokens)} tokens exceed max_position_embeddings "
                             f"{self.config.max_pos}")
        return self.embed[np.asarray(tokens, dtype=np.int64)].copy()

    def block(self, i, x):
        """Apply block i to hidden states x [n, d]."""
        layer = self.layers[i]
        a = linear(layer.o, attention(self.config, layer, x))
        if self.config.block_type == "serial":
            return ffn(self.config.act, layer, a)
        return a + ffn(self.config.act, layer, x)

    def head(self, x):
        """Optional final RMSNorm, then the LM head: logits [n, V]."""
        if self.norm is not None:
            x = rms_norm(x, self.norm, self.config.eps)
        out = x @ self.head_w.T
        if self.head_b is not None:
            out = out + self.head_b
        return out

    def forward(self, tokens):
        """Full causal forward: float64 logits [n, V]."""
        x = self.embed_tokens(tokens)
        for i in range(self.config.L):
            x = self.block(i, x)
        return self.head(x)


def load_model(path):
    """Load and validate a model from a directory or a single file."""
    cfg, tensors = read_model_files(path)
    return Model(cfg, tensors)


# ---------------------------------------------------------------------------
# 3. building blocks
# ---------------------------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)


def activation(name, x):
    """Elementwise activation (float64)."""
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    if name == "gelu":      # exact erf form
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))
    if name in ("gelu_new", "gelu_pytorch_tanh"):   # tanh approximation
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "relu":
        return np.maximum(x, 0.0)
    raise ValueError(f"unknown activation {name!r}")


def linear(wb, x):
    """x @ W.T + b for x [n, in]; identity when the layer is absent (None)."""
    if wb is None:
        return x
    w, b = wb
    y = x @ w.T
    return y if b is None else y + b


def rms_norm(x, w, eps):
    """x / sqrt(mean(x^2) + eps) * w, over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, rot, theta):
    """Hugging Face rotate-half RoPE on the first `rot` dims of each head.

    x has shape [n, heads, hd]; position of row i is i.
    """
    if rot == 0:
        return x
    n = x.shape[0]
    half = rot // 2
    inv_freq = 1.0 / theta ** (np.arange(half, dtype=np.float64) * 2.0 / rot)
    angle = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]   # [n, half]
    cos = np.concatenate([np.cos(angle), np.cos(angle)], axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(angle), np.sin(angle)], axis=-1)[:, None, :]
    xr = x[..., :rot]
    rotated = np.concatenate([-xr[..., half:], xr[..., :half]], axis=-1)
    out = x.copy()
    out[..., :rot] = xr * cos + rotated * sin
    return out


def attention(c, layer, x):
    """Causal multi-head attention (MHA/GQA/MQA), output [n, H*hd] before o_proj."""
    n = x.shape[0]
    q = linear(layer.q, x).reshape(n, c.H, c.hd)
    k = linear(layer.k, x).reshape(n, c.KV, c.hd)
    v = linear(layer.v, x).reshape(n, c.KV, c.hd)
    if c.position_embedding == "rope":
        q = rope(q, c.rot, c.theta)
        k = rope(k, c.rot, c.theta)
    group = c.H // c.KV
    causal = np.tril(np.ones((n, n), dtype=bool))
    out = np.empty((n, c.H, c.hd))
    for h in range(c.H):
        kv = h // group
        scores = (q[:, h, :] @ k[:, kv, :].T) / math.sqrt(c.hd)   # [n query, n key]
        scores = np.where(causal, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        out[:, h, :] = p @ v[:, kv, :]
    return out.reshape(n, c.H * c.hd)


def ffn(act, layer, x):
    """down(act(gate x) * up x) for a GLU FFN, else down(act(up x))."""
    if layer.gate is not None:
        hidden = activation(act, linear(layer.gate, x)) * linear(layer.up, x)
    else:
        hidden = activation(act, linear(layer.up, x))
    return linear(layer.down, hidden)


# ---------------------------------------------------------------------------
# 4. public entry point and CLI
# ---------------------------------------------------------------------------

def logits(path, tokens):
    """Float64 logits [len(tokens), vocab_size] of the model at `path`."""
    return load_model(path).forward(tokens)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="model directory or single .safetensors file")
    parser.add_argument("--tokens", required=True, help="comma-separated token ids")
    parser.add_argument("--out", required=True, help="output .npy file (float64 [n, V])")
    args = parser.parse_args(argv)
    try:
        tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    except ValueError:
        parser.error("--tokens must be comma-separated integers")
    try:
        result = logits(args.model, tokens)
    except (ModelError, ValueError, OSError) as e:
        print(f"reference.py: error: {e}", file=sys.stderr)
        return 1
    np.save(args.out, np.ascontiguousarray(result, dtype=np.float64))
    return 0


if __name__ == "__main__":
    sys.exit(main())
