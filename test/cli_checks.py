#!/usr/bin/python3
"""cli_checks.py - the numeric and JSON checks of test/test_cli.sh, one named check each.

    /usr/bin/python3 test/cli_checks.py CHECK ARGS...

A check exits 0 when it passes; on failure it prints why (one line) and exits 1.
Checks that compute a value for the script print it on stdout.  A new check is a
function decorated with @check("name"); its docstring is its usage line, shown by
`cli_checks.py --help`.  Needs numpy (the /usr/bin/python3 of the Debian package).
"""
import glob
import json
import math
import os
import re
import statistics
import struct
import sys

import numpy as np

CHECKS = {}

# The tolerance rule of the tests (test/tests.h): max relative error of float32
# logits against test/reference.py's float64 ones below TEST_TOL; with weights
# stored in F16 / BF16, below 8 unit roundoffs of that dtype.
TEST_TOL = 1e-4
STORAGE_TOL = {"f16": 8 * 2.0 ** -11, "bf16": 8 * 2.0 ** -8, "same": TEST_TOL}


class Fail(Exception):
    pass


def check(name):
    def register(fn):
        CHECKS[name] = fn
        return fn
    return register


def load_json(path):
    with open(path) as f:
        return json.load(f)


def st_header(path):
    """The safetensors header of a file, or of DIR/model.safetensors."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def model_config(path):
    """A model's config: DIR/config.json, or the __metadata__ "config" of a single file."""
    if os.path.isdir(path):
        return load_json(os.path.join(path, "config.json"))
    return json.loads(st_header(path)["__metadata__"]["config"])


def weight_bytes(path):
    """skl_model_weight_bytes from the file: the bytes of its tensors (data_offsets), each once."""
    return sum(t["data_offsets"][1] - t["data_offsets"][0] for k, t in st_header(path).items() if k != "__metadata__")


def kv_bytes(path, n_ctx):
    """skl_model_kv_bytes from the config (Hugging Face defaults): 2 L n_ctx KV hd floats."""
    c = model_config(path)
    heads = c["num_attention_heads"]
    hd = c.get("head_dim", c["hidden_size"] // heads)
    return 2 * c["num_hidden_layers"] * n_ctx * c.get("num_key_value_heads", heads) * hd * 4


def cli_default_ctx(path):
    """The CLI's default context: the smaller of 4096 and max_position_embeddings."""
    return min(4096, model_config(path)["max_position_embeddings"])


def expect_bytes(what, got, want):
    if int(got) != want:
        raise Fail("%s %s bytes, expected %d" % (what, got, want))


def rel_error(got, ref):
    return np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(ref))


def median(xs):
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def positive_number(v):
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


# ------------------------------------------------------------------ manifest

@check("manifest")
def manifest(md, tmp):
    """manifest MODELS_DIR TMP: write TMP/good.tsv and TMP/bad.tsv for the script.

    good.tsv: name path tokens ref block_type attention vocab greedy_first
    (greedy_first: argmax of the reference's last row, or -1 when the top two
    logits are too close to call); bad.tsv: name path."""
    m = load_json(os.path.join(md, "manifest.json"))
    with open(os.path.join(tmp, "good.tsv"), "w") as f:
        for e in m["models"]:
            ref = os.path.join(md, e["ref"])
            r = np.load(ref)
            last = np.sort(r[-1])[::-1]
            first = int(np.argmax(r[-1])) if last[0] - last[1] > 1e-3 * np.max(np.abs(r)) else -1
            attn = next(a.upper() for a in ("mha", "gqa", "mqa") if a in e["features"])
            f.write("\t".join([e["name"], os.path.join(md, e["path"]),
                               ",".join(str(t) for t in e["tokens"]), ref, e["block_type"],
                               attn, str(r.shape[1]), str(first)]) + "\n")
    with open(os.path.join(tmp, "bad.tsv"), "w") as f:
        for e in m["bad"]:
            f.write(e["name"] + "\t" + os.path.join(md, e["path"]) + "\n")


def model_tensors(path):
    """{name: (dtype, shape, bytes)} of a model: a file, DIR/model.safetensors, or a sharded DIR's shards."""
    files = [path]
    if os.path.isdir(path):
        single = os.path.join(path, "model.safetensors")
        files = [single] if os.path.exists(single) else sorted(glob.glob(os.path.join(path, "model-*-of-*.safetensors")))
    out = {}
    for p in files:
        with open(p, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            data = f.read()
        for k, v in hdr.items():
            if k != "__metadata__":
                b, e = v["data_offsets"]
                out[k] = (v["dtype"], v["shape"], data[b:e])
    return out


@check("same-tensors")
def same_tensors(a, b):
    """same-tensors MODEL_A MODEL_B: the same tensor names, dtypes, shapes and bytes (any order, any shards)."""
    ta, tb = model_tensors(a), model_tensors(b)
    if set(ta) != set(tb):
        raise Fail("tensors only in one: %s" % sorted(set(ta) ^ set(tb))[:4])
    differ = [k for k in ta if ta[k] != tb[k]]
    if differ:
        raise Fail("%d tensors differ, e.g. %s" % (len(differ), differ[0]))


@check("other-vocab")
def other_vocab(models_dir, model_dir):
    """other-vocab MODELS_DIR MODEL_DIR: print a directory model whose vocab_size differs from MODEL_DIR's."""
    want = load_json(os.path.join(model_dir, "config.json"))["vocab_size"]
    for c in sorted(glob.glob(os.path.join(models_dir, "*", "config.json"))):
        if load_json(c)["vocab_size"] != want:
            print(os.path.dirname(c))
            return
    raise Fail("no test model with another vocab_size")


@check("eot-id")
def eot_id(tokenizer_json):
    """eot-id TOKENIZER_JSON: print the id of the added token <|endoftext|>."""
    t = load_json(tokenizer_json)
    print(next(a["id"] for a in t["added_tokens"] if a["content"] == "<|endoftext|>"))


@check("json-field")
def json_field(path, key):
    """json-field FILE KEY: print FILE's top-level KEY."""
    print(load_json(path)[key])


@check("json-pick")
def json_pick(path, key, index, out):
    """json-pick FILE KEY INDEX OUT: write FILE[KEY][INDEX] to OUT as JSON."""
    with open(out, "w") as f:
        json.dump(load_json(path)[key][int(index)], f)


# ------------------------------------------------------------------- logits

@check("logits")
def logits(got, ref):
    """logits GOT.npy REF.npy: float32 logits of REF's shape, finite, within TEST_TOL of the float64 reference."""
    c, r = np.load(got), np.load(ref)
    if c.dtype != np.float32:
        raise Fail("dtype %s, expected float32" % c.dtype)
    if c.shape != r.shape:
        raise Fail("shape %s, expected %s" % (c.shape, r.shape))
    if not np.all(np.isfinite(c)):
        raise Fail("non-finite logits")
    err = rel_error(c, r)
    if not err < TEST_TOL:
        raise Fail("relative error %.3g >= %g" % (err, TEST_TOL))


@check("merge-dtype")
def merge_dtype(path, got, ref, dt):
    """merge-dtype MODEL.safetensors GOT.npy REF.npy f16|bf16|same: the changed tensors are stored as DT
    (the others keep the file's F32), and the logits are within DT's storage tolerance."""
    hdr = st_header(path)
    dts = {v["dtype"] for k, v in hdr.items() if k != "__metadata__"}
    want = {"f16": {"F16", "F32"}, "bf16": {"BF16", "F32"}, "same": {"F32"}}[dt]
    if dts != want:
        raise Fail("dtypes %s, expected %s" % (sorted(dts), sorted(want)))
    err = rel_error(np.load(got), np.load(ref))
    if not err < STORAGE_TOL[dt]:
        raise Fail("relative error %.3g >= %.3g" % (err, STORAGE_TOL[dt]))


@check("plan-json")
def plan_json(path):
    """plan-json OUT: `plan --json` output is JSON with "removals"."""
    j = load_json(path)
    if "removals" not in j:
        raise Fail("no removals")


@check("eos-prefix")
def eos_prefix(full, got):
    """eos-prefix FULL GOT: GOT is FULL's text before the first <|endoftext|>, plus a newline."""
    def read(p):
        with open(p, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    if read(got) != read(full).split("<|endoftext|>")[0] + "\n":
        raise Fail("output is not the text before <|endoftext|>")


# ------------------------------------------------------------ memory, -c

@check("info-memory")
def info_memory(model, out):
    """info-memory MODEL OUT: `info` prints the weights' bytes and the KV cache's at the default context and the maximum."""
    with open(out) as f:
        text = f.read()
    w = re.search(r"^weight bytes: +(\d+) bytes", text, re.M)
    kv = re.search(r"^KV cache bytes: +(\d+) bytes.* default context (\d+); (\d+) bytes.* max_positions (\d+)$", text, re.M)
    if not w or not kv:
        raise Fail("no 'weight bytes:' or 'KV cache bytes:' line")
    expect_bytes("weights", w.group(1), weight_bytes(model))
    n, top = cli_default_ctx(model), model_config(model)["max_position_embeddings"]
    if (int(kv.group(2)), int(kv.group(4))) != (n, top):
        raise Fail("contexts %s and %s, expected %d and %d" % (kv.group(2), kv.group(4), n, top))
    expect_bytes("KV cache at the default context", kv.group(1), kv_bytes(model, n))
    expect_bytes("KV cache at max_positions", kv.group(3), kv_bytes(model, top))


@check("generate-memory")
def generate_memory(model, err, n_ctx):
    """generate-memory MODEL ERR N_CTX: generate's summary line names the weights' bytes and the KV cache's
    of an N_CTX-position context ("default": the CLI's default)."""
    n = cli_default_ctx(model) if n_ctx == "default" else int(n_ctx)
    with open(err) as f:
        m = re.search(r"\| weights (\d+) bytes.* \| KV cache (\d+) bytes.*, (\d+) positions \|", f.read())
    if not m:
        raise Fail("no '| weights N bytes ... | KV cache N bytes ..., N positions |' in the summary")
    if int(m.group(3)) != n:
        raise Fail("%s positions, expected %d" % (m.group(3), n))
    expect_bytes("weights", m.group(1), weight_bytes(model))
    expect_bytes("KV cache", m.group(2), kv_bytes(model, n))


@check("nomem")
def nomem(model, err, n_ctx):
    """nomem MODEL ERR N_CTX: a context that cannot be allocated is one error line naming the KV cache's bytes."""
    with open(err) as f:
        text = f.read()
    m = re.search(r"^skipless: context: .*out of memory for a (\d+)-token context: (\d+) bytes asked for .*"
                  r"KV cache (\d+) bytes, scratch (\d+) bytes", text)
    if not m:
        raise Fail("stderr %r does not name the bytes asked for" % text[:300])
    if int(m.group(1)) != int(n_ctx):
        raise Fail("a %s-token context, expected %s" % (m.group(1), n_ctx))
    expect_bytes("KV cache", m.group(3), kv_bytes(model, int(n_ctx)))
    expect_bytes("asked for", m.group(2), int(m.group(3)) + int(m.group(4)))


@check("long-context")
def long_context(model_dir, out_dir, n_ctx):
    """long-context MODEL_DIR OUT_DIR N: OUT_DIR: MODEL_DIR's weights (linked) under its config with
    max_position_embeddings N."""
    c = model_config(model_dir)
    c["max_position_embeddings"] = int(n_ctx)
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f)
    os.symlink(os.path.abspath(os.path.join(model_dir, "model.safetensors")), os.path.join(out_dir, "model.safetensors"))


# -------------------------------------------------------------------- bench

@check("bench")
def bench(model, out, threads):
    """bench MODEL OUT THREADS: `bench --json` of MODEL; $BENCH_ARGS: the extra bench arguments.

    No timing assertions: the figures must be present, finite and positive, and
    bytes_per_token, dtype and merged must match an independent count from the file."""
    threads = int(threads)
    args = os.environ.get("BENCH_ARGS", "")
    j = load_json(out)
    for k in ("decode_tokens_per_s", "prefill_tokens_per_s", "bytes_per_token", "ceiling_gb_per_s",
              "decode_gb_per_s", "decode_ceiling_ratio", "decode_bound_tokens_per_s", "prefill_gflops",
              "sgemm_gflops", "prefill_sgemm_ratio", "prefill_flops"):
        if not positive_number(j.get(k)):
            raise Fail("%s = %r, expected a positive number" % (k, j.get(k)))
    if j["threads"] != threads:
        raise Fail("threads %r, expected %d" % (j["threads"], threads))
    if not isinstance(j.get("blas_core"), str) or not j["blas_core"]:
        raise Fail("blas_core missing")
    if not isinstance(j.get("load_seconds"), (int, float)) or not j["load_seconds"] >= 0:
        raise Fail("load_seconds = %r" % (j.get("load_seconds"),))
    if j.get("use_mmap") is ("--no-mmap" in args):
        raise Fail("use_mmap = %r for arguments %r" % (j.get("use_mmap"), args))
    for k in ("ceiling_gb_per_s_runs", "decode_seconds_runs", "prefill_seconds_runs", "sgemm_gflops_runs",
              "decode_ceiling_ratio_runs"):
        if len(j[k]) != j["repeat"]:
            raise Fail("%s has %d entries for %d repeats" % (k, len(j[k]), j["repeat"]))
    # per repeat: decode GB/s over the ceiling measured around that repeat's decode; the figure is their median
    rr = [j["bytes_per_token"] * j["gen"] / d / 1e9 / c
          for d, c in zip(j["decode_seconds_runs"], j["ceiling_gb_per_s_runs"])]
    if any(abs(a - b) > 1e-6 * b for a, b in zip(rr, j["decode_ceiling_ratio_runs"])):
        raise Fail("decode_ceiling_ratio_runs %r, recomputed %r" % (j["decode_ceiling_ratio_runs"], rr))
    med = median(rr)
    if abs(j["decode_ceiling_ratio"] - med) > 1e-6 * med:
        raise Fail("decode_ceiling_ratio %r, median of the runs %r" % (j["decode_ceiling_ratio"], med))
    # per repeat: prefill GFLOP/s over the sgemm reference run around that prefill; the figure is their median
    pr = [j["prefill_flops"] / p / 1e9 / g for p, g in zip(j["prefill_seconds_runs"], j["sgemm_gflops_runs"])]
    if len(j["prefill_sgemm_ratio_runs"]) != j["repeat"] or \
            any(abs(a - b) > 1e-6 * b for a, b in zip(pr, j["prefill_sgemm_ratio_runs"])):
        raise Fail("prefill_sgemm_ratio_runs %r, recomputed %r" % (j["prefill_sgemm_ratio_runs"], pr))
    med = median(pr)
    if abs(j["prefill_sgemm_ratio"] - med) > 1e-6 * med:
        raise Fail("prefill_sgemm_ratio %r, median of the runs %r" % (j["prefill_sgemm_ratio"], med))
    hp = j.get("weights_huge_page_share", "missing")
    if not (isinstance(hp, (int, float)) and 0 <= hp <= 1):
        raise Fail("weights_huge_page_share = %r (use_mmap %r)" % (hp, j["use_mmap"]))
    hdr = st_header(model)
    # skl_model_decode_bytes: every tensor but the embedding table (linear layers,
    # lm_head, biases, final norm) in its file dtype, plus one embedding row; a
    # tied lm_head is the embedding table itself.
    size = {"F32": 4, "F16": 2, "BF16": 2}
    def nbytes(t):
        return t["data_offsets"][1] - t["data_offsets"][0]
    emb = hdr["model.embed_tokens.weight"]
    expect = sum(nbytes(t) for k, t in hdr.items() if k not in ("__metadata__", "model.embed_tokens.weight"))
    if "lm_head.weight" not in hdr:
        expect += nbytes(emb)
    expect += emb["shape"][1] * size[emb["dtype"]]
    if j["bytes_per_token"] != expect:
        raise Fail("bytes_per_token %r, expected %d from the file's tensors" % (j["bytes_per_token"], expect))
    # the memory: all the weights, and the KV cache of the context bench makes (prompt + gen positions)
    expect_bytes("weight_bytes", j["weight_bytes"], weight_bytes(model))
    if j["n_ctx"] != j["prompt_len"] + j["gen"]:
        raise Fail("n_ctx %r for prompt_len %r + gen %r" % (j["n_ctx"], j["prompt_len"], j["gen"]))
    expect_bytes("kv_cache_bytes", j["kv_cache_bytes"], kv_bytes(model, j["n_ctx"]))
    # the ceiling reads: with --ceiling weights the bytes a decode step reads (skl_model_decode_regions: the
    # tensors above and one embedding row), also from the anonymous copy of --no-mmap; else the buffer (these
    # test models are far smaller than twice the L3, so `auto` takes the buffer); one read before every step,
    # one after the last
    want = "weights" if "--ceiling weights" in args else "buffer"
    if j.get("ceiling_source") != want:
        raise Fail("ceiling_source %r, expected %r for arguments %r" % (j.get("ceiling_source"), want, args))
    if want == "buffer":
        if j["ceiling_read_bytes"] != j["buffer_bytes"] or j["buffer_bytes"] != 16 << 20:
            raise Fail("ceiling_read_bytes %r, buffer_bytes %r, expected 16 MiB"
                       % (j["ceiling_read_bytes"], j["buffer_bytes"]))
    elif j["ceiling_read_bytes"] != expect:
        raise Fail("ceiling_read_bytes %r, the read tensors have %d bytes" % (j["ceiling_read_bytes"], expect))
    if j["ceiling_reads_per_repeat"] != j["gen"] + 1:
        raise Fail("ceiling_reads_per_repeat %r for gen %r" % (j["ceiling_reads_per_repeat"], j["gen"]))
    for k in ("ceiling_best_gb_per_s", "buffer_read_gb_per_s"):
        if not positive_number(j.get(k)):
            raise Fail("%s = %r" % (k, j.get(k)))
    if not j.get("ceiling_setting") or j["ceiling_setting"] == "none":
        raise Fail("ceiling_setting %r" % j.get("ceiling_setting"))
    lin = re.compile(r"(model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj|lm_head)\.weight$")
    dts = {t["dtype"] for k, t in hdr.items() if lin.match(k)}
    if "lm_head.weight" not in hdr:
        dts.add(emb["dtype"])
    if j["dtype"] != (dts.pop() if len(dts) == 1 else "mixed"):
        raise Fail("dtype %r, the file's linear weights are %s" % (j["dtype"], sorted(dts)))
    layers = j["num_hidden_layers"]
    absent = "".join(p for p in "qkvo"
                     if not any("model.layers.%d.self_attn.%s_proj.weight" % (l, p) in hdr for l in range(layers)))
    if j["absent_projections"] != absent or j["merged"] != bool(absent):
        raise Fail("absent_projections %r merged %r, the file has absent %r"
                   % (j["absent_projections"], j["merged"], absent))


@check("bench-fewer-bytes")
def bench_fewer_bytes(out, original_bytes):
    """bench-fewer-bytes OUT BYTES: the benched model is marked merged and reads fewer than BYTES per token."""
    j = load_json(out)
    if not (j["merged"] and j["bytes_per_token"] < int(original_bytes)):
        raise Fail("merged model not marked merged or not fewer bytes per token than %s" % original_bytes)


@check("bench-compare")
def bench_compare(out):
    """bench-compare OUT: `bench A --compare B --repeat 3 --json`: the speedups recomputed from the per-repeat times."""
    j = load_json(out)
    a, b = j["models"]
    if a["merged"] or not b["merged"]:
        raise Fail("merged flags %r/%r, expected false/true" % (a["merged"], b["merged"]))
    runs = [x / y for x, y in zip(a["decode_seconds_runs"], b["decode_seconds_runs"])]
    if len(j["speedup_runs"]) != 3 or any(abs(x - y) > 1e-6 * y for x, y in zip(j["speedup_runs"], runs)):
        raise Fail("speedup_runs %r, recomputed %r" % (j["speedup_runs"], runs))
    if abs(j["speedup"] - statistics.median(runs)) > 1e-6 * j["speedup"]:
        raise Fail("speedup %r, median %r" % (j["speedup"], statistics.median(runs)))
    bound = a["bytes_per_token"] / b["bytes_per_token"]
    if abs(j["speedup_bound"] - bound) > 1e-6 * bound or bound <= 1:
        raise Fail("speedup_bound %r, bytes ratio %r" % (j["speedup_bound"], bound))
    eq = bound * statistics.median([y / x for x, y in zip(a["decode_ceiling_ratio_runs"],
                                                          b["decode_ceiling_ratio_runs"])])
    if abs(j["speedup_at_equal_ceiling"] - eq) > 1e-6 * eq:
        raise Fail("speedup_at_equal_ceiling %r, recomputed %r" % (j["speedup_at_equal_ceiling"], eq))


@check("bench-blas")
def bench_blas(out):
    """bench-blas OUT: `bench --blas --json`: positive figures before and after the core check, core names."""
    j = load_json(out)
    for k in ("sgemm_gflops_before", "sgemm_gflops_after", "sgemv_gb_per_s_before", "sgemv_gb_per_s_after",
              "ceiling_gb_per_s"):
        if not positive_number(j.get(k)):
            raise Fail("%s = %r" % (k, j.get(k)))
    if not j.get("core_before") or "blas_core" not in j:
        raise Fail("core names missing")


def main(argv):
    listing = "usage: cli_checks.py CHECK ARGS...; checks:\n" + "".join(
        "  " + fn.__doc__.splitlines()[0] + "\n" for fn in CHECKS.values())
    if argv[1:2] in (["--help"], ["-h"]):
        print(listing, end="")
        return 0
    if len(argv) < 2 or argv[1] not in CHECKS:
        print(listing, end="", file=sys.stderr)
        return 2
    try:
        CHECKS[argv[1]](*argv[2:])
    except Fail as e:
        print(e)
        return 1
    except Exception as e:  # a malformed output is a failed check, said in one line
        print("%s: %s" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
