"""Behaviour of the Python binding against the C library, its CLI and the test models."""

import array
import ast
import ctypes
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from common import CLI, LIBRARY, MODELS, PKG_ROOT, manifest, model_entry, skipless
from skipless import _ffi

try:
    import numpy
except ImportError:
    numpy = None

SERIAL = "serial_mha_silu_glu"                      # directory model, MHA, merge "qp"
PARALLEL = "parallel_gqa_tanh_mlp_rope25_tied_f16"  # F16, tied head, merge "q"


def read_npy(path):
    """(shape, flat list of floats) of a little-endian float32 C-order .npy file,
    without numpy: the format is a magic, a header dict literal and raw data."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:6] != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file")
    major = blob[6]
    hlen_size = 2 if major == 1 else 4
    hlen = int.from_bytes(blob[8:8 + hlen_size], "little")
    start = 8 + hlen_size
    header = ast.literal_eval(blob[start:start + hlen].decode("latin1"))
    if header["descr"] != "<f4" or header["fortran_order"]:
        raise ValueError(f"{path}: need C-order <f4, got {header}")
    data = array.array("f")
    data.frombytes(blob[start + hlen:])
    if sys.byteorder != "little":
        data.byteswap()
    return tuple(header["shape"]), list(data)


def flat(logits):
    return [float(x) for x in (logits.ravel() if numpy is not None else logits)]


def cli(*args):
    return subprocess.run([CLI, *map(str, args)], check=True, capture_output=True, text=True).stdout


def rss_pages():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1])


class ModelTest(unittest.TestCase):
    def test_load_all_valid_models(self):
        for m in manifest()["models"]:
            with self.subTest(m["name"]), skipless.Model.load(os.path.join(MODELS, m["path"])) as model:
                cfg = model.config
                self.assertEqual(cfg.block_type, m["block_type"])
                self.assertGreater(cfg.vocab_size, max(m["tokens"]))
                wc = model.weight_counts
                self.assertEqual(wc.linear_total, wc.embed + wc.q + wc.k + wc.v + wc.o + wc.gate
                                 + wc.up + wc.down + wc.head)

    def test_config_matches_config_json(self):
        path = model_entry(SERIAL)["path"]
        with open(os.path.join(path, "config.json")) as f:
            raw = json.load(f)
        with skipless.Model.load(path) as model:
            cfg = model.config
            for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                        "intermediate_size", "max_position_embeddings"):
                self.assertEqual(getattr(cfg, key), raw[key], key)
            self.assertEqual(cfg.hidden_act, raw["hidden_act"])

    def test_merge_report_and_save(self):
        e = model_entry(SERIAL)
        with skipless.Model.load(e["path"]) as model, tempfile.TemporaryDirectory() as tmp:
            before = model.weight_counts.linear_total
            report = model.merge(remove="auto", verify=True)
            self.assertIsInstance(report, skipless.MergeReport)
            merged = report.model
            self.assertEqual(report.removal, "qp")
            self.assertEqual(report.weights_before, before)
            self.assertEqual(report.weights_after, merged.weight_counts.linear_total)
            self.assertLess(report.weights_after, before)
            self.assertEqual(len(report.layers), model.config.num_hidden_layers)
            self.assertTrue(all(l.removed_q and l.removed_o for l in report.layers))
            self.assertLess(report.verify_error, 1e-4)
            self.assertFalse(merged.has_proj(0, "q"))
            self.assertTrue(model.has_proj(0, "q"))  # the source is unchanged
            # The merged model computes the same function (independent of the report).
            with skipless.Context(model) as a, skipless.Context(merged) as b:
                la, lb = flat(a.logits(e["tokens"])), flat(b.logits(e["tokens"]))
            scale = max(abs(x) for x in la)
            self.assertLess(max(abs(x - y) for x, y in zip(la, lb)) / scale, 1e-4)
            # Saved and reloaded, it gives identical logits.
            out = os.path.join(tmp, "merged.safetensors")
            merged.save(out)
            with skipless.Model.load(out) as back, skipless.Context(back) as c:
                self.assertEqual(flat(c.logits(e["tokens"])), lb)
                with self.assertRaises(skipless.AlreadyMergedError) as cm:
                    back.merge(remove="qp")
                self.assertEqual(cm.exception.code, -24)
            merged.close()
        with skipless.Model.load(model_entry(PARALLEL)["path"]) as model:
            report = model.merge(verify=False)
            self.assertEqual(report.removal, "q")
            self.assertIsNone(report.verify_error)
            report.model.close()

    def test_plan(self):
        path = model_entry(SERIAL)["path"]
        plan = skipless.plan_config(os.path.join(path, "config.json"))
        with skipless.Model.load(path) as model:
            from_model = model.plan()
            self.assertEqual(plan.total, model.weight_counts.linear_total)
        self.assertEqual(from_model.total, plan.total)
        self.assertEqual([(r.removal, r.applicable, r.removed) for r in from_model.rows],
                         [(r.removal, r.applicable, r.removed) for r in plan.rows])
        qp = [r for r in plan.rows if r.removal == "qp"][0]
        self.assertTrue(qp.applicable)
        self.assertEqual(qp.after, qp.total - qp.removed)
        self.assertTrue(all(isinstance(r.note, str) and r.note for r in plan.rows))
        # The rows are the CLI's (skl_plan_row_at through both).
        cli_rows = json.loads(cli("plan", os.path.join(path, "config.json"), "--json"))
        self.assertIn(str(qp.removed), json.dumps(cli_rows))

    def test_decode_regions_sum_to_decode_bytes(self):
        for m in manifest()["models"]:
            with self.subTest(m["name"]), skipless.Model.load(os.path.join(MODELS, m["path"])) as model:
                regions = model.decode_regions
                self.assertEqual(sum(size for _, size in regions), model.decode_bytes)
                self.assertTrue(all(base and size > 0 for base, size in regions))


def safetensors_header(path):
    """{tensor name: (dtype, byte size)} read from a model's safetensors header."""
    if not path.endswith(".safetensors"):
        path = os.path.join(path, "model.safetensors")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["data_offsets"][1] - v["data_offsets"][0]) for k, v in header.items()}


def weight_dtype_of_file(path):
    """What skl_model_weight_dtype documents, from the safetensors header alone: the dtype
    of every q/k/v/o/gate/up/down_proj weight and of lm_head (the embedding when tied),
    or "mixed" when they differ."""
    tensors = safetensors_header(path)
    head = "lm_head.weight" if "lm_head.weight" in tensors else "model.embed_tokens.weight"
    dtypes = {d for name, (d, _) in tensors.items() if name.endswith("_proj.weight") or name == head}
    return dtypes.pop() if len(dtypes) == 1 else "mixed"


class DtypeTest(unittest.TestCase):
    def decode_bytes_of_file(self, path, model):
        cfg = model.config
        tensors = safetensors_header(path)
        _, embed = tensors.pop("model.embed_tokens.weight")
        row = embed // cfg.vocab_size
        return sum(size for _, size in tensors.values()) + row + (embed if cfg.tie_word_embeddings else 0)

    def test_decode_bytes_equal_the_file(self):
        for m in manifest()["models"]:
            path = os.path.join(MODELS, m["path"])
            with self.subTest(m["name"]), skipless.Model.load(path) as model:
                self.assertEqual(model.decode_bytes, self.decode_bytes_of_file(path, model))

    def test_weight_bytes_equal_the_file(self):
        for m in manifest()["models"]:
            path = os.path.join(MODELS, m["path"])
            with self.subTest(m["name"]), skipless.Model.load(path) as model:
                self.assertEqual(model.weight_bytes, sum(size for _, size in safetensors_header(path).values()))

    def test_kv_bytes(self):
        for m in manifest()["models"]:
            with self.subTest(m["name"]), skipless.Model.load(os.path.join(MODELS, m["path"])) as model:
                c = model.config
                per_position = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 4
                for n in (1, 5, c.max_position_embeddings):
                    self.assertEqual(model.kv_bytes(n), n * per_position)
                self.assertEqual(model.kv_bytes(), c.max_position_embeddings * per_position)
                for bad in (-1, c.max_position_embeddings + 1):
                    with self.assertRaises(ValueError):
                        model.kv_bytes(bad)

    def test_weight_dtype_follows_the_file(self):
        seen = set()
        for m in manifest()["models"]:
            path = os.path.join(MODELS, m["path"])
            with self.subTest(m["name"]), skipless.Model.load(path) as model:
                want = weight_dtype_of_file(path)
                self.assertEqual(model.weight_dtype, want)
                seen.add(want)
        self.assertLessEqual({"F32", "F16", "BF16"}, seen)  # the test models cover each dtype

    def test_cpu_kernels_follow_the_cpu_flags(self):
        # The variant the header documents for this CPU, from /proc/cpuinfo's flags.
        import platform
        flags = set()
        if platform.machine() in ("x86_64", "AMD64") and os.path.exists("/proc/cpuinfo"):
            with open("/proc/cpuinfo") as f:
                flags = next((set(l.split(":", 1)[1].split()) for l in f if l.startswith("flags")),
                             set())
        avx2 = {"avx2", "fma", "f16c"} <= flags
        want = "avx512" if avx2 and "avx512f" in flags else "avx2" if avx2 else "generic"
        self.assertEqual(skipless.cpu_kernels(), want)

    def test_merge_dtype(self):
        e = model_entry(PARALLEL)  # F16 weights; merge "q" changes k_proj/v_proj
        with skipless.Model.load(e["path"]) as model, tempfile.TemporaryDirectory() as tmp:
            before = model.decode_bytes
            with skipless.Context(model) as ctx:
                ref = flat(ctx.logits(e["tokens"]))
            sizes = {}
            for dtype in ("f16", "f32", "bf16", "same"):
                report = model.merge(remove="q", dtype=dtype)
                with report.model as merged:
                    self.assertIsNotNone(report.verify_error, dtype)
                    self.assertTrue(math.isfinite(report.verify_error), dtype)
                    # Rounding the changed weights to 11 (f16) or 8 (bf16) significant bits
                    # moves the logits by about that relative amount, not more.
                    self.assertLess(report.verify_error, {"bf16": 5e-2}.get(dtype, 1e-2), dtype)
                    with skipless.Context(merged) as ctx:
                        got = flat(ctx.logits(e["tokens"]))
                    scale = max(abs(x) for x in ref)
                    self.assertLess(max(abs(x - y) for x, y in zip(ref, got)) / scale,
                                    {"bf16": 5e-2}.get(dtype, 1e-2), dtype)
                    # The saved file holds each tensor in its in-memory dtype, and the
                    # bytes a decoded token reads are those of the file's tensors.
                    out = os.path.join(tmp, f"{dtype}.safetensors")
                    merged.save(out)
                    dtypes = {d for d, _ in safetensors_header(out).values()}
                    want = {"f16": {"F16"}, "same": {"F16"}, "f32": {"F16", "F32"},
                            "bf16": {"F16", "BF16"}}[dtype]
                    self.assertEqual(dtypes, want, dtype)
                    # Only new tensors in another dtype than the file's make the model "mixed".
                    self.assertEqual(merged.weight_dtype, weight_dtype_of_file(out), dtype)
                    self.assertEqual(merged.weight_dtype,
                                     {"f16": "F16", "same": "F16"}.get(dtype, "mixed"), dtype)
                    sizes[dtype] = merged.decode_bytes
                    self.assertEqual(sizes[dtype], self.decode_bytes_of_file(out, merged), dtype)
            # q_proj is gone: in the file's own dtype the merged model reads less.
            self.assertLess(sizes["f16"], before)
            self.assertEqual(sizes["same"], sizes["f16"])
            self.assertEqual(sizes["bf16"], sizes["f16"])
            self.assertGreater(sizes["f32"], sizes["f16"])
            # The CLI's merge with the same dtype gives the same model.
            cli_out = os.path.join(tmp, "cli.safetensors")
            cli("merge", e["path"], cli_out, "--remove", "q", "--dtype", "f16")
            with skipless.Model.load(cli_out) as a, skipless.Model.load(
                    os.path.join(tmp, "f16.safetensors")) as b:
                self.assertEqual(a.decode_bytes, b.decode_bytes)
                with skipless.Context(a) as ca, skipless.Context(b) as cb:
                    self.assertEqual(flat(ca.logits(e["tokens"])), flat(cb.logits(e["tokens"])))

    def test_qp_merge_shrinks_decode_bytes(self):
        with skipless.Model.load(model_entry(SERIAL)["path"]) as model:  # F32
            report = model.merge(remove="qp")
            with report.model as merged:
                self.assertEqual((model.weight_dtype, merged.weight_dtype), ("F32", "F32"))
                self.assertLess(merged.decode_bytes, model.decode_bytes)
                half = model.merge(remove="qp", dtype="f16")
                with half.model as small:
                    self.assertLess(small.decode_bytes, merged.decode_bytes)

    def test_bad_dtype(self):
        with skipless.Model.load(model_entry(SERIAL)["path"]) as model:
            with self.assertRaises(skipless.InvalidArgError) as cm:
                model.merge(dtype="f64")
            self.assertIn("f64", cm.exception.message)


# Run in a fresh interpreter: OpenBLAS's core before libskipless's first call, the
# BlasInfo of that call, and OpenBLAS's core after it (openblas_get_corename is looked up
# through the ctypes handle of libskipless, which searches the libraries it links).
BLAS_PROBE = """
import dataclasses, json, sys
sys.path.insert(0, sys.argv[1])
import skipless
lib = skipless.load_library(sys.argv[2])
try:
    corename = lib.openblas_get_corename
    corename.restype = __import__("ctypes").c_char_p
except AttributeError:
    corename = None
before = corename().decode() if corename else None
info = dataclasses.asdict(skipless.blas_info())
print(json.dumps({"before": before, "info": info,
                  "after": corename().decode() if corename else None}))
"""


def cpu_isa_from_flags():
    """The header's cpu_isa for this CPU from /proc/cpuinfo (None off x86-64)."""
    import platform
    if platform.machine() not in ("x86_64", "AMD64") or not os.path.exists("/proc/cpuinfo"):
        return None
    with open("/proc/cpuinfo") as f:
        flags = next((set(l.split(":", 1)[1].split()) for l in f if l.startswith("flags")), set())
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "AVX-512"
    return "AVX2" if {"avx2", "fma"} <= flags else "AVX" if "avx" in flags else "SSE"


class BlasTest(unittest.TestCase):
    def probe(self, **env):
        environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        out = subprocess.run([sys.executable, "-c", BLAS_PROBE, PKG_ROOT, LIBRARY], check=True,
                             capture_output=True, text=True, env=dict(environ, **env)).stdout
        return json.loads(out)

    def check_consistent(self, b):
        self.assertIsInstance(b, skipless.BlasInfo)
        if b.openblas:
            self.assertNotEqual(b.core, "")
            self.assertNotEqual(b.detected_core, "")
        else:
            self.assertEqual((b.core, b.detected_core, b.user_coretype, b.core_changed),
                             ("", "", False, False))
        if not b.core_changed:
            self.assertEqual(b.core, b.detected_core)
        else:
            self.assertNotEqual(b.core, b.detected_core)
            self.assertFalse(b.user_coretype)  # the user's choice is never changed
        want = cpu_isa_from_flags()
        if want is not None:
            self.assertEqual(b.cpu_isa, want)

    def test_blas_info_is_consistent_and_stable(self):
        b = skipless.blas_info()
        self.check_consistent(b)
        self.assertEqual(skipless.blas_info(), b)  # the check runs once per process
        self.assertEqual(b.user_coretype, b.openblas and "OPENBLAS_CORETYPE" in os.environ)
        try:
            corename = _ffi.lib().openblas_get_corename
        except AttributeError:
            self.assertFalse(b.openblas)
            return
        corename.restype = ctypes.c_char_p
        self.assertTrue(b.openblas)
        self.assertEqual(b.core, corename().decode())  # the core OpenBLAS runs now

    def test_fresh_process_sees_openblas_before_and_after(self):
        r = self.probe()
        b = skipless.BlasInfo(**r["info"])
        self.check_consistent(b)
        self.assertEqual(b.openblas, r["before"] is not None)
        if not b.openblas:
            return
        self.assertFalse(b.user_coretype)
        self.assertEqual(b.detected_core, r["before"])
        self.assertEqual(b.core, r["after"])
        # With OPENBLAS_CORETYPE set (to the core OpenBLAS picks itself, so it exists in
        # this build) the library keeps it.
        r = self.probe(OPENBLAS_CORETYPE=b.detected_core)
        kept = skipless.BlasInfo(**r["info"])
        self.check_consistent(kept)
        self.assertTrue(kept.user_coretype)
        self.assertFalse(kept.core_changed)
        self.assertEqual(kept.detected_core.lower(), b.detected_core.lower())
        self.assertEqual(r["before"], r["after"])
        self.assertEqual(kept.core, r["after"])


class LogitsTest(unittest.TestCase):
    def cli_logits(self, path, tokens, *extra):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "l.npy")
            cli("logits", path, "--tokens", ",".join(map(str, tokens)), "--out", out, *extra)
            if numpy is not None:  # cross-check the tiny reader against numpy's
                ref = numpy.load(out)
                shape, data = read_npy(out)
                self.assertEqual(shape, ref.shape)
                self.assertEqual(data, [float(x) for x in ref.ravel()])
            return read_npy(out)

    def test_prefill_logits_equal_cli(self):
        for name in (SERIAL, PARALLEL, "serial_mqa_gelunew_glu_rope50_bias_f16"):
            e = model_entry(name)
            shape, ref = self.cli_logits(e["path"], e["tokens"])
            with self.subTest(name), skipless.Model.load(e["path"]) as model, \
                    skipless.Context(model, logits_all=True) as ctx:
                got = ctx.logits(e["tokens"])
                self.assertEqual(shape, (len(e["tokens"]), model.config.vocab_size))
                if numpy is not None:
                    self.assertEqual(got.shape, shape)
                    self.assertEqual(got.dtype, numpy.float32)
                else:
                    self.assertIsInstance(got, array.array)
                self.assertEqual(flat(got), ref)

    def test_decode_logits_equal_cli(self):
        e = model_entry(SERIAL)
        shape, ref = self.cli_logits(e["path"], e["tokens"], "--decode")
        vocab = shape[1]
        with skipless.Model.load(e["path"]) as model, skipless.Context(model) as ctx:
            for i, tok in enumerate(e["tokens"]):
                self.assertEqual(flat(ctx.logits([tok])), ref[i * vocab:(i + 1) * vocab], i)
            self.assertEqual(ctx.n_past, len(e["tokens"]))


class GenerateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.e = model_entry(SERIAL)
        cls.model = skipless.Model.load(cls.e["path"])

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def run_gen(self, prompt, **kw):
        with skipless.Context(self.model) as ctx:
            g = ctx.generate(prompt, **kw)
            return list(g), g

    def test_seed_reproduces_and_equals_cli(self):
        prompt = self.e["tokens"][:4]
        for seed in (7, 12345):
            a, g = self.run_gen(prompt, max_tokens=20, seed=seed)
            b, _ = self.run_gen(prompt, max_tokens=20, seed=seed)
            self.assertEqual(a, b)
            self.assertEqual(len(a), 20)
            self.assertEqual(g.stop_reason, "max_tokens")
            out = cli("generate", self.e["path"], "--tokens", ",".join(map(str, prompt)),
                      "-n", 20, "--seed", seed)
            self.assertEqual(a, [int(t) for t in out.strip().split(",")])  # skl_generate's tokens

    def test_stop_tokens(self):
        prompt = self.e["tokens"][:3]
        full, _ = self.run_gen(prompt, max_tokens=12, seed=3)
        stop = full[5]
        got, g = self.run_gen(prompt, max_tokens=12, seed=3, stop=[stop])
        self.assertEqual(got, full[:full.index(stop)])
        self.assertEqual((g.stop_reason, g.stop_token, g.n_generated), ("stop_token", stop, len(got)))

    def test_context_full(self):
        n_ctx = 8
        with skipless.Context(self.model, n_ctx=n_ctx) as ctx:
            g = ctx.generate([1, 2, 3], max_tokens=50, temperature=0)
            toks = list(g)
            self.assertEqual(g.stop_reason, "context_full")
            self.assertEqual(len(toks), n_ctx - 3 + 1)  # the last token is never evaluated
            self.assertEqual(ctx.n_past, n_ctx)

    def test_break_keeps_context_usable(self):
        prompt = self.e["tokens"][:4]
        with skipless.Context(self.model) as ctx:
            taken = []
            for tok in ctx.generate(prompt, max_tokens=50, seed=9):
                taken.append(tok)
                if len(taken) == 3:
                    break
            # As with skl_generate: the last yielded token is not in the cache yet.
            self.assertEqual(ctx.n_past, len(prompt) + 2)
            cont = ctx.logits([taken[-1]])
        with skipless.Context(self.model) as fresh:  # the same evals: prompt, then one by one
            fresh.eval(prompt)
            for tok in taken[:-1]:
                fresh.eval([tok])
            self.assertEqual(flat(fresh.logits([taken[-1]])), flat(cont))
        full, _ = self.run_gen(prompt, max_tokens=50, seed=9)
        self.assertEqual(full[:3], taken)

    def test_close_early_and_context_use_stop_the_generator(self):
        prompt = self.e["tokens"][:4]
        full, _ = self.run_gen(prompt, max_tokens=10, seed=4)
        with skipless.Context(self.model) as ctx:
            first = ctx.generate(prompt, max_tokens=10, seed=4)
            self.assertEqual(ctx.n_past, len(prompt))  # the prompt is evaluated at once
            g = ctx.generate([1], max_tokens=10, seed=4)  # a new one stops the first
            self.assertEqual((first.stop_reason, first.n_generated), ("callback", 0))
            self.assertEqual(list(first), [])
            g.close()
            ctx.reset()
            g = ctx.generate(prompt, max_tokens=10, seed=4)
            got = [next(g), next(g)]
            g.close()
            self.assertEqual((g.stop_reason, g.n_generated, g.tokens), ("callback", 2, full[:2]))
            self.assertEqual(list(g), [])
            h = ctx.generate([1], max_tokens=10, seed=4)
            next(h)
            ctx.reset()  # any use of the context stops the running generator
            self.assertEqual((h.stop_reason, h.n_generated), ("callback", 1))
            self.assertEqual(ctx.n_past, 0)
        self.assertEqual(got, full[:2])

    def test_result_counts_and_times(self):
        toks, g = self.run_gen(self.e["tokens"][:3], max_tokens=7, seed=1)
        self.assertEqual((g.n_generated, len(toks), g.tokens), (7, 7, toks))
        self.assertGreater(g.prompt_seconds, 0)
        self.assertGreaterEqual(g.decode_seconds, 0)

    def test_invalid_generation_arguments(self):
        with skipless.Context(self.model) as ctx:
            with self.assertRaises(skipless.InvalidArgError):
                ctx.generate([1], max_tokens=-1)
            with self.assertRaises(skipless.InvalidArgError):
                ctx.generate([], max_tokens=3)
            with self.assertRaises(skipless.TokenError):
                ctx.generate([self.model.config.vocab_size], max_tokens=3)


def tok_models():
    with open(os.path.join(MODELS, "tokenizers.json")) as f:
        return [os.path.join(MODELS, t["model"]) for t in json.load(f)]


TEXT = "In the beginning God created the heaven and the earth. <sep> naïve café – ünïcödé ✓"


class TokenizerTest(unittest.TestCase):
    def test_tokenize_detokenize_equal_cli(self):
        for path in tok_models():
            with self.subTest(path), skipless.Model.load(path) as model:
                self.assertTrue(model.has_tokenizer)
                self.assertGreater(model.tokenizer_size, 256)
                for plain in (False, True):
                    ids = model.tokenize(TEXT, plain=plain)
                    args = ["tokenize", path, "--text", TEXT] + (["--plain"] if plain else [])
                    self.assertEqual(ids, [int(t) for t in cli(*args).strip().split(",")])
                    out = cli("detokenize", path, "--tokens", ",".join(map(str, ids)))
                    self.assertEqual(model.detokenize(ids), out[:-1])  # the CLI adds a newline
                    if "prefix" not in path:  # add_prefix_space adds a leading space
                        self.assertEqual(model.detokenize(ids), TEXT)
                self.assertNotEqual(model.tokenize("<sep>"), model.tokenize("<sep>", plain=True))
                self.assertEqual(model.tokenize(""), [])

    def test_streaming_decoder_pieces_concatenate(self):
        with skipless.Model.load(tok_models()[0]) as model:
            ids = model.tokenize(TEXT)
            d = skipless.Detokenizer(model)
            pieces = [d.push(t) for t in ids]
            self.assertEqual("".join(pieces) + d.flush(), TEXT)
            # Bytes of a split character are held back, then emitted as U+FFFD at flush.
            cut = model.tokenize("✓")  # three byte-level tokens, one per UTF-8 byte
            self.assertGreater(len(cut), 1)
            self.assertEqual(d.push(cut[0]), "")
            self.assertEqual(d.flush(), "\ufffd")
            with self.assertRaises(skipless.TokenError):
                d.push(model.tokenizer_size)
            model.close()  # closes the decoder first
            with self.assertRaises(ValueError):
                d.push(1)

    def test_generate_text_equals_cli(self):
        for path in tok_models():
            with self.subTest(path), skipless.Model.load(path) as model, \
                    skipless.Context(model) as ctx:
                for seed, stop_args, stop in ((7, (), None), (11, ("--no-eos-stop",), [])):
                    ctx.reset()
                    gen = ctx.generate("In the beginning", max_tokens=40, seed=seed, stop=stop)
                    pieces = list(gen)
                    self.assertTrue(all(isinstance(p, str) for p in pieces))
                    text = "".join(pieces)
                    want = cli("generate", path, "--prompt", "In the beginning", "-n", 40,
                               "--seed", seed, *stop_args)
                    self.assertEqual(text, want[:-1])  # the CLI ends with a newline
                    self.assertEqual(text, model.detokenize(gen.tokens))
                    if gen.stop_reason == "stop_token":
                        self.assertEqual(gen.stop_token, model.eos_token)

    def test_save_keeps_the_tokenizer(self):
        with skipless.Model.load(tok_models()[0]) as model, tempfile.TemporaryDirectory() as tmp:
            for name in ("dir", "one.safetensors"):
                out = os.path.join(tmp, name)
                model.save(out)
                with skipless.Model.load(out) as back:
                    self.assertEqual(back.tokenize(TEXT), model.tokenize(TEXT))
                    self.assertEqual(back.eos_token, model.eos_token)

    def test_save_sharded(self):
        # max_shard_size splits a directory into Hugging Face's shards + index; a
        # sharded model (manifest "sharded") loads and saves back to the same logits.
        e = manifest()["sharded"][0]
        path = os.path.join(MODELS, e["path"])
        with skipless.Model.load(path) as model, skipless.Context(model) as ctx, \
                tempfile.TemporaryDirectory() as tmp:
            want = flat(ctx.logits(e["tokens"]))
            out = os.path.join(tmp, "m")
            model.save(out, max_shard_size=e["max_shard_size"])
            self.assertEqual(sorted(f for f in os.listdir(out) if f.endswith(".safetensors")),
                             e["shards"])
            self.assertTrue(os.path.exists(os.path.join(out, "model.safetensors.index.json")))
            with skipless.Model.load(out) as back, skipless.Context(back) as c:
                self.assertEqual(flat(c.logits(e["tokens"])), want)
            model.save(out)  # the default limit: one file, the shards gone
            self.assertEqual(sorted(os.listdir(out)), ["config.json", "model.safetensors"])
            with self.assertRaises(ValueError):
                model.save(out, max_shard_size=0)

    def test_merge_to(self):
        # the streaming merge writes the files merge() + save() write, byte for byte
        with skipless.Model.load(model_entry(SERIAL)["path"]) as model, \
                tempfile.TemporaryDirectory() as tmp:
            a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
            rep = model.merge(verify=False)
            with rep.model:
                rep.model.save(a, max_shard_size=5000)
            streamed = model.merge_to(b, max_shard_size=5000)
            self.assertIsNone(streamed.model)
            self.assertEqual(streamed.removal, rep.removal)
            self.assertEqual(streamed.weights_after, rep.weights_after)
            self.assertLess(streamed.verify_error, 1e-4)
            names = sorted(os.listdir(a))
            self.assertEqual(sorted(os.listdir(b)), names)
            self.assertIn("model.safetensors.index.json", names)
            for n in names:
                with open(os.path.join(a, n), "rb") as fa, open(os.path.join(b, n), "rb") as fb:
                    self.assertEqual(fa.read(), fb.read(), n)
            with self.assertRaises(skipless.AlreadyMergedError):
                with skipless.Model.load(b) as back:
                    back.merge_to(os.path.join(tmp, "c"), remove=rep.removal)
            self.assertFalse(os.path.exists(os.path.join(tmp, "c")))

    def test_quantize_to(self):
        # the files of models.py's own quantizer; the logits of the quantized model
        q = next(e for e in manifest()["quantized"] if e["name"] == "q4_serial_mha_silu_glu_keep_head")
        with skipless.Model.load(model_entry(SERIAL)["path"]) as model, tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "q")
            model.quantize_to(out, "q4_0", keep=["lm_head"])
            def tensors(path):   # {name: (dtype, shape, bytes)} of a model.safetensors
                with open(os.path.join(path, "model.safetensors"), "rb") as f:
                    n = int.from_bytes(f.read(8), "little")
                    hdr, data = json.loads(f.read(n)), f.read()
                return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
                        for k, v in hdr.items() if k != "__metadata__"}
            self.assertEqual(tensors(out), tensors(os.path.join(MODELS, q["path"])))
            with skipless.Model.load(out) as back:
                self.assertEqual(back.weight_dtype, "mixed")
                self.assertEqual(back.dtype_weights("q4_0"), q["dtype_weights"]["Q4_0"])
                self.assertEqual(back.dtype_weights("f32"), q["dtype_weights"]["F32"])
            with self.assertRaises(skipless.InvalidArgError):
                model.quantize_to(os.path.join(tmp, "x"), "q4_0", keep=["embed_tokens"])
            with self.assertRaises(skipless.InvalidArgError):
                model.quantize_to(os.path.join(tmp, "x"), "f16")
            self.assertFalse(os.path.exists(os.path.join(tmp, "x")))

    def test_no_tokenizer(self):
        with skipless.Model.load(model_entry(SERIAL)["path"]) as model:
            self.assertFalse(model.has_tokenizer)
            self.assertEqual(model.tokenizer_size, 0)
            with self.assertRaises(skipless.NoTokenizerError):
                model.tokenize("text")
            with skipless.Context(model) as ctx, self.assertRaises(skipless.NoTokenizerError):
                ctx.generate("text")


class ErrorTest(unittest.TestCase):
    def test_bad_models_raise_the_exact_subclass(self):
        bad = manifest()["bad"]
        self.assertGreater(len(bad), 10)
        for b in bad:
            cls = skipless.BY_CODE[[v for v, n in skipless.STATUS_TABLE if n == b["expect"]][0]]
            with self.subTest(b["name"]):
                with self.assertRaises(skipless.SkiplessError) as cm:
                    skipless.Model.load(os.path.join(MODELS, b["path"]))
                self.assertIs(type(cm.exception), cls)
                self.assertEqual(cm.exception.code, cls.code)
                self.assertTrue(cm.exception.message)

    def test_missing_file_is_io_error(self):
        with self.assertRaises(skipless.IoError) as cm:
            skipless.Model.load("/nonexistent/model.safetensors")
        self.assertIn("/nonexistent/model.safetensors", cm.exception.message)

    def test_eval_errors_leave_the_context_unchanged(self):
        with skipless.Model.load(model_entry(SERIAL)["path"]) as model, \
                skipless.Context(model, n_ctx=6) as ctx:
            before = flat(ctx.logits([1, 2]))
            with self.assertRaises(skipless.TokenError) as cm:
                ctx.eval([3, model.config.vocab_size])
            self.assertIn(str(model.config.vocab_size), cm.exception.message)
            with self.assertRaises(skipless.ContextFullError):
                ctx.eval([1] * 5)
            self.assertEqual(ctx.n_past, 2)
            self.assertEqual(flat(ctx.logits()), before)
            with self.assertRaises(skipless.InvalidArgError):
                skipless.Context(model, n_ctx=model.config.max_position_embeddings + 1)
            with self.assertRaises(skipless.InvalidArgError):
                skipless.Sampler(top_p=0)
            with self.assertRaises(skipless.InvalidArgError):
                model.merge(remove="nonsense")

    def test_closed_handles(self):
        model = skipless.Model.load(model_entry(SERIAL)["path"])
        ctx = skipless.Context(model)
        model.close()  # closes its contexts first
        with self.assertRaises(ValueError):
            ctx.eval([1])
        with self.assertRaises(ValueError):
            model.config
        with self.assertRaises(ValueError):
            model.weight_dtype
        model.close()
        ctx.close()


class StatusTest(unittest.TestCase):
    def test_names_and_classes_come_from_the_library(self):
        self.assertEqual(skipless.status_name(0), "SKL_OK")
        self.assertEqual(skipless.status_name(-3), "SKL_ERR_IO")
        self.assertIsNone(skipless.status_name(-1000))
        self.assertIs(skipless.BY_CODE[-3], skipless.IoError)
        self.assertEqual(skipless.IoError.c_name, "SKL_ERR_IO")
        self.assertIn("IoError", dir(skipless))
        with self.assertRaises(AttributeError):
            skipless.NoSuchError

    def test_blas_auto_core_is_fixed_after_the_first_load(self):
        skipless.blas_info()  # the check has run in this process
        with self.assertRaises(skipless.InvalidArgError):
            skipless.blas_set_auto_core(False)
        self.assertTrue(skipless.blas_info().auto_core)


FAKE_LIB = r"""
const char *skl_version(void) { return "%(text)s"; }
int skl_version_number(void) { return %(number)d; }
"""


class VersionRuleTest(unittest.TestCase):
    """A binding written against X.Y takes a library X.Z, Z >= Y, and refuses the rest."""

    def test_rule(self):
        major, minor = _ffi.VERSION_MAJOR, _ffi.VERSION_MINOR
        number = lambda a, b, c=0: a * 10000 + b * 100 + c  # noqa: E731
        for ok in (number(major, minor), number(major, minor, 7), number(major, minor + 3)):
            self.assertIsNone(_ffi.version_mismatch(ok), ok)
        self.assertIn("major version", _ffi.version_mismatch(number(major + 1, 0)))
        if major > 0:
            self.assertIn("major version", _ffi.version_mismatch(number(major - 1, 99)))
        if minor > 0:
            self.assertIn("older", _ffi.version_mismatch(number(major, minor - 1, 9)))

    @unittest.skipUnless(shutil.which("cc"), "no C compiler for the fake libraries")
    def test_load_refuses_another_major_and_accepts_a_newer_minor(self):
        major, minor = _ffi.VERSION_MAJOR, _ffi.VERSION_MINOR
        code = "import sys, skipless; skipless.load_library(sys.argv[1]); print(skipless.version())"
        with tempfile.TemporaryDirectory() as tmp:
            def fake(a, b):
                src, so = os.path.join(tmp, f"v{a}_{b}.c"), os.path.join(tmp, f"libskipless{a}_{b}.so")
                with open(src, "w") as f:
                    f.write(FAKE_LIB % {"text": f"{a}.{b}.0", "number": a * 10000 + b * 100})
                subprocess.run(["cc", "-shared", "-fPIC", "-o", so, src], check=True)
                return subprocess.run([sys.executable, "-c", code, so], capture_output=True,
                                      text=True, env=dict(os.environ, PYTHONPATH=PKG_ROOT))
            r = fake(major + 1, 0)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(f"libskipless {major + 1}.0.0 has major version {major + 1}", r.stderr)
            # A newer minor passes the version check; this fake then lacks the functions.
            r = fake(major, minor + 1)
            self.assertNotEqual(r.returncode, 0)
            self.assertNotIn("major version", r.stderr)
            self.assertIn("undefined symbol", r.stderr)


class LeakTest(unittest.TestCase):
    def cycle(self, path, tokens):
        with skipless.Model.load(path) as model:
            with skipless.Context(model, n_ctx=32) as ctx:
                ctx.logits(tokens)
            skipless.Sampler(seed=1).close()

    def test_create_free_cycles_do_not_grow_rss(self):
        e = model_entry(SERIAL)
        tokens = e["tokens"][:4]
        for _ in range(50):  # warm up allocator pools and OpenBLAS buffers
            self.cycle(e["path"], tokens)
        before = rss_pages()
        for _ in range(1000):
            self.cycle(e["path"], tokens)
        grown = (rss_pages() - before) * os.sysconf("SC_PAGE_SIZE")
        # One leaked model is ~100 KiB of converted weights: 1,000 would be ~100 MiB.
        self.assertLess(grown, 8 << 20, f"RSS grew by {grown} bytes over 1,000 cycles")


def run_python(code, env_extra, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("SKIPLESS_LIBRARY", "PYTHONPATH")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True)


def system_libskipless():
    """What ctypes.util.find_library finds without this process's LD_LIBRARY_PATH."""
    r = run_python("import ctypes.util; print(ctypes.util.find_library('skipless') or '')",
                   {"LD_LIBRARY_PATH": ""}, os.getcwd())
    return r.stdout.strip()


CHECK = ("import skipless, sys; m = skipless.Model.load(sys.argv[1] if len(sys.argv) > 1 else {!r}); "
         "c = skipless.Context(m); c.eval([1, 2]); "
         "print(skipless.__file__); print(skipless._ffi._lib._name)")


class LookupTest(unittest.TestCase):
    def test_explicit_env_and_package_directory(self):
        path = model_entry(SERIAL)["path"]
        with tempfile.TemporaryDirectory() as tmp:
            pkg = os.path.join(tmp, "skipless")
            shutil.copytree(os.path.join(PKG_ROOT, "skipless"), pkg,
                            ignore=shutil.ignore_patterns("__pycache__"))
            # SKIPLESS_LIBRARY wins, and a wrong one is an error, not a silent fallback.
            r = run_python(CHECK.format(path), {"PYTHONPATH": tmp, "SKIPLESS_LIBRARY": LIBRARY}, tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.split()[1], LIBRARY)
            r = run_python(CHECK.format(path), {"PYTHONPATH": tmp,
                                                "SKIPLESS_LIBRARY": os.path.join(tmp, "nope.so")}, tmp)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("nope.so", r.stderr)
            # Without it, a copy in the package's own directory is found.
            shutil.copy(LIBRARY, os.path.join(pkg, _ffi.LIBRARY_NAMES[0]))
            r = run_python(CHECK.format(path), {"PYTHONPATH": tmp}, tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.split()[1], os.path.join(pkg, _ffi.LIBRARY_NAMES[0]))

    @unittest.skipIf(system_libskipless(), "a system-wide libskipless would be found first")
    def test_system_loader_last(self):
        # No SKIPLESS_LIBRARY and no copy in the package: the dynamic loader's search
        # (here LD_LIBRARY_PATH) finds libskipless.so.MAJOR.
        code = ("import skipless; skipless.version(); "
                "print([l.split()[-1] for l in open('/proc/self/maps') if 'libskipless' in l][0])")
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(os.path.join(PKG_ROOT, "skipless"), os.path.join(tmp, "skipless"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            libdir = os.path.join(tmp, "libdir")
            os.mkdir(libdir)
            shutil.copy(LIBRARY, os.path.join(libdir, _ffi.LIBRARY_NAMES[0]))
            r = run_python(code, {"PYTHONPATH": tmp, "LD_LIBRARY_PATH": libdir}, tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(os.path.dirname(r.stdout.strip()), libdir)

    def test_already_loaded_from_elsewhere(self):
        with self.assertRaises(RuntimeError):
            skipless.load_library("/elsewhere/" + _ffi.LIBRARY_NAMES[0])


def have_pip():
    r = subprocess.run([sys.executable, "-c", "import setuptools, pip"], capture_output=True)
    return r.returncode == 0


class InstallTest(unittest.TestCase):
    @unittest.skipUnless(have_pip(), f"{sys.executable} has no pip + setuptools")
    def test_pip_install_target(self):
        with tempfile.TemporaryDirectory() as tmp:
            target, work = os.path.join(tmp, "site"), os.path.join(tmp, "work")
            shutil.copytree(PKG_ROOT, work, ignore=shutil.ignore_patterns("__pycache__", "build",
                                                                         "*.egg-info"))
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                                "--no-build-isolation", "--no-deps", "--target", target, work],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = run_python(CHECK.format(model_entry(SERIAL)["path"]),
                           {"PYTHONPATH": target, "SKIPLESS_LIBRARY": LIBRARY}, tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.split()[0], os.path.join(target, "skipless", "__init__.py"))


if __name__ == "__main__":
    unittest.main()
