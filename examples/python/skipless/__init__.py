"""Python binding of libskipless (ctypes, standard library only).

    import skipless
    with skipless.Model.load("examples/models/kjv-serial") as model:
        report = model.merge()                 # MergeReport; report.model is the merged model
        with skipless.Context(report.model, n_ctx=256) as ctx:
            for piece in ctx.generate("In the beginning", max_tokens=32, seed=7):
                print(piece, end="")           # text pieces (token ids without a tokenizer)

Logits come back as numpy arrays when numpy is importable, else as array.array('f').
Every failed call raises a subclass of SkiplessError carrying the status code and the
library's message.  See docs/bindings.md.
"""

import array
import ctypes
import dataclasses
import os
import weakref
from ctypes import byref, c_int, c_int32, c_void_p

from . import _ffi, errors
from ._ffi import load_library
from .errors import SkiplessError, error, error_for

try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None

# The header version the binding mirrors (pyproject.toml repeats it; tests/test_header.py
# checks both against include/skipless.h).  The library's own is version().
__version__ = "%d.%d.%d" % (_ffi.VERSION_MAJOR, _ffi.VERSION_MINOR, _ffi.VERSION_PATCH)

ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu")
BLOCK_TYPES = ("serial", "parallel")
STOP_REASONS = ("max_tokens", "stop_token", "callback", "context_full", "error")
SAVE_FORMATS = {"auto": 0, "dir": 1, "file": 2}
DTYPES = ("f32", "f16", "bf16", "same", "q8_0", "q4_0")  # skl_dtype; "same" only for merge()


def _check(rc):
    """Raise the exception for a failed status (the message is read at once:
    skl_last_error is per thread and overwritten by the next failure)."""
    if rc < 0:
        lib = _ffi.lib()
        msg = lib.skl_last_error().decode("utf-8", "replace") or lib.skl_strerror(rc).decode()
        raise error_for(rc, msg)
    return rc


def __getattr__(name):
    """The exception classes (InvalidArgError, ...), STATUS_TABLE and BY_CODE come from
    the library's status list, built on first use (skipless.errors)."""
    return errors.__getattr__(name)


def __dir__():
    return sorted(set(globals()) | {"STATUS_TABLE", "BY_CODE"} | set(errors.class_names()))


def _filled(cls, fn, *args):
    """An output struct filled by fn(*args, &out, sizeof out): the library writes only
    the bytes this binding declares."""
    out = cls()
    _check(fn(*args, byref(out), ctypes.sizeof(out)))
    return out


def _path(p):
    return os.fsencode(p)


def version():
    """Version string of the loaded library, e.g. "1.0.0" (__version__ is the binding's)."""
    return _ffi.lib().skl_version().decode()


def strerror(code):
    return _ffi.lib().skl_strerror(code).decode()


def status_name(code):
    """Enumerator name of a status code ("SKL_ERR_IO"), or None if the library has none."""
    name = _ffi.lib().skl_status_name(code)
    return name.decode() if name is not None else None


def cpu_kernels():
    """The kernel variant this CPU runs: "avx512", "avx2" or "generic"."""
    return _ffi.lib().skl_cpu_kernels().decode()


def _removal_name(r):
    name = _ffi.lib().skl_removal_name(r)
    return name.decode() if name else str(r)


def _removal_parse(name):
    out = c_int()
    _check(_ffi.lib().skl_removal_parse(name.encode(), byref(out)))
    return out.value


def _tokens(tokens):
    ids = list(tokens)
    return (c_int32 * len(ids))(*ids), len(ids)


# --------------------------------------------------------------- dataclasses

@dataclasses.dataclass(frozen=True)
class Config:
    """skl_hparams of a loaded model (Hugging Face names)."""
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    rotary_dim: int
    hidden_act: str
    block_type: str
    rope_theta: float
    partial_rotary_factor: float
    rms_norm_eps: float
    use_rope: bool
    tie_word_embeddings: bool
    glu: bool
    final_norm: bool


@dataclasses.dataclass(frozen=True)
class WeightCounts:
    embed: int
    q: int
    k: int
    v: int
    o: int
    gate: int
    up: int
    down: int
    head: int
    bias: int
    norm: int
    linear_total: int


@dataclasses.dataclass(frozen=True)
class MergeLayer:
    layer: int
    removed_q: bool
    removed_k: bool
    removed_v: bool
    removed_o: bool
    weights_before: int
    weights_after: int
    condition: float
    residual: float


@dataclasses.dataclass
class MergeReport:
    """skl_merge_report; ``model`` is the merged model (the source is unchanged)."""
    removal: str
    layers: list
    weights_before: int
    weights_after: int
    max_condition: float
    max_residual: float
    # float (NaN: inconclusive, the source's own probe logits all zero or not finite), None: not run
    verify_error: object
    n_probe_tokens: int
    seconds: float
    model: "Model" = dataclasses.field(repr=False, compare=False, default=None)


@dataclasses.dataclass(frozen=True)
class PlanRow:
    removal: str
    applicable: bool
    lossless: bool
    total: int
    removed: int
    after: int
    saving_percent: float
    speedup_bound: float
    note: str


@dataclasses.dataclass(frozen=True)
class Plan:
    block_type: str
    hidden_size: int
    kv_dim: int
    intermediate_size: int
    num_hidden_layers: int
    vocab_size: int
    glu: bool
    final_norm: bool
    total: int
    rows: list


def _struct_dict(s, cls):
    return {f.name: getattr(s, f.name) for f in dataclasses.fields(cls) if hasattr(s, f.name)}


def _plan(fn, *args):
    """Call skl_plan_config / skl_model_plan, copy the plan (rows through
    skl_plan_row_at) and free it."""
    lib, out = _ffi.lib(), ctypes.POINTER(_ffi.Plan)()
    _check(fn(*args, byref(out)))
    try:
        p = out.contents
        rows = []
        for i in range(p.n_rows):
            r = lib.skl_plan_row_at(out, i).contents
            rows.append(PlanRow(**dict(_struct_dict(r, PlanRow), removal=_removal_name(r.removal),
                                       note=r.note.decode("utf-8", "replace"))))
        return Plan(**dict(_struct_dict(p, Plan), block_type=BLOCK_TYPES[p.block_type], rows=rows))
    finally:
        lib.skl_plan_free(out)


def plan_config(config_path):
    """Weight accounting of every removal from a config file alone (skl_plan_config)."""
    return _plan(_ffi.lib().skl_plan_config, _path(config_path))


@dataclasses.dataclass(frozen=True)
class BlasInfo:
    """skl_blas_info: the BLAS in use and what libskipless's OpenBLAS core check did."""
    openblas: bool        # the BLAS is a dynamically linked OpenBLAS
    user_coretype: bool   # OPENBLAS_CORETYPE was set: core left as chosen
    core_changed: bool    # libskipless re-initialised OpenBLAS with `core`
    auto_core: bool       # the check was enabled (blas_set_auto_core)
    detected_core: str    # core OpenBLAS chose itself ("" if not OpenBLAS)
    core: str             # core in use after the check ("" if not OpenBLAS)
    cpu_isa: str          # best vector ISA of the CPU: "AVX-512", "AVX2", "AVX", "SSE"


def blas_info():
    """Describe the BLAS in use (skl_blas_get_info).  The first call of a process (or the
    first Model.load) runs the OpenBLAS core check, which may re-initialise OpenBLAS: no
    other thread may be in a BLAS call meanwhile."""
    b = _filled(_ffi.BlasInfo, _ffi.lib().skl_blas_get_info)
    text = {f: (getattr(b, f) or b"").decode("utf-8", "replace")
            for f in ("detected_core", "core", "cpu_isa")}
    return BlasInfo(**dict(_struct_dict(b, BlasInfo), **text))


def blas_set_auto_core(enable):
    """enable=False: never touch OpenBLAS's core (skl_blas_set_auto_core).  Only before
    the first Model.load or blas_info of the process; later it raises InvalidArgError."""
    _check(_ffi.lib().skl_blas_set_auto_core(bool(enable)))


# --------------------------------------------------------------------- model

class _Owned:
    """A C handle freed exactly once by close(), a ``with`` block or the garbage collector."""

    _free = None   # name of the skl_*_free function
    _what = None   # "model", "context", "sampler" (for the closed-handle error)
    _handle = None

    def _h(self):
        if not self._handle:
            raise ValueError(f"the {self._what} is closed")
        return self._handle

    def _before_free(self):
        pass

    def close(self):
        """Free the C object (idempotent)."""
        if self._handle:
            self._before_free()
            getattr(self._lib, self._free)(self._handle)
            self._handle = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

def _merge_params(remove, verify, n_probe_tokens, max_condition, dtype):
    if dtype not in DTYPES:
        raise error("SKL_ERR_INVALID_ARG",
                    f"merge dtype {dtype!r} is not one of {', '.join(map(repr, DTYPES))}")
    mp = _ffi.init(_ffi.MergeParams)
    mp.remove = _removal_parse(remove)
    mp.dtype = DTYPES.index(dtype)
    mp.verify = bool(verify)
    if n_probe_tokens is not None:
        mp.n_probe_tokens = n_probe_tokens
    if max_condition is not None:
        mp.max_condition = max_condition
    return mp


def _merge_report(rep, model):
    """A MergeReport from a skl_merge_report (freed here)."""
    lib = _ffi.lib()
    try:
        r = rep.contents
        layers = [MergeLayer(**_struct_dict(lib.skl_merge_report_layer(rep, i).contents, MergeLayer))
                  for i in range(r.n_layers)]
        return MergeReport(**dict(
            _struct_dict(r, MergeReport), removal=_removal_name(r.removal), layers=layers,
            verify_error=None if r.verify_error < 0 else r.verify_error, model=model))
    finally:
        lib.skl_merge_report_free(rep)


def _save_params(format, max_shard_size):
    sp = _ffi.init(_ffi.SaveParams)
    sp.format = SAVE_FORMATS[format]
    if max_shard_size is not None:
        if isinstance(max_shard_size, bool) or not isinstance(max_shard_size, int) or max_shard_size <= 0:
            raise ValueError(f"max_shard_size must be a positive number of bytes, got {max_shard_size!r}")
        sp.max_shard_size = max_shard_size
    return sp


class Model(_Owned):
    """An immutable skl_model; safe to share between threads.  Free it with
    close() or a ``with`` block; closing it first closes its contexts."""

    _free, _what = "skl_model_free", "model"

    def __init__(self, handle, path):
        self._handle = handle
        self.path = path
        self._children = weakref.WeakSet()  # contexts, detokenizers
        self._lib = _ffi.lib()  # kept so __del__ works during interpreter shutdown

    @classmethod
    def load(cls, path, library=None):
        """Load a model directory or .safetensors file (library: optional path
        of libskipless to load first)."""
        lib = _ffi.load_library(library) if library else _ffi.lib()
        out = c_void_p()
        _check(lib.skl_model_load(_path(path), None, byref(out)))
        return cls(out, os.fspath(path))

    def _before_free(self):
        for child in list(self._children):  # contexts and decoders go before their model
            child.close()

    def __repr__(self):
        return f"<skipless.Model {self.path!r}{'' if self._handle else ' closed'}>"

    @property
    def config(self):
        hp = _filled(_ffi.Hparams, _ffi.lib().skl_model_hparams, self._h())
        return Config(**dict(_struct_dict(hp, Config), hidden_act=ACTIVATIONS[hp.hidden_act],
                             block_type=BLOCK_TYPES[hp.block_type]))

    @property
    def weight_counts(self):
        wc = _filled(_ffi.WeightCounts, _ffi.lib().skl_model_weight_counts, self._h())
        return WeightCounts(**_struct_dict(wc, WeightCounts))

    def has_proj(self, layer, which):
        """Whether q_proj/k_proj/v_proj/o_proj ('q', 'k', 'v', 'o') of a layer is present."""
        return bool(_check(_ffi.lib().skl_model_has_proj(self._h(), layer, which.encode())))

    def plan(self):
        """Weight accounting of every removal from the model's shapes (skl_model_plan)."""
        return _plan(_ffi.lib().skl_model_plan, self._h())

    @property
    def decode_bytes(self):
        """Bytes of weights one decoded token reads (skl_model_decode_bytes): every
        linear layer and the LM head in their stored dtypes, plus one embedding row."""
        return _ffi.lib().skl_model_decode_bytes(self._h())

    @property
    def weight_bytes(self):
        """Bytes of all the weights the model holds (skl_model_weight_bytes), in their
        stored dtypes, each tensor once (a tied LM head is the embedding)."""
        return _ffi.lib().skl_model_weight_bytes(self._h())

    def kv_bytes(self, n_ctx=0):
        """Bytes of the KV cache a context of n_ctx positions allocates (skl_model_kv_bytes;
        0: max_position_embeddings).  ValueError when n_ctx is out of range."""
        n = _ffi.lib().skl_model_kv_bytes(self._h(), n_ctx)
        if n == 0:
            raise ValueError(f"n_ctx {n_ctx} out of range [0, {self.config.max_position_embeddings}]")
        return n

    @property
    def decode_regions(self):
        """Where those bytes are (skl_model_decode_regions): [(address, size)], one per
        tensor a decode step reads, in evaluation order, then one embedding row.  The
        memory belongs to the model: read it (while the model is open), never write it."""
        lib, n = _ffi.lib(), ctypes.c_size_t()
        rc = lib.skl_model_decode_regions(self._h(), None, None, 0, byref(n))
        if rc != errors.BufferTooSmallError.code:
            _check(rc)
        bases, sizes = (c_void_p * n.value)(), (ctypes.c_uint64 * n.value)()
        _check(lib.skl_model_decode_regions(self._h(), bases, sizes, n.value, byref(n)))
        return [(bases[i] or 0, sizes[i]) for i in range(n.value)]

    @property
    def weight_dtype(self):
        """Storage dtype of the linear layers and lm_head (skl_model_weight_dtype):
        "F32", "F16", "BF16", "Q8_0", "Q4_0", or "mixed" (a merge stored its new tensors
        in another dtype, or some layers were left unquantized)."""
        return _ffi.lib().skl_model_weight_dtype(self._h()).decode()

    def merge(self, remove="auto", verify=True, n_probe_tokens=None, max_condition=None,
              dtype="f32"):
        """Remove weights exactly (skl_model_merge).  Returns a MergeReport whose
        ``model`` is the new merged Model; this model is left unchanged.  ``dtype``
        is the storage of the changed tensors: "f32", "f16", "bf16" or "same" (each
        like the tensor it replaces); the merge itself runs in float64."""
        mp = _merge_params(remove, verify, n_probe_tokens, max_condition, dtype)
        out, rep = c_void_p(), ctypes.POINTER(_ffi.MergeReport)()
        _check(_ffi.lib().skl_model_merge(self._h(), byref(mp), byref(out), byref(rep)))
        return _merge_report(rep, Model(out, f"{self.path} merged"))

    def merge_to(self, path, remove="auto", verify=True, n_probe_tokens=None, max_condition=None,
                 dtype="f32", format="auto", max_shard_size=None):
        """The streaming merge (skl_model_merge_to, since 1.1): merge and save at
        ``path`` in bounded memory, each merged tensor written as soon as it is final;
        the files are those ``merge(...).model.save(path, format, max_shard_size)``
        writes.  Returns the MergeReport (``model`` None; ``verify`` runs the written
        model against this one).  A failure leaves an existing model at path untouched."""
        mp = _merge_params(remove, verify, n_probe_tokens, max_condition, dtype)
        sp = _save_params(format, max_shard_size)
        rep = ctypes.POINTER(_ffi.MergeReport)()
        _check(_ffi.lib().skl_model_merge_to(self._h(), _path(path), byref(mp), byref(sp), byref(rep)))
        return _merge_report(rep, None)

    def quantize_to(self, path, dtype="q8_0", keep=(), format="auto", max_shard_size=None):
        """Quantize the linear layers to ``dtype`` ("q8_0" or "q4_0") and save at ``path``
        (skl_model_quantize_to, since 1.2), streaming; ``keep``: layer names left as they
        are ("lm_head", "down_proj", "model.layers.3.mlp.down_proj").  A failure leaves an
        existing model at path untouched."""
        if dtype not in ("q8_0", "q4_0"):
            raise error("SKL_ERR_INVALID_ARG", f"quantize dtype {dtype!r} is not 'q8_0' or 'q4_0'")
        qp = _ffi.init(_ffi.QuantizeParams)
        qp.dtype = DTYPES.index(dtype)
        names = [k.encode() for k in keep]
        arr = (ctypes.c_char_p * max(len(names), 1))(*names)
        qp.keep = arr if names else None
        qp.n_keep = len(names)
        sp = _save_params(format, max_shard_size)
        _check(_ffi.lib().skl_model_quantize_to(self._h(), _path(path), byref(qp), byref(sp)))

    def dtype_weights(self, dtype):
        """The linear layers' weights stored in ``dtype`` (a DTYPES name), skl_model_dtype_weights."""
        return _ffi.lib().skl_model_dtype_weights(self._h(), DTYPES.index(dtype))

    @property
    def has_tokenizer(self):
        """Whether the model carries a usable (present and supported) tokenizer."""
        return bool(_ffi.lib().skl_model_has_tokenizer(self._h()))

    @property
    def tokenizer_size(self):
        return _ffi.lib().skl_tokenizer_size(self._h())

    @property
    def eos_token(self):
        """The end-of-text token id, or None."""
        eos = _ffi.lib().skl_token_eos(self._h())
        return None if eos < 0 else eos

    def tokenize(self, text, plain=False):
        """Text -> token ids (no BOS/EOS added); with plain=True, added/special
        token text is treated as plain text."""
        raw = text.encode("utf-8")
        flags = _ffi.TOKENIZE_PLAIN if plain else 0
        lib, n = _ffi.lib(), ctypes.c_size_t()
        rc = lib.skl_tokenize(self._h(), raw, len(raw), None, 0, byref(n), flags)
        if rc != errors.BufferTooSmallError.code:  # the size query
            _check(rc)
        buf = (c_int32 * max(n.value, 1))()
        _check(lib.skl_tokenize(self._h(), raw, len(raw), buf, n.value, byref(n), flags))
        return buf[:n.value]

    def detokenize(self, tokens):
        """Token ids -> text, as Hugging Face decodes it."""
        ids, count = _tokens(tokens)
        lib, n = _ffi.lib(), ctypes.c_size_t()
        rc = lib.skl_detokenize(self._h(), ids, count, None, 0, byref(n))
        if rc != errors.BufferTooSmallError.code:
            _check(rc)
        buf = ctypes.create_string_buffer(n.value + 1)
        _check(lib.skl_detokenize(self._h(), ids, count, buf, n.value + 1, byref(n)))
        return buf.raw[:n.value].decode("utf-8")

    def save(self, path, format="auto", max_shard_size=None):
        """Write the model as safetensors, each tensor in its in-memory dtype (the
        file's for loaded tensors, the merge dtype for merged ones): a directory, or
        one file when the path ends in .safetensors (format "auto", "dir" or "file").
        A directory's weights are split into shards of at most max_shard_size bytes
        (None: 5 GB, Hugging Face's default) with model.safetensors.index.json, or
        are one model.safetensors when they fit."""
        sp = _save_params(format, max_shard_size)
        _check(_ffi.lib().skl_model_save_v2(self._h(), _path(path), ctypes.byref(sp)))


class Detokenizer(_Owned):
    """Streaming decoder (skl_detokenizer): push ids one at a time and get the
    text each completes; never part of a UTF-8 character."""

    _free, _what = "skl_detokenizer_free", "detokenizer"

    def __init__(self, model):
        self._lib = _ffi.lib()
        self._handle = c_void_p()
        _check(self._lib.skl_detokenizer_create(model._h(), byref(self._handle)))
        self.model = model
        model._children.add(self)

    def _piece(self, fn, *args):
        ptr, n = c_void_p(), ctypes.c_size_t()
        _check(fn(self._h(), *args, byref(ptr), byref(n)))
        # The decoder owns the text only until its next call: copy it now.
        return ctypes.string_at(ptr, n.value).decode("utf-8") if n.value else ""

    def push(self, token):
        return self._piece(self._lib.skl_detokenizer_push, token)

    def flush(self):
        """Text still held back (as U+FFFD), and reset the decoder."""
        return self._piece(self._lib.skl_detokenizer_flush)


# ------------------------------------------------------------------- sampler

class Sampler(_Owned):
    """skl_sampler: sampling settings plus RNG state (one thread at a time)."""

    _free, _what = "skl_sampler_free", "sampler"

    def __init__(self, temperature=None, top_k=None, top_p=None, seed=None):
        self._lib = _ffi.lib()
        self.params = _sampler_params(temperature, top_k, top_p, seed)
        self._handle = c_void_p()
        _check(self._lib.skl_sampler_create(byref(self.params), byref(self._handle)))

    def sample(self, logits):
        """A token id from one row of logits (any float sequence or buffer)."""
        return self._sample_ptr((ctypes.c_float * len(logits))(*logits), len(logits))

    def _sample_ptr(self, ptr, n_vocab):
        tok = c_int32()
        _check(self._lib.skl_sample(self._h(), ptr, n_vocab, byref(tok)))
        return tok.value


def _sampler_params(temperature, top_k, top_p, seed):
    sp = _ffi.init(_ffi.SamplerParams)
    for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p),
                        ("seed", seed)):
        if value is not None:
            setattr(sp, name, value)
    return sp


# ------------------------------------------------------------------- context

class Context(_Owned):
    """skl_context: the KV cache of one sequence.  Use it from one thread at a
    time; free it with close() or a ``with`` block.  While a generate() iterator
    runs, the library allows no other call on the context: any use of the context
    (or a new generate()) first stops that iterator."""

    _free, _what = "skl_context_free", "context"
    _generation = None  # weakref to the running Generation

    def __init__(self, model, n_ctx=None, threads=None, n_batch=None, logits_all=False):
        self._lib = _ffi.lib()
        cp = _ffi.init(_ffi.ContextParams)
        if n_ctx is not None:
            cp.n_ctx = n_ctx
        if threads is not None:
            cp.n_threads = threads
        if n_batch is not None:
            cp.n_batch = n_batch
        cp.logits_all = self.logits_all = bool(logits_all)
        out = c_void_p()
        _check(self._lib.skl_context_create(model._h(), byref(cp), byref(out)))
        self._handle = out
        self.model = model  # keeps the model alive while the context is
        self.n_vocab = model.config.vocab_size
        model._children.add(self)

    def _stop_generation(self):
        gen = self._generation() if self._generation is not None else None
        if gen is not None:
            gen.close()
        self._generation = None

    def _h(self):
        self._stop_generation()
        return super()._h()

    def _before_free(self):
        self._stop_generation()  # a generator goes before its context

    @property
    def n_past(self):
        return self._lib.skl_context_n_past(self._h())

    @property
    def n_ctx(self):
        return self._lib.skl_context_n_ctx(self._h())

    def eval(self, tokens):
        """Append tokens to the KV cache and run them through the model."""
        buf, n = _tokens(tokens)
        _check(self._lib.skl_eval(self._h(), buf, n))

    def truncate(self, n_keep):
        _check(self._lib.skl_kv_truncate(self._h(), n_keep))

    def reset(self):
        _check(self._lib.skl_kv_reset(self._h()))

    def logits(self, tokens=None):
        """Evaluate ``tokens`` (if given), then return a copy of the last logits:
        numpy float32 [vocab] (or [n_tokens, vocab] with logits_all=True), or
        without numpy a flat array.array('f')."""
        if tokens is not None:
            self.eval(tokens)
        rows = c_int32()
        ptr = self._lib.skl_logits(self._h(), byref(rows))
        if not ptr:
            raise ValueError("no logits: nothing evaluated since creation, truncate or reset")
        n = rows.value * self.n_vocab
        raw = ctypes.string_at(ptr, 4 * n)
        if _np is not None:
            a = _np.frombuffer(raw, dtype=_np.float32).copy()
            return a.reshape(rows.value, self.n_vocab) if self.logits_all else a
        out = array.array("f")
        out.frombytes(raw)
        return out

    def generate(self, prompt, max_tokens=128, temperature=None, top_k=None, top_p=None,
                 seed=None, stop=None):
        """Evaluate the prompt (text, or a list of token ids) now, then sample up to
        max_tokens tokens, one per step of the returned Generation iterator.

          When the model has a tokenizer it yields
        the text each token completes ("" while a multi-byte character is
        pending, plus a last piece for bytes still pending at the end);
        otherwise the token ids.  Break out of the loop to stop; the context
        stays usable.  Sampling defaults are the library's (temperature 0.8,
        top_k 40, top_p 0.95, seed 0x5EED).  ``stop``: token ids that end
        generation without being yielded; None (default) means the model's
        end-of-text token, if it has one."""
        if isinstance(prompt, str):
            prompt = self.model.tokenize(prompt)
        if stop is None:
            eos = self.model.eos_token
            stop = () if eos is None else (eos,)
        return Generation(self, prompt, max_tokens, _sampler_params(temperature, top_k, top_p, seed),
                          stop)


class Generation(_Owned):
    """Iterator returned by Context.generate over an skl_generator: the prompt is
    evaluated when it is created, and each __next__ is one skl_generator_next (sample
    a token, having evaluated the previous one).  It yields the token's text piece
    when the model has a tokenizer (then one last piece for bytes still pending at
    the end), otherwise the token id.  Breaking out of the loop and calling close(),
    dropping the iterator, or using the context again stops it (stop_reason
    "callback"); the context then holds the prompt and every token yielded but the
    last.  Afterwards ``stop_reason`` ("max_tokens", "stop_token", "context_full",
    "callback", "error"), ``stop_token``, ``n_generated``, ``tokens`` (the ids
    yielded), ``prompt_seconds`` and ``decode_seconds`` say how it went."""

    _free, _what = "skl_generator_free", "generation"
    stop_reason = None  # also for __del__ after a failed create

    def __init__(self, ctx, prompt, max_tokens, sampler_params, stop):
        self._lib = ctx._lib
        ids, n_prompt = _tokens(prompt)
        stops, n_stop = _tokens(stop or ())
        gp = _ffi.init(_ffi.GenerateParams)
        gp.sampling = ctypes.pointer(sampler_params)  # read (and stop_tokens copied) by create
        gp.max_tokens = max_tokens
        gp.stop_tokens, gp.n_stop_tokens = stops, n_stop
        handle = c_void_p()
        _check(self._lib.skl_generator_create(ctx._h(), ids, n_prompt, byref(gp), byref(handle)))
        self._handle = handle
        ctx._generation = weakref.ref(self)
        self.prompt = list(ids)
        self.tokens = []
        self.n_generated = 0
        self.stop_token = -1
        self.stop_reason = None
        self.prompt_seconds = self.decode_seconds = 0.0

    def __iter__(self):
        return self

    def __next__(self):
        if self.stop_reason is not None:
            raise StopIteration
        tok, piece, n = c_int32(), c_void_p(), ctypes.c_size_t()
        rc = self._lib.skl_generator_next(self._h(), byref(tok), byref(piece), byref(n))
        if rc < 0:
            try:
                _check(rc)  # raises with skl_last_error, read before any other call
            finally:
                self._end(None)
        # The piece belongs to the generator until its next call: copy it now.
        text = ctypes.string_at(piece, n.value).decode("utf-8") if piece.value else None
        if tok.value >= 0:
            self.tokens.append(tok.value)
            self.n_generated += 1
            return tok.value if text is None else text
        self._end(None)
        if text:  # bytes still pending at the end, as skl_generate's token -1 call
            return text
        raise StopIteration

    def _end(self, reason):
        """Record the generator's result and free it (reason overrides its stop_reason)."""
        if not self._handle:
            return
        res = _filled(_ffi.GenerateResult, self._lib.skl_generator_result, self._handle)
        self.n_generated, self.stop_token = res.n_generated, res.stop_token
        self.prompt_seconds, self.decode_seconds = res.prompt_seconds, res.decode_seconds
        self.stop_reason = reason or STOP_REASONS[res.stop_reason]
        self._lib.skl_generator_free(self._handle)
        self._handle = None

    def close(self):
        """Stop early (stop_reason "callback", as skl_generate's callback stop, unless it
        had ended); idempotent."""
        self._end(self.stop_reason or "callback")
