#!/usr/bin/python3
"""Sanity checks of the float64 reference (reference.py) and of models.py.

    /usr/bin/python3 test/test_reference.py

Exits non-zero on failure.  Torch-free: the reference is checked against
properties and against a deliberately naive loop implementation written here.
"""

import json
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import models      # noqa: E402
import reference   # noqa: E402

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)


def close(a, b, tol=1e-10):
    scale = max(1.0, float(np.max(np.abs(b))))
    return a.shape == b.shape and float(np.max(np.abs(a - b))) <= tol * scale


# ---------------------------------------------------------------------------
# a naive, loop-based forward pass, independent of reference.py's math
# ---------------------------------------------------------------------------

def naive_forward(path, tokens):
    cfg, t = reference.read_model_files(path)
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim", d // H)
    act_name = cfg["hidden_act"]
    rot = int(hd * cfg.get("partial_rotary_factor", 1.0))
    theta = cfg.get("rope_theta", 10000.0)
    use_rope = cfg.get("position_embedding", "rope") == "rope"
    parallel = cfg.get("block_type", "serial") == "parallel"

    def act(z):
        if act_name == "silu":
            return z / (1 + math.exp(-z))
        if act_name == "gelu":
            return 0.5 * z * (1 + math.erf(z / math.sqrt(2)))
        if act_name in ("gelu_new", "gelu_pytorch_tanh"):
            return 0.5 * z * (1 + math.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
        return max(z, 0.0)

    def lin(name, x):
        if name + ".weight" not in t:
            return list(x)
        w, b = t[name + ".weight"], t.get(name + ".bias")
        return [sum(w[r, c] * x[c] for c in range(len(x))) + (b[r] if b is not None else 0.0)
                for r in range(w.shape[0])]

    def rope_vec(v, pos):          # v: one head, pairs (i, i + rot/2) rotated
        v = list(v)
        half = rot // 2
        for i in range(half):
            ang = pos / theta ** (2 * i / rot)
            a, b = v[i], v[i + half]
            v[i] = a * math.cos(ang) - b * math.sin(ang)
            v[i + half] = b * math.cos(ang) + a * math.sin(ang)
        return v

    xs = [list(t["model.embed_tokens.weight"][tok]) for tok in tokens]
    n = len(xs)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        qs = [lin(p + "self_attn.q_proj", x) for x in xs]
        ks = [lin(p + "self_attn.k_proj", x) for x in xs]
        vs = [lin(p + "self_attn.v_proj", x) for x in xs]
        new = []
        for i in range(n):
            att = []
            for h in range(H):
                g = h // (H // KV)
                qh = qs[i][h * hd:(h + 1) * hd]
                if use_rope:
                    qh = rope_vec(qh, i)
                scores = []
                for j in range(i + 1):
                    kh = ks[j][g * hd:(g + 1) * hd]
                    if use_rope:
                        kh = rope_vec(kh, j)
                    scores.append(sum(a * b for a, b in zip(qh, kh)) / math.sqrt(hd))
                m = max(scores)
                e = [math.exp(s - m) for s in scores]
                z = sum(e)
                for c in range(hd):
                    att.append(sum(e[j] / z * vs[j][g * hd + c] for j in range(i + 1)))
            o = lin(p + "self_attn.o_proj", att)

            def mlp(h_in):
                up = lin(p + "mlp.up_proj", h_in)
                if p + "mlp.gate_proj.weight" in t:
                    gate = lin(p + "mlp.gate_proj", h_in)
                    hid = [act(a) * b for a, b in zip(gate, up)]
                else:
                    hid = [act(a) for a in up]
                return lin(p + "mlp.down_proj", hid)

            if parallel:
                new.append([a + b for a, b in zip(o, mlp(xs[i]))])
            else:
                new.append(mlp(o))
        xs = new
    out = []
    head = t.get("lm_head.weight", t["model.embed_tokens.weight"])
    for x in xs:
        if "model.norm.weight" in t:
            r = math.sqrt(sum(v * v for v in x) / d + cfg.get("rms_norm_eps", 1e-6))
            x = [v / r * w for v, w in zip(x, t["model.norm.weight"])]
        row = [sum(head[r, c] * x[c] for c in range(d)) for r in range(head.shape[0])]
        if "lm_head.bias" in t:
            row = [a + b for a, b in zip(row, t["lm_head.bias"])]
        out.append(row)
    return np.array(out)


# ---------------------------------------------------------------------------

def main():
    tmp = tempfile.mkdtemp(prefix="skl_ref_")
    out = os.path.join(tmp, "a")
    check(models.main(["models.py", out]) == 0, "models.py runs")
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    entries = {e["name"]: e for e in manifest["models"]}

    # Determinism: a second run writes identical bytes.
    out2 = os.path.join(tmp, "b")
    models.main(["models.py", out2])
    same = subprocess.run(["diff", "-r", out, out2], capture_output=True).returncode == 0
    check(same, "models.py output is byte-identical across runs")

    # Building blocks.
    check(abs(reference.activation("gelu", np.array([1.0]))[0] - 0.8413447460685429) < 1e-15,
          "gelu (erf) value at 1")
    check(abs(reference.activation("gelu_new", np.array([1.0]))[0] - 0.8411919906082768) < 1e-15,
          "gelu (tanh) value at 1")
    check(abs(reference.activation("silu", np.array([1.0]))[0] - 0.7310585786300049) < 1e-15,
          "silu value at 1")
    bf = reference.decode_tensor(np.array([0x3F80, 0xC040, 0x0000], "<u2").tobytes(), "BF16", [3])
    check(list(bf) == [1.0, -3.0, 0.0], "BF16 decoding")
    check(reference.decode_tensor(models.encode(np.array([1.00390625 + 1e-6]), "BF16"),
                                  "BF16", [1])[0] == 1.0078125, "BF16 encoding rounds to nearest")
    # RoPE: rotated q.k depends only on the position difference.
    rng = np.random.default_rng(1)
    qv, kv = rng.standard_normal(16), rng.standard_normal(16)
    q = reference.rope(np.tile(qv, (10, 1, 1)), 8, 10000.0)
    k = reference.rope(np.tile(kv, (10, 1, 1)), 8, 10000.0)
    check(abs(q[7, 0] @ k[4, 0] - q[3, 0] @ k[0, 0]) < 1e-12, "RoPE is relative")
    check(np.array_equal(q[:, 0, 8:], np.tile(qv[8:], (10, 1))), "partial RoPE leaves tail")

    # Every model: reference == naive loop implementation == stored .ref.npy.
    for e in manifest["models"]:
        path = os.path.join(out, e["path"])
        ref = reference.logits(path, e["tokens"])
        stored = np.load(os.path.join(out, e["ref"]))
        check(stored.dtype == np.float64 and np.array_equal(ref, stored), f"{e['name']}: stored ref")
        check(close(ref, naive_forward(path, e["tokens"])), f"{e['name']}: matches naive loops")
        # Causality: prefixes and changed suffixes do not affect earlier rows.
        n = len(e["tokens"])
        k = n // 2
        check(close(reference.logits(path, e["tokens"][:k]), ref[:k], 1e-12),
              f"{e['name']}: prefix logits equal")
        altered = e["tokens"][:k] + [(x + 1) % ref.shape[1] for x in e["tokens"][k:]]
        alt = reference.logits(path, altered)
        check(close(alt[:k], ref[:k], 1e-12) and not close(alt[k:], ref[k:], 1e-6),
              f"{e['name']}: causal")

    # Absent projection == explicit identity matrix.
    for name in ("serial_noqkvo_gelu_mlp", "serial_noq_noo", "parallel_mha_nok_nov_gelunew_glu_bf16"):
        e = entries[name]
        cfg, t = reference.read_model_files(os.path.join(out, e["path"]))
        d = cfg["hidden_size"]
        full = {}
        for key, val in t.items():
            full[key] = val
        for i in range(cfg["num_hidden_layers"]):
            for proj in "qkvo":
                full.setdefault(f"model.layers.{i}.self_attn.{proj}_proj.weight", np.eye(d))
        models.write_model(tmp, f"ident_{name}", "dir", cfg, full, "F32")
        check(close(reference.logits(os.path.join(tmp, f"ident_{name}"), e["tokens"]),
                    np.load(os.path.join(out, e["ref"])), 1e-12),
              f"{name}: absent projections == identity matrices")

    # GQA/MQA == MHA with K/V heads repeated.
    for name in ("serial_gqa_wideheads_bias", "serial_mqa_gelunew_glu_rope50_bias_f16",
                 "serial_gqa_nok_nov_wideheads_file"):
        e = entries[name]
        cfg, t = reference.read_model_files(os.path.join(out, e["path"]))
        H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        hd = cfg.get("head_dim", cfg["hidden_size"] // H)
        rep = np.concatenate([np.arange(h // (H // KV) * hd, (h // (H // KV) + 1) * hd)
                              for h in range(H)])
        mha = {}
        for key, val in t.items():
            if ".k_proj." in key or ".v_proj." in key:
                val = val[rep]
            mha[key] = val
        for i in range(cfg["num_hidden_layers"]):     # absent k/v: identity, repeated
            for proj in "kv":
                key = f"model.layers.{i}.self_attn.{proj}_proj.weight"
                if key not in mha:
                    mha[key] = np.eye(cfg["hidden_size"])[rep]
        cfg = dict(cfg, num_key_value_heads=H)
        models.write_model(tmp, f"mha_{name}", "dir", cfg, mha, "F32")
        check(close(reference.logits(os.path.join(tmp, f"mha_{name}"), e["tokens"]),
                    np.load(os.path.join(out, e["ref"])), 1e-12),
              f"{name}: equals MHA with repeated K/V heads")

    # Directory and single-file formats give the same logits.
    e = entries["serial_mha_silu_glu"]
    cfg, t = reference.read_model_files(os.path.join(out, e["path"]))
    models.write_model(tmp, "as_file.safetensors", "file", cfg, t, "F32")
    check(np.array_equal(reference.logits(os.path.join(tmp, "as_file.safetensors"), e["tokens"]),
                         np.load(os.path.join(out, e["ref"]))), "dir == single file")

    # Sharded directories: read from the directory and from the index, the
    # stored reference; the same logits when rewritten as one file.
    for e in manifest["sharded"]:
        path = os.path.join(out, e["path"])
        ref = np.load(os.path.join(out, e["ref"]))
        check(len(e["shards"]) >= 3, f"{e['name']}: {len(e['shards'])} shards")
        check(np.array_equal(reference.logits(path, e["tokens"]), ref)
              and np.array_equal(reference.logits(os.path.join(path, reference.INDEX_NAME),
                                                  e["tokens"]), ref), f"{e['name']}: stored ref")
        cfg, t = reference.read_model_files(path)
        dtype = e["dtype"]
        models.write_model(tmp, f"unsharded_{e['name']}", "dir", cfg, t, dtype)
        check(np.array_equal(reference.logits(os.path.join(tmp, f"unsharded_{e['name']}"), e["tokens"]),
                             ref), f"{e['name']}: sharded == one file")

    # Quantized models: the stored reference (from the dequantized weights), the
    # naive loops, and every dequantized weight within the rounding of its grid
    # of the source's stored weight (half a step for Q8_0; Q4_0's clamp at +7
    # of a group whose extreme is -8 steps may cost a whole step).
    words = models.pack_int32(np.arange(-8, 8, dtype=np.int64).reshape(1, 16))
    check(words.view(np.uint32).tolist() == [[0x76543210, 0xFEDCBA98]],
          "pack_int32: nibble c % 8 of word c / 8, q + 8 (compressed-tensors' order)")
    sources = {e["name"]: e for e in manifest["models"] + manifest["sharded"]}
    for e in manifest["quantized"]:
        path = os.path.join(out, e["path"])
        ref = reference.logits(path, e["tokens"])
        check(np.array_equal(ref, np.load(os.path.join(out, e["ref"]))), f"{e['name']}: stored ref")
        check(close(ref, naive_forward(path, e["tokens"])), f"{e['name']}: matches naive loops")
        cfg, t = reference.read_model_files(path)
        _, src = reference.read_model_files(os.path.join(out, sources[e["source"]]["path"]))
        src = dict(src)
        src.setdefault("lm_head.weight", src["model.embed_tokens.weight"])   # a tied source's head
        storage = reference.quant_scheme(cfg)
        n_q, worst = 0, 0.0
        for name, w in t.items():
            module = name[:-len(".weight")]
            linear = re.fullmatch(r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj|lm_head", module)
            kind = storage(module, True) if name.endswith(".weight") and linear else None
            if kind is None:
                check(np.array_equal(w, src[name]), f"{e['name']}: {name} unchanged") if name in src else None
                continue
            n_q += 1
            scale = np.abs(w.reshape(w.shape[0], -1, 32)).max(axis=2, keepdims=True)   # = |q| max times |s|
            step = scale / (127.0 if kind == "q8" else 8.0)
            err = np.abs(w - src[name]).reshape(step.shape[0], -1, 32) / np.where(step > 0, step, 1)
            # Q4_0: the clamp at +7 on the F16-rounded scale, (1 + 8 2^-11) steps (test_merged_reference.py)
            worst = max(worst, float(err.max()) / (0.5 if kind == "q8" else 1.0 + 8 * 2.0 ** -11))
        # BF16 scales: q was rounded on the F16 grid, then the scale rounded by up to 2^-9 relative
        slack = 1e-9 if e["scales"] != "BF16" else 32 * 2.0 ** -9
        check(n_q > 0 and worst <= 1.0 + slack, f"{e['name']}: {n_q} quantized weights within the rounding "
              f"(worst {worst:.3f} of the bound)")
        if "Q4_0" not in e["dtype_weights"]:  # 8 bits: close to the original on these 2-3 layer models
            srcref = np.load(os.path.join(out, sources[e["source"]]["ref"]))
            rel = float(np.max(np.abs(ref - srcref)) / np.max(np.abs(srcref)))
            check(rel < 0.1, f"{e['name']}: logits within {rel:.3g} of the unquantized model's")

    # Malformed models are rejected with the expected status.
    for b in manifest["bad"]:
        try:
            reference.load_model(os.path.join(out, b["path"]))
            status = "loaded"
        except reference.ModelError as ex:
            status = "SKL_ERR_" + ex.status
        check(status == b["expect"], f"bad/{b['name']}: {status} (expect {b['expect']})")

    # CLI.
    e = manifest["models"][0]
    npy = os.path.join(tmp, "cli.npy")
    rc = subprocess.run([sys.executable, os.path.join(HERE, "reference.py"),
                         os.path.join(out, e["path"]), "--tokens",
                         ",".join(map(str, e["tokens"])), "--out", npy]).returncode
    arr = np.load(npy) if rc == 0 else None
    check(rc == 0 and arr.dtype == np.float64 and arr.flags.c_contiguous
          and np.array_equal(arr, np.load(os.path.join(out, e["ref"]))), "CLI writes the logits")
    rc = subprocess.run([sys.executable, os.path.join(HERE, "reference.py"),
                         os.path.join(out, manifest["bad"][0]["path"]), "--tokens", "1",
                         "--out", npy], capture_output=True).returncode
    check(rc != 0, "CLI fails on a bad model")

    subprocess.run(["rm", "-rf", tmp])
    print(f"\n{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
