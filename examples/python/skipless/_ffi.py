"""ctypes declarations of include/skipless.h and the library lookup.

Structs mirror the header field by field; FUNCTIONS lists every exported
function as (name, restype, argtypes).  tests/test_header.py parses the header
and fails when anything here drifts from it.  Opaque handles (skl_model,
skl_context, ...) are plain void pointers.
"""

import ctypes
import ctypes.util
import os
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float,
                    c_int, c_int32, c_size_t, c_uint, c_uint32, c_uint64, c_void_p)

TOKENIZE_PLAIN = 1  # SKL_TOKENIZE_PLAIN

# The header version these declarations mirror (tests/test_header.py fails when it is
# not include/skipless.h's).  By the header's ABI rule a library X.Z with Z >= MINOR
# serves them; another major, or an older minor, is refused at load.
VERSION_MAJOR, VERSION_MINOR, VERSION_PATCH = 1, 2, 0

handle = c_void_p  # skl_model *, skl_context *, skl_sampler *, ...
enum = c_int       # every skl_* enum

LogFn = CFUNCTYPE(None, enum, c_char_p, c_void_p)
ProgressFn = CFUNCTYPE(c_int, c_uint64, c_uint64, c_void_p)
TokenFn = CFUNCTYPE(c_int, c_int32, c_char_p, c_void_p)


class Hparams(Structure):
    _c_name_ = "skl_hparams"
    _fields_ = [("hidden_size", c_int32), ("num_hidden_layers", c_int32),
                ("num_attention_heads", c_int32), ("num_key_value_heads", c_int32),
                ("head_dim", c_int32), ("intermediate_size", c_int32), ("vocab_size", c_int32),
                ("max_position_embeddings", c_int32), ("rotary_dim", c_int32),
                ("hidden_act", enum), ("block_type", enum), ("rope_theta", c_float),
                ("partial_rotary_factor", c_float), ("rms_norm_eps", c_float),
                ("use_rope", c_bool), ("tie_word_embeddings", c_bool), ("glu", c_bool),
                ("final_norm", c_bool)]


class WeightCounts(Structure):
    _c_name_ = "skl_weight_counts"
    _fields_ = [(n, c_uint64) for n in ("embed", "q", "k", "v", "o", "gate", "up", "down", "head",
                                        "bias", "norm", "linear_total")]


class ModelParams(Structure):
    _c_name_ = "skl_model_params"
    _fields_ = [("struct_size", c_uint32), ("progress", ProgressFn),
                ("progress_user_data", c_void_p), ("use_mmap", c_bool)]


class ContextParams(Structure):
    _c_name_ = "skl_context_params"
    _fields_ = [("struct_size", c_uint32), ("n_ctx", c_int32), ("n_threads", c_int32),
                ("n_batch", c_int32), ("logits_all", c_bool)]


class SamplerParams(Structure):
    _c_name_ = "skl_sampler_params"
    _fields_ = [("struct_size", c_uint32), ("temperature", c_float), ("top_k", c_int32),
                ("top_p", c_float), ("seed", c_uint64)]


class GenerateParams(Structure):
    _c_name_ = "skl_generate_params"
    _fields_ = [("struct_size", c_uint32), ("sampling", POINTER(SamplerParams)),
                ("max_tokens", c_int32), ("stop_tokens", POINTER(c_int32)),
                ("n_stop_tokens", c_int32)]


class GenerateResult(Structure):
    _c_name_ = "skl_generate_result"
    _fields_ = [("n_generated", c_int32), ("stop_token", c_int32), ("stop_reason", enum),
                ("prompt_seconds", c_double), ("decode_seconds", c_double)]


class MergeParams(Structure):
    _c_name_ = "skl_merge_params"
    _fields_ = [("struct_size", c_uint32), ("remove", enum), ("verify", c_bool),
                ("n_probe_tokens", c_int32), ("probe_seed", c_uint64), ("max_condition", c_double),
                ("progress", ProgressFn), ("progress_user_data", c_void_p), ("dtype", enum),
                ("keep", POINTER(c_char_p)), ("n_keep", c_int32)]


class MergeLayer(Structure):
    _c_name_ = "skl_merge_layer"
    _fields_ = [("layer", c_int32), ("removed_q", c_bool), ("removed_k", c_bool),
                ("removed_v", c_bool), ("removed_o", c_bool), ("weights_before", c_uint64),
                ("weights_after", c_uint64), ("condition", c_double), ("residual", c_double)]


class MergeReport(Structure):
    _c_name_ = "skl_merge_report"
    _fields_ = [("removal", enum), ("n_layers", c_int32), ("weights_before", c_uint64),
                ("weights_after", c_uint64), ("max_condition", c_double),
                ("max_residual", c_double), ("verify_error", c_double),
                ("n_probe_tokens", c_int32), ("seconds", c_double)]


class PlanRow(Structure):
    _c_name_ = "skl_plan_row"
    _fields_ = [("removal", enum), ("applicable", c_bool), ("lossless", c_bool),
                ("total", c_uint64), ("removed", c_uint64), ("after", c_uint64),
                ("saving_percent", c_double), ("speedup_bound", c_double), ("note", c_char_p)]


class Plan(Structure):
    _c_name_ = "skl_plan"
    _fields_ = [("block_type", enum), ("hidden_size", c_int32), ("kv_dim", c_int32),
                ("intermediate_size", c_int32), ("num_hidden_layers", c_int32),
                ("vocab_size", c_int32), ("glu", c_bool), ("final_norm", c_bool),
                ("total", c_uint64), ("n_rows", c_int32)]


class BlasInfo(Structure):
    _c_name_ = "skl_blas_info"
    _fields_ = [("openblas", c_bool), ("user_coretype", c_bool), ("core_changed", c_bool),
                ("auto_core", c_bool), ("detected_core", c_char_p), ("core", c_char_p),
                ("cpu_isa", c_char_p)]


class SaveParams(Structure):
    _c_name_ = "skl_save_params"
    _fields_ = [("struct_size", c_uint32), ("format", enum), ("max_shard_size", c_uint64)]


class QuantizeParams(Structure):
    _c_name_ = "skl_quantize_params"
    _fields_ = [("struct_size", c_uint32), ("dtype", enum), ("keep", POINTER(c_char_p)), ("n_keep", c_int32),
                ("progress", ProgressFn), ("progress_user_data", c_void_p)]


STRUCTS = (Hparams, WeightCounts, ModelParams, ContextParams, SamplerParams, GenerateParams,
           GenerateResult, MergeParams, MergeLayer, MergeReport, PlanRow, Plan, BlasInfo,
           SaveParams, QuantizeParams)
CALLBACKS = {"skl_log_fn": LogFn, "skl_progress_fn": ProgressFn, "skl_token_fn": TokenFn}

P = POINTER
FUNCTIONS = (
    ("skl_strerror", c_char_p, [c_int]),
    ("skl_status_name", c_char_p, [c_int]),
    ("skl_last_error", c_char_p, []),
    ("skl_version", c_char_p, []),
    ("skl_version_number", c_int, []),
    ("skl_cpu_kernels", c_char_p, []),
    ("skl_log_set", None, [LogFn, c_void_p]),
    ("skl_dtype_name", c_char_p, [enum]),
    ("skl_dtype_parse", c_int, [c_char_p, P(enum)]),
    ("skl_model_params_init", c_int, [P(ModelParams), c_size_t]),
    ("skl_model_load", c_int, [c_char_p, P(ModelParams), P(handle)]),
    ("skl_model_free", None, [handle]),
    ("skl_model_hparams", c_int, [handle, P(Hparams), c_size_t]),
    ("skl_model_decode_bytes", c_uint64, [handle]),
    ("skl_model_weight_bytes", c_uint64, [handle]),
    ("skl_model_decode_regions", c_int, [handle, P(c_void_p), P(c_uint64), c_size_t, P(c_size_t)]),
    ("skl_model_weight_dtype", c_char_p, [handle]),
    ("skl_model_dtype_weights", c_uint64, [handle, enum]),
    ("skl_model_weight_counts", c_int, [handle, P(WeightCounts), c_size_t]),
    ("skl_model_has_proj", c_int, [handle, c_int32, c_char]),
    ("skl_context_params_init", c_int, [P(ContextParams), c_size_t]),
    ("skl_context_create", c_int, [handle, P(ContextParams), P(handle)]),
    ("skl_context_free", None, [handle]),
    ("skl_eval", c_int, [handle, P(c_int32), c_int32]),
    ("skl_logits", P(c_float), [handle, P(c_int32)]),
    ("skl_context_n_past", c_int32, [handle]),
    ("skl_context_n_ctx", c_int32, [handle]),
    ("skl_kv_truncate", c_int, [handle, c_int32]),
    ("skl_kv_reset", c_int, [handle]),
    ("skl_model_kv_bytes", c_uint64, [handle, c_int32]),
    ("skl_sampler_params_init", c_int, [P(SamplerParams), c_size_t]),
    ("skl_sampler_create", c_int, [P(SamplerParams), P(handle)]),
    ("skl_sampler_free", None, [handle]),
    ("skl_sample", c_int, [handle, P(c_float), c_int32, P(c_int32)]),
    ("skl_model_has_tokenizer", c_bool, [handle]),
    ("skl_tokenizer_size", c_int32, [handle]),
    ("skl_token_eos", c_int32, [handle]),
    ("skl_tokenize", c_int, [handle, c_char_p, c_size_t, P(c_int32), c_size_t, P(c_size_t), c_uint]),
    ("skl_detokenize", c_int, [handle, P(c_int32), c_size_t, c_char_p, c_size_t, P(c_size_t)]),
    ("skl_detokenizer_create", c_int, [handle, P(handle)]),
    ("skl_detokenizer_push", c_int, [handle, c_int32, P(c_void_p), P(c_size_t)]),
    ("skl_detokenizer_flush", c_int, [handle, P(c_void_p), P(c_size_t)]),
    ("skl_detokenizer_free", None, [handle]),
    ("skl_generate_params_init", c_int, [P(GenerateParams), c_size_t]),
    ("skl_generator_create", c_int, [handle, P(c_int32), c_int32, P(GenerateParams), P(handle)]),
    ("skl_generator_next", c_int, [handle, P(c_int32), P(c_void_p), P(c_size_t)]),
    ("skl_generator_result", c_int, [handle, P(GenerateResult), c_size_t]),
    ("skl_generator_free", None, [handle]),
    ("skl_generate", c_int, [handle, P(c_int32), c_int32, P(GenerateParams), TokenFn, c_void_p,
                             P(GenerateResult), c_size_t]),
    ("skl_removal_name", c_char_p, [enum]),
    ("skl_removal_parse", c_int, [c_char_p, P(enum)]),
    ("skl_merge_params_init", c_int, [P(MergeParams), c_size_t]),
    ("skl_model_merge", c_int, [handle, P(MergeParams), P(handle), P(P(MergeReport))]),
    ("skl_merge_report_layer", P(MergeLayer), [P(MergeReport), c_int32]),
    ("skl_merge_report_free", None, [P(MergeReport)]),
    ("skl_plan_config", c_int, [c_char_p, P(P(Plan))]),
    ("skl_model_plan", c_int, [handle, P(P(Plan))]),
    ("skl_plan_row_at", P(PlanRow), [P(Plan), c_int32]),
    ("skl_plan_free", None, [P(Plan)]),
    ("skl_model_save", c_int, [handle, c_char_p, enum]),
    ("skl_save_params_init", c_int, [P(SaveParams), c_size_t]),
    ("skl_model_save_v2", c_int, [handle, c_char_p, P(SaveParams)]),
    ("skl_model_merge_to", c_int, [handle, c_char_p, P(MergeParams), P(SaveParams), P(P(MergeReport))]),
    ("skl_quantize_params_init", c_int, [P(QuantizeParams), c_size_t]),
    ("skl_model_quantize_to", c_int, [handle, c_char_p, P(QuantizeParams), P(SaveParams)]),
    ("skl_blas_get_info", c_int, [P(BlasInfo), c_size_t]),
    ("skl_blas_set_auto_core", c_int, [c_bool]),
)

LIBRARY_NAMES = (f"libskipless.so.{VERSION_MAJOR}", "libskipless.so")

_lock = threading.Lock()
_lib = None


def version_mismatch(number, text=None):
    """Why a library whose skl_version_number() is `number` cannot serve this binding,
    or None.  The header's rule: a binding written against X.Y works with X.Z, Z >= Y."""
    major, minor = number // 10000, number // 100 % 100
    if major == VERSION_MAJOR and minor >= VERSION_MINOR:
        return None
    text = text or f"{major}.{minor}.{number % 100}"
    need = f"needs {VERSION_MAJOR}.{VERSION_MINOR} or a later {VERSION_MAJOR}.x"
    if major != VERSION_MAJOR:
        return (f"libskipless {text} has major version {major}; this binding was written "
                f"against the {VERSION_MAJOR}.{VERSION_MINOR} header and {need}")
    return (f"libskipless {text} is older than the {VERSION_MAJOR}.{VERSION_MINOR} header "
            f"this binding was written against; it {need}")


def init(cls):
    """A params struct filled by its skl_*_params_init(&p, sizeof p): struct_size tells
    the library which fields this binding knows (the rest get the library's defaults)."""
    p = cls()
    name = cls._c_name_ + "_init"
    rc = getattr(lib(), name)(ctypes.byref(p), ctypes.sizeof(p))
    if rc:  # only a size smaller than version 1.0's, i.e. a broken declaration
        raise OSError(f"{name}(sizeof {ctypes.sizeof(p)}) returned {rc}")
    return p


def _declare(lib):
    # The version first: it exists in every version, while a function this binding
    # declares may be missing from an older library.
    lib.skl_version_number.restype, lib.skl_version_number.argtypes = c_int, []
    lib.skl_version.restype, lib.skl_version.argtypes = c_char_p, []
    why = version_mismatch(lib.skl_version_number(), lib.skl_version().decode())
    if why:
        raise OSError(why)
    for name, restype, argtypes in FUNCTIONS:
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def candidates():
    """Where the library is looked for, in order: SKIPLESS_LIBRARY, the package's
    own directory, then the system loader."""
    env = os.environ.get("SKIPLESS_LIBRARY")
    if env:
        return [env]  # explicit: no fallback that would hide a wrong path
    here = os.path.dirname(os.path.abspath(__file__))
    found = [os.path.join(here, n) for n in LIBRARY_NAMES if os.path.exists(os.path.join(here, n))]
    system = ctypes.util.find_library("skipless")
    return found + ([system] if system else []) + [LIBRARY_NAMES[0]]


def load_library(path=None):
    """Load libskipless once per process and return the ctypes.CDLL.

    ``path`` (if given) is used alone; otherwise see :func:`candidates`.  Once
    loaded, a call with a different path raises RuntimeError."""
    global _lib
    with _lock:
        if _lib is not None:
            if path is not None and os.path.realpath(path) != os.path.realpath(_lib._name):
                raise RuntimeError(f"libskipless is already loaded from {_lib._name}")
            return _lib
        tried = []
        for cand in ([path] if path is not None else candidates()):
            try:
                _lib = _declare(ctypes.CDLL(cand))
                return _lib
            except (OSError, AttributeError) as e:
                tried.append(f"{cand}: {e}")
        raise OSError("cannot load libskipless; tried:\n  " + "\n  ".join(tried) +
                      f"\nset SKIPLESS_LIBRARY to the path of {LIBRARY_NAMES[0]}")


def lib():
    return _lib if _lib is not None else load_library()
