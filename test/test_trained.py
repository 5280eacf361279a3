#!/usr/bin/python3
"""test_trained.py - the bundled trained models against their PyTorch fixtures.

    /usr/bin/python3 test/test_trained.py PATH/TO/skipless [MODELS_DIR]

For every examples/models/kjv-*/ (MODELS_DIR defaults to examples/models):

1. `skipless logits` on the fixture's prompt ids reproduces the logits that
   examples/train/train.py computed with PyTorch when it trained the model
   (fixture_logits.npy): max |diff| / max |ref| < 1e-4.
2. The independent float64 reference (test/reference.py) agrees with the
   same fixture to the same bound.
3. Serial models: `skipless merge --remove qp` (Q and P removed), the merged
   model's logits still match the fixture, and greedy generation of 200
   tokens from the prompt gives exactly the same ids as the unmerged model.
   Whether those ids also equal PyTorch's greedy ids is printed as a note
   (fp32 summation order may legitimately flip a near-tie).

Prints each failing check, then "trained: N checks passed"; exits 1 on failure.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402

TOL = 1e-4
N_GEN = 200
failures = []
passed = 0


def check(name, ok, detail=""):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(name)
        print(f"FAIL: {name}: {detail}", file=sys.stderr)


def rel_err(got, ref):
    return float(np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def run(args):
    return subprocess.run(args, capture_output=True, text=True)


def cli_logits(binary, model, ids, out):
    r = run([binary, "logits", model, "--tokens", ",".join(map(str, ids)), "--out", out])
    if r.returncode:
        return None, r.stderr.strip()
    return np.load(out), ""


def cli_greedy(binary, model, ids):
    r = run([binary, "generate", model, "--tokens", ",".join(map(str, ids)),
             "-n", str(N_GEN), "--temp", "0", "--ids", "--no-eos-stop"])
    if r.returncode:
        return None, r.stderr.strip()
    try:
        return [int(t) for t in r.stdout.strip().split(",")], ""
    except ValueError:
        return None, f"generate output is not comma-separated ids: {r.stdout[:200]!r}"


def first_difference(a, b):
    """Index of the first position where the id lists differ (or the shorter length)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compare_logits(label, got, err, ref):
    """The fixture check: got (or None with the CLI's error) within TOL of ref."""
    check(f"{label} runs", got is not None, err)
    if got is not None:
        e = rel_err(got, ref)
        check(f"{label} vs PyTorch", e < TOL, f"relative error {e:.3g}")
        print(f"{label} vs PyTorch logits: relative error {e:.3g}")


def test_model(binary, model, tmp):
    name = os.path.basename(model)
    with open(os.path.join(model, "fixture.json")) as f:
        fx = json.load(f)
    ids = fx["prompt_ids"]
    ref = np.load(os.path.join(model, fx["logits"])).astype(np.float64)
    check(f"{name}: fixture shape", ref.shape[0] == len(ids) and len(fx["greedy_ids"]) == N_GEN,
          f"logits {ref.shape}, {len(ids)} prompt ids, {len(fx['greedy_ids'])} greedy ids")

    compare_logits(f"{name}: skipless logits",
                   *cli_logits(binary, model, ids, os.path.join(tmp, f"{name}.npy")), ref)
    compare_logits(f"{name}: float64 reference", reference.logits(model, ids), "", ref)

    greedy, err = cli_greedy(binary, model, ids)
    check(f"{name}: skipless generate runs", greedy is not None and len(greedy) == N_GEN, err)
    if greedy is not None:
        same = greedy == fx["greedy_ids"]
        print(f"{name}: note: skipless greedy ids {'equal' if same else 'differ from'} PyTorch's"
              + ("" if same else f" from token {first_difference(greedy, fx['greedy_ids'])} on"))

    with open(os.path.join(model, "config.json")) as f:
        if json.load(f).get("block_type", "serial") != "serial":
            return
    merged = os.path.join(tmp, f"{name}-merged")
    r = run([binary, "merge", model, merged, "--remove", "qp"])
    check(f"{name}: merge --remove qp", r.returncode == 0, r.stderr.strip())
    if r.returncode:
        return
    compare_logits(f"{name}: merged (no q_proj/o_proj) logits",
                   *cli_logits(binary, merged, ids, os.path.join(tmp, f"{name}-merged.npy")), ref)
    mgreedy, err = cli_greedy(binary, merged, ids)
    check(f"{name}: merged generate runs", mgreedy is not None, err)
    if greedy is not None and mgreedy is not None:
        check(f"{name}: merged greedy == unmerged greedy ({N_GEN} tokens)", mgreedy == greedy,
              f"first difference at token {first_difference(mgreedy, greedy)}")


def main():
    ap = argparse.ArgumentParser(prog="test_trained.py", description=__doc__.split("\n")[0])
    ap.add_argument("binary", metavar="PATH/TO/skipless")
    ap.add_argument("models_dir", metavar="MODELS_DIR", nargs="?",
                    default=os.path.join(os.path.dirname(HERE), "examples", "models"))
    a = ap.parse_args()
    binary, models_dir = a.binary, a.models_dir
    models = sorted(os.path.join(models_dir, m) for m in os.listdir(models_dir) if m.startswith("kjv-"))
    check("trained models present", len(models) > 0, f"no kjv-* model in {models_dir}")
    with tempfile.TemporaryDirectory(prefix="skl_trained.") as tmp:
        for model in models:
            test_model(binary, model, tmp)
    print(f"trained: {passed} checks passed" + (f", {len(failures)} FAILED" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
