#!/usr/bin/python3
"""The float64 reference judges the C merge without trusting it.

    /usr/bin/python3 test/test_merged_reference.py path/to/skipless MODELS_DIR

For every seeded model and every removal that applies, `skipless merge` writes a merged
model; test/reference.py (independent numpy code, absent projection = identity) computes
the merged model's logits in float64, which must equal the ORIGINAL model's reference
logits (relative error < 1e-5: the merged weights are float32-rounded).  Refusals must
exit with status 2.  At least one model must merge for each removal.
"""
import argparse, json, os, subprocess, sys, tempfile
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

ap = argparse.ArgumentParser(prog="test_merged_reference.py", description=__doc__.split("\n")[0])
ap.add_argument("cli", metavar="path/to/skipless")
ap.add_argument("root", metavar="MODELS_DIR")
cli, root = vars(ap.parse_args()).values()
manifest = json.load(open(os.path.join(root, "manifest.json")))
merged_count, failures, worst = {}, [], 0.0
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
for rm in ("qp", "kp", "vp", "q", "p"):
    if merged_count.get(rm, 0) < 2:
        failures.append(f"removal {rm} merged only {merged_count.get(rm, 0)} models")
for f in failures:
    print("FAIL", f)
print(f"merged-reference: {sum(merged_count.values())} merged models checked, worst relative error {worst:.2e}")
sys.exit(1 if failures else 0)
