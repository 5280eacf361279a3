#!/usr/bin/python3
"""The float64 reference judges the C merge without trusting it.

    /usr/bin/python3 test/test_merged_reference.py path/to/skipless MODELS_DIR

For every seeded model and every removal that applies, `skipless merge` writes a merged
model; test/reference.py (independent numpy code, absent projection = identity) computes
the merged model's logits in float64, which must equal the ORIGINAL model's reference
logits (relative error < 1e-5: the merged weights are float32-rounded).  Refusals must
exit with status 2.  At least one model must merge for each removal.

Quantized merges (`--dtype q8_0`, `--dtype q4_0`, alternately): every linear weight of the
result whose inputs are a multiple of 32 is quantized (the reference reads the
compressed-tensors layers and dequantizes them), and each dequantized weight lies within
the rounding of its grid (half a step for Q8_0, about a step for Q4_0's clamp) of the float32
merge's weight, which is the float64 merge rounded: the merge quantized its float64 result.
Their logits (`skipless logits`, prefill and --decode) match the reference's of the same
dequantized weights.
"""
import argparse, json, os, subprocess, sys, tempfile
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

# Q4_0's worst weight: the sign opposite the group's extreme m (q = -8), up to |m| = 8 |d|,
# clamped at q = 7 on the stored scale s = d (1 +- 2^-11): 8 |d| - 7 |s| <= (1 + 8 2^-11) |s|.
Q4_BOUND = 1.0 + 8 * 2.0 ** -11
ap = argparse.ArgumentParser(prog="test_merged_reference.py", description=__doc__.split("\n")[0])
ap.add_argument("cli", metavar="path/to/skipless")
ap.add_argument("root", metavar="MODELS_DIR")
cli, root = vars(ap.parse_args()).values()
manifest = json.load(open(os.path.join(root, "manifest.json")))
merged_count, quant_count, failures, worst = {}, {}, [], 0.0
with tempfile.TemporaryDirectory() as tmp:
    for e in manifest["models"]:
        ref = np.load(os.path.join(root, e["ref"]))
        for rm in ("qp", "kp", "vp", "q", "p"):
            out = os.path.join(tmp, f"{e['name']}_{rm}" + (".safetensors" if e["format"] == "file" else ""))
            r = subprocess.run([cli, "merge", os.path.join(root, e["path"]), out, "--remove", rm],
                               capture_output=True, text=True)
            if r.returncode != 0:
                if r.returncode != 2 or len(r.stderr.strip().splitlines()) != 1:
                    failures.append(f"{e['name']}/{rm}: exit {r.returncode}: {r.stderr.strip()}")
                continue
            got = reference.logits(out, e["tokens"])
            err = np.abs(got - ref).max() / np.abs(ref).max()
            worst = max(worst, err)
            if not err < 1e-5:
                failures.append(f"{e['name']}/{rm}: reference(merged) vs reference(original) {err:.3g}")
            merged_count[rm] = merged_count.get(rm, 0) + 1
            qdt = ("q8_0", "q4_0")[(len(failures) + sum(merged_count.values())) % 2]
            qout = out.replace(f"_{rm}", f"_{rm}_{qdt}")
            r = subprocess.run([cli, "merge", os.path.join(root, e["path"]), qout, "--remove", rm, "--dtype", qdt],
                               capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"{e['name']}/{rm} --dtype {qdt}: exit {r.returncode}: {r.stderr.strip()}")
                continue
            cfg_q, tq = reference.read_model_files(qout)
            _, tf = reference.read_model_files(out)
            storage = reference.quant_scheme(cfg_q)
            for name, wf in tf.items():
                module = name[:-len(".weight")]
                linear = name.endswith(".weight") and (module == "lm_head" or "_proj" in module)
                if not linear:
                    continue
                kind = storage(module, True)
                if (kind is None) != (wf.shape[1] % 32 != 0):
                    failures.append(f"{e['name']}/{rm} --dtype {qdt}: {module} stored as {kind}")
                    continue
                if kind is None:
                    continue
                wq = tq[name].reshape(wf.shape[0], -1, 32)
                step = np.abs(wq).max(axis=2, keepdims=True) / (127.0 if kind == "q8" else 8.0)
                err = np.abs(wq - wf.reshape(wq.shape)) - (0.5 if kind == "q8" else Q4_BOUND) * step
                if not np.all(err <= 1e-6 * np.abs(wf.reshape(wq.shape)) + 1e-12):
                    failures.append(f"{e['name']}/{rm} --dtype {qdt}: {module} off its grid by {err.max():.3g}")
            # its logits against the reference's of the same (dequantized) weights: prefill widens
            # them exactly (TEST_TOL); decode may round activations to int8 (test_quant.c's int8_tol)
            qref = reference.logits(qout, e["tokens"])
            for mode, tol in (([], 1e-4), (["--decode"], (4 * cfg_q["num_hidden_layers"] + 1) * 32 ** 0.5 / 254)):
                npy = os.path.join(tmp, "q.npy")
                r = subprocess.run([cli, "logits", qout, "--tokens", ",".join(map(str, e["tokens"])), "--out", npy]
                                   + mode, capture_output=True, text=True)
                err = np.abs(np.load(npy) - qref).max() / np.abs(qref).max() if r.returncode == 0 else float("inf")
                if not err < tol:
                    failures.append(f"{e['name']}/{rm} --dtype {qdt} logits {mode}: {err:.3g} (tolerance {tol:.3g})")
            quant_count[qdt] = quant_count.get(qdt, 0) + 1
for rm in ("qp", "kp", "vp", "q", "p"):
    if merged_count.get(rm, 0) < 2:
        failures.append(f"removal {rm} merged only {merged_count.get(rm, 0)} models")
for qdt in ("q8_0", "q4_0"):
    if quant_count.get(qdt, 0) < 5:
        failures.append(f"--dtype {qdt} checked on only {quant_count.get(qdt, 0)} merges")
for f in failures:
    print("FAIL", f)
print(f"merged-reference: {sum(merged_count.values())} merged models checked, worst relative error {worst:.2e}; "
      f"quantized merges {quant_count}")
sys.exit(1 if failures else 0)
