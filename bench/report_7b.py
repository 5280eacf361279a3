#!/usr/bin/python3
"""The paper's table, measured: summarise a `make bench-7b` run (bench/bench_7b.sh).

    /usr/bin/python3 bench/report_7b.py RUNS_DIR [PLOT.png [DOC.md]]

Reads from RUNS_DIR: run-NAME-ROUND.json (`skipless bench --json`, one model per process; NAME
7B-BF16, 7B-BF16-merged and S-F32, or 7B_L<n>-... for a scaled-down run), merge.txt (`skipless
merge --verify`), merge-mem.json (bench/peak_mem.py), dgemm-before.txt / dgemm-after.txt
(merge_bench's dgemm_gflops around the merge), info-orig.txt, cpu, started, params.  The decode
figures are those of bench/report.py (its summarise and speedups: medians over every repeat of
every round; the merge speedup the median over rounds of merged / original tokens/s, the two runs
of a round one after the other), plus:
  weights before -> after   the merge's count (linear layers and both embeddings: the paper's)
  bound                     bytes per token original / merged (skl_model_decode_bytes)
  BF16 / S-F32 GB/s         a 7B model's decode GB/s over shape S F32's in the same run
  merge GFLOP/s             docs/merge.md's flops, L ((2/3) d^3 + 8 d^2 e + 6 f d^2) + 2 V d^2,
                            over the merge's own time (`merge time`, which includes --verify)
  dgemm GFLOP/s             the mean of the dgemm rates measured right before and right after
Targets (issue 13): speedup >= 0.98 of its bound; each 7B BF16 decode moving >= 90 % of the bytes
per second of S-F32 decode.  Prints the table and the targets, writes RUNS_DIR/summary.json and
RUNS_DIR/table.md, draws PLOT (bench/plot.gp) when given and, with DOC, rewrites its section
between <!-- bench:7b:begin --> and <!-- bench:7b:end -->.
"""
import json, os, re, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import (fmt_table, load_runs, md_table, parse_args, read_text, replace_section,  # noqa: E402
                    speedups, summarise)

TARGET_SPEEDUP, TARGET_BF16 = 0.98, 0.90
PAPER = {"removed": "15 %", "speedup": "1.17x"}


def grab(text, pattern, what):
    m = re.search(pattern, text)
    if not m:
        sys.exit("report_7b: no %s in the merge's output" % what)
    return m.groups()


def merge_figures(out, j):
    text = read_text(os.path.join(out, "merge.txt"))
    wb, wa = map(int, grab(text, r"total weights: (\d+) -> (\d+)", "weight count"))
    cond, resid, secs = map(float, grab(text, r"max condition number (\S+), max solve residual (\S+), "
                                              r"merge time (\S+) s", "merge time"))
    verr = float(grab(text, r"max relative logit difference (\S+)", "verification")[0])
    with open(os.path.join(out, "merge-mem.json")) as f:
        mem = json.load(f)
    dgemm = [float(grab(read_text(os.path.join(out, "dgemm-%s.txt" % w)), r"dgemm_gflops (\S+)", "dgemm")[0])
             for w in ("before", "after")]
    d, f_, L, V = j["hidden_size"], j["intermediate_size"], j["num_hidden_layers"], j["vocab_size"]
    e = d // j["num_attention_heads"] * j["num_key_value_heads"]
    flops = L * (2 / 3 * d ** 3 + 8 * d * d * e + 6 * f_ * d * d) + 2 * V * d * d
    rate = flops / secs / 1e9
    dg = sum(dgemm) / 2
    return {"weights_before": wb, "weights_after": wa, "removed_share": 1 - wa / wb, "weights_ratio": wb / wa,
            "max_condition": cond, "max_residual": resid, "verify_error": verr, "merge_seconds": secs,
            "wall_seconds": mem["wall_seconds"], "peak_rss_anon_bytes": mem["peak_rss_anon_bytes"],
            "peak_vm_rss_bytes": mem["peak_vm_rss_bytes"], "max_rss_bytes": mem["max_rss_bytes"],
            "merge_flops": flops, "merge_gflops": rate, "dgemm_gflops_before": dgemm[0],
            "dgemm_gflops_after": dgemm[1], "dgemm_gflops": dg, "merge_dgemm_ratio": rate / dg}


def main():
    out, plot, doc = parse_args(__doc__)
    runs, _ = load_runs(out)
    names = sorted(runs, key=lambda n: (n.startswith("S-"), n.endswith("-merged")))
    if len(names) != 3 or not names[1].endswith("-merged") or names[2] != "S-F32":
        sys.exit("report_7b: need run-*.json of a 7B model, its merged form and S-F32 in %s, found %s" % (out, names))
    rows = [summarise(n, runs[n]) for n in names]
    for r in rows:  # all the weights in their stored dtypes (skl_model_weight_bytes), not in summarise's rows
        r["weight_bytes"] = runs[r["name"]][0]["weight_bytes"]
    orig, merged, s = rows
    sp = speedups(rows, {})[0]
    mg = merge_figures(out, runs[names[0]][0])
    layers = runs[names[0]][0]["num_hidden_layers"]
    scaled = "" if layers == 32 else " (scaled down: %d layers)" % layers
    gb = lambda b: "%.2f GB" % (b / 1e9)

    h = ["", "before (original)", "after (merged)", "after / before", "paper"]
    t = [["weights (linear layers and embeddings)", "{:,}".format(mg["weights_before"]),
          "{:,}".format(mg["weights_after"]), "%.1f %% removed" % (100 * mg["removed_share"]), PAPER["removed"]],
         ["weights in memory", gb(orig["weight_bytes"]), gb(merged["weight_bytes"]),
          "%.3f" % (merged["weight_bytes"] / orig["weight_bytes"]), ""],
         ["bytes read per decode token", gb(orig["bytes_per_token"]), gb(merged["bytes_per_token"]),
          "bound %.3fx" % sp["bound"], ""],
         ["decode tokens/s", "%.3f" % orig["decode_tokens_per_s"], "%.3f" % merged["decode_tokens_per_s"],
          "speedup %.3fx (%.3f of the bound)" % (sp["speedup"], sp["speedup_over_bound"]), PAPER["speedup"]],
         ["decode GB/s", "%.2f" % orig["decode_gb_per_s"], "%.2f" % merged["decode_gb_per_s"], "", ""],
         ["% of the ceiling (its own weights, between steps)", "%.1f %%" % (100 * orig["decode_ceiling_ratio"]),
          "%.1f %%" % (100 * merged["decode_ceiling_ratio"]), "", ""],
         ["% of a fresh-buffer read (same run)", "%.1f %% of %.2f GB/s" % (100 * orig["decode_buffer_ratio"],
                                                                      orig["buffer_gb_per_s"]),
          "%.1f %% of %.2f GB/s" % (100 * merged["decode_buffer_ratio"], merged["buffer_gb_per_s"]), "", ""],
         ["%% of S-F32 decode GB/s (same run: %.2f GB/s)" % s["decode_gb_per_s"],
          "%.1f %%" % (100 * orig["decode_gb_per_s"] / s["decode_gb_per_s"]),
          "%.1f %%" % (100 * merged["decode_gb_per_s"] / s["decode_gb_per_s"]), "", ""],
         ["weights on 2 MiB pages (min over rounds)",
          *["n/a" if r["huge_page_share_min"] is None else "%.0f %%" % (100 * r["huge_page_share_min"])
            for r in (orig, merged)], "", ""]]
    hm = ["merge", "wall", "merge time (with verify)", "peak RssAnon", "max RSS", "GFLOP/s", "dgemm GFLOP/s",
          "ratio", "max condition", "max residual", "verify error"]
    tm = [["--remove qp --dtype bf16 --verify", "%.1f s" % mg["wall_seconds"], "%.1f s" % mg["merge_seconds"],
           gb(mg["peak_rss_anon_bytes"]), gb(mg["max_rss_bytes"]), "%.1f" % mg["merge_gflops"],
           "%.1f (%.1f, %.1f)" % (mg["dgemm_gflops"], mg["dgemm_gflops_before"], mg["dgemm_gflops_after"]),
           "%.2f" % mg["merge_dgemm_ratio"], "%.4g" % mg["max_condition"], "%.3g" % mg["max_residual"],
           "%.3g" % mg["verify_error"]]]
    checks = [("merged speedup >= %.2f of its bound" % TARGET_SPEEDUP, sp["speedup_over_bound"] >= TARGET_SPEEDUP,
               "%.3fx of %.3fx: %.3f" % (sp["speedup"], sp["bound"], sp["speedup_over_bound"]))]
    for r in (orig, merged):
        x = r["decode_gb_per_s"] / s["decode_gb_per_s"]
        checks.append(("%s decode GB/s >= %.0f %% of S-F32's" % (r["name"], 100 * TARGET_BF16), x >= TARGET_BF16,
                       "%.2f / %.2f GB/s: %.1f %%" % (r["decode_gb_per_s"], s["decode_gb_per_s"], 100 * x)))
    tc = [[c[0], c[2], "met" if c[1] else "MISSED"] for c in checks]

    params = read_text(os.path.join(out, "params"))
    head = "%s%s, %s, `%s`; %s" % ("The paper's table, measured", scaled, read_text(os.path.join(out, "started")),
                                  read_text(os.path.join(out, "cpu")), params)
    print(head + "\n")
    for hh, tt in ((h, t), (hm, tm), (["target", "measured", ""], tc)):
        print(fmt_table(hh, tt) + "\n")
    md = "\n\n".join(md_table(hh, tt) for hh, tt in ((h, t), (hm, tm), (["target", "measured", ""], tc)))
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"params": params, "cpu": read_text(os.path.join(out, "cpu")), "models": rows,
                   "merge_speedup": sp, "merge": mg,
                   "targets": [{"target": c[0], "met": c[1], "measured": c[2]} for c in checks]}, f, indent=2)
    if plot:
        dat = os.path.join(out, "plot.dat")
        with open(dat, "w") as f:  # bench/plot.gp's columns
            for r, label in ((orig, "original"), (merged, "merged (no q, o)")):
                f.write('"%s %s" %.4f %.4f %.4f\n' % (r["name"].split("-")[0].replace("_", " "), label,
                                                     r["decode_tokens_per_s"], r["decode_bound_tokens_per_s"],
                                                     r["decode_ceiling_ratio"]))
        title = ("7B-shaped BF16 decode%s, %d threads, %s: speedup %.3fx, bound %.3fx" % (
            scaled, orig["threads"], read_text(os.path.join(out, "cpu")), sp["speedup"], sp["bound"])).replace("_", " ")
        gp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plot.gp")
        subprocess.run(["gnuplot", "-e", "datafile='%s'; outfile='%s'; plottitle='%s'; n=2; ymax=%g" % (
            dat, plot, title, 1.3 * max(orig["decode_bound_tokens_per_s"], merged["decode_bound_tokens_per_s"])), gp],
                       check=True)
        print("plot: %s" % plot)
    print("summary: %s, %s" % (os.path.join(out, "summary.json"), os.path.join(out, "table.md")))
    if doc:
        with open(doc) as f:
            text = f.read()
        img = ("\n\n![decode tokens/s, original and merged](%s)" % os.path.relpath(plot, os.path.dirname(doc))
               if plot else "")
        text = replace_section(text, "7b", "Measured %s on `%s` by `make bench-7b` (%s).\n\n%s%s\n" % (
            read_text(os.path.join(out, "started")), read_text(os.path.join(out, "cpu")), params, md, img))
        with open(doc + ".tmp", "w") as f:
            f.write(text)
        os.replace(doc + ".tmp", doc)
        print("updated: %s" % doc)


if __name__ == "__main__":
    main()
