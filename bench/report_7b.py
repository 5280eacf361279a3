#!/usr/bin/python3
"""The paper's table, measured: summarise a `make bench-7b` run (bench/bench_7b.sh).

    /usr/bin/python3 bench/report_7b.py RUNS_DIR [PLOT.png [DOC.md]]

Reads from RUNS_DIR: ystk-NAME-ROUND.json (`skipless bench MODEL --compare S-F32 --json`, one 7B
model per process; NAME 7B-BF16 and 7B-BF16-merged, or 7B_L<n>-... for a scaled-down run),
pair-7B_L<p>-BF16-1.json (`skipless bench ORIG --compare MERGED` of the p-block cut; optional),
merge.txt (`skipless merge --verify`), verify-cut-bf16.txt / verify-cut-f32.txt (the merge of the
short cut; optional), merge-mem.json (bench/peak_mem.py), dgemm-before.txt / dgemm-after.txt
(merge_bench's dgemm_gflops around the merge), cpu, started, params.  The per-model decode figures
are bench/report.py's (summarise: medians over every repeat of every round), and:
  weights before -> after   the merge's count (linear layers and both embeddings: the paper's)
  bound                     bytes per token original / merged (skl_model_decode_bytes)
  speedup, one per process  the median over rounds of merged / original tokens/s (the two runs of a
                            round one after the other: the machine's bandwidth moves between them)
  speedup through S-F32     the median over every repeat of every round of the merged model's
                            tokens/s over S-F32's in the same repeat, over the same for the original
                            (S-F32 steps in alternation with the 7B model, so what the machine's
                            bandwidth does to one it does to the other), with a 90 % bootstrap
                            interval (repeats resampled, seeded); per round beside it
  speedup, cut together     the p-block original and merged models decoded in alternation in one
                            process: the median of the per-repeat ratios (bench.c's speedup)
  BF16 / S-F32 GB/s         per repeat, the 7B model's decode GB/s over S-F32's in the same
                            seconds; the median over every repeat of every round
  merge GFLOP/s             docs/merge.md's flops, L ((2/3) d^3 + 8 d^2 e + 6 f d^2) + 2 V d^2,
                            over the merge's own time (`merge time`, which includes --verify)
  dgemm GFLOP/s             the mean of the dgemm rates measured right before and right after
Targets (issue 13): speedup >= 0.98 of its bound (checked on the two measurements that share their
seconds: through S-F32, and the cut together); each 7B BF16 decode moving >= 90 % of the bytes per
second of S-F32 decode.  Prints the table and the targets, writes RUNS_DIR/summary.json and
RUNS_DIR/table.md, draws PLOT (bench/plot.gp) when given and, with DOC, rewrites its section
between <!-- bench:7b:begin --> and <!-- bench:7b:end -->.
"""
import glob, json, math, os, random, re, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt_table, md_table, parse_args, read_text, replace_section, summarise  # noqa: E402

TARGET_SPEEDUP, TARGET_BF16 = 0.98, 0.90
PAPER = {"removed": "15 %", "speedup": "1.17x"}


def grab(text, pattern, what):
    m = re.search(pattern, text)
    if not m:
        sys.exit("report_7b: no %s in the merge's output" % what)
    return m.groups()


def verify_error(text):
    """The merge's verification: the relative logit difference, or NaN when inconclusive."""
    if re.search(r"^verification: inconclusive", text, re.M):
        return math.nan
    return float(grab(text, r"max relative logit difference (\S+)", "verification")[0])


def merge_figures(out, j):
    text = read_text(os.path.join(out, "merge.txt"))
    wb, wa = map(int, grab(text, r"total weights: (\d+) -> (\d+)", "weight count"))
    cond, resid, secs = map(float, grab(text, r"max condition number (\S+), max solve residual (\S+), "
                                              r"merge time (\S+) s", "merge time"))
    verr = verify_error(text)
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


def load_beside(out):
    """{name: [7B json of round 1, ...]} and the S-F32 jsons [(name, round, json)], from ystk-*.json."""
    runs, yard = {}, []
    for path in glob.glob(os.path.join(out, "ystk-*.json")):
        m = re.match(r"ystk-(.+)-(\d+)\.json$", os.path.basename(path))
        with open(path) as f:
            j = json.load(f)
        big, s = j["models"]
        big["round"] = s["round"] = int(m.group(2))
        runs.setdefault(m.group(1), []).append(big)
        yard.append((m.group(1), int(m.group(2)), s))
    for rs in runs.values():
        rs.sort(key=lambda j: j["round"])
    return runs, yard


def beside_ratios(big, s):
    """Per repeat: the 7B model's decode tokens/s and GB/s over S-F32's, stepping in alternation."""
    tps = [sd / bd for bd, sd in zip(big["decode_seconds_runs"], s["decode_seconds_runs"])]  # same gen
    return tps, [t * big["bytes_per_token"] / s["bytes_per_token"] for t in tps]


def fnum(x, f="%.3f"):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f % x


def main():
    out, plot, doc = parse_args(__doc__)
    runs, yard = load_beside(out)
    names = sorted(runs, key=lambda n: n.endswith("-merged"))
    if len(names) != 2 or not names[1].endswith("-merged") or names[1] != names[0] + "-merged":
        sys.exit("report_7b: need ystk-*.json of a 7B model and its merged form in %s, found %s" % (out, names))
    rows = [summarise(n, runs[n]) for n in names]
    for r in rows:  # all the weights in their stored dtypes (skl_model_weight_bytes), not in summarise's rows
        r["weight_bytes"] = runs[r["name"]][0]["weight_bytes"]
    orig, merged = rows
    s_row = summarise("S-F32", sorted([y[2] for y in yard], key=lambda j: j["round"]))
    side = {n: {} for n in names}  # name -> round -> (tps ratios, GB/s ratios) against S-F32
    for n, rnd, sj in yard:
        side[n][rnd] = beside_ratios(next(j for j in runs[n] if j["round"] == rnd), sj)
    rounds = sorted(set(side[names[0]]) & set(side[names[1]]))
    bound = orig["bytes_per_token"] / merged["bytes_per_token"]
    direct = [merged["by_round"][k]["decode_tokens_per_s"] / orig["by_round"][k]["decode_tokens_per_s"]
              for k in rounds]
    through = [statistics.median(side[names[1]][k][0]) / statistics.median(side[names[0]][k][0]) for k in rounds]
    # pooled: every repeat of every round (the rounds of the two models are minutes apart anyway), with a
    # 90 % bootstrap interval (the repeats of each model resampled; seeded)
    pool = [[x for k in rounds for x in side[n][k][0]] for n in names]
    pooled = statistics.median(pool[1]) / statistics.median(pool[0])
    rng = random.Random(13)
    boot = sorted(statistics.median(rng.choices(pool[1], k=len(pool[1]))) /
                  statistics.median(rng.choices(pool[0], k=len(pool[0]))) for _ in range(2000))
    ci = (boot[int(0.05 * len(boot))], boot[int(0.95 * len(boot)) - 1])
    gbs = {n: statistics.median([x for k in side[n] for x in side[n][k][1]]) for n in names}
    sp = {"bound": bound, "direct": statistics.median(direct), "direct_rounds": direct,
          "through_s": pooled, "through_s_interval_90": ci, "through_s_rounds": through,
          "through_s_repeats": {n: pool[i] for i, n in enumerate(names)}}
    pair = None
    pf = sorted(glob.glob(os.path.join(out, "pair-*.json")))
    if pf:
        with open(pf[0]) as f:
            pj = json.load(f)
        pair = {"layers": pj["models"][0]["num_hidden_layers"], "speedup": pj["speedup"],
                "bound": pj["speedup_bound"], "runs": pj["speedup_runs"],
                "at_equal_ceiling": pj["speedup_at_equal_ceiling"],
                "tokens_per_s": [pj["models"][0]["decode_tokens_per_s"], pj["models"][1]["decode_tokens_per_s"]],
                "models": pj["models"]}
    cut = {}
    for dt in ("bf16", "f32"):
        pth = os.path.join(out, "verify-cut-%s.txt" % dt)
        if os.path.exists(pth):
            text = read_text(pth)
            cut[dt] = {"verify_error": verify_error(text)}
    mg = merge_figures(out, runs[names[0]][0])
    layers = runs[names[0]][0]["num_hidden_layers"]
    scaled = "" if layers == 32 else " (scaled down: %d layers)" % layers
    gb = lambda b: "%.2f GB" % (b / 1e9)
    of_bound = lambda x, b: "%.3fx (%.3f of its bound %.3fx)" % (x, x / b, b)

    h = ["", "before (original)", "after (merged)", "after / before", "paper"]
    t = [["weights (linear layers and embeddings)", "{:,}".format(mg["weights_before"]),
          "{:,}".format(mg["weights_after"]), "%.1f %% removed" % (100 * mg["removed_share"]), PAPER["removed"]],
         ["weights in memory", gb(orig["weight_bytes"]), gb(merged["weight_bytes"]),
          "%.3f" % (merged["weight_bytes"] / orig["weight_bytes"]), ""],
         ["bytes read per decode token", gb(orig["bytes_per_token"]), gb(merged["bytes_per_token"]),
          "bound %.3fx" % bound, ""],
         ["decode tokens/s (S-F32 stepping beside)", "%.3f" % orig["decode_tokens_per_s"],
          "%.3f" % merged["decode_tokens_per_s"], "", PAPER["speedup"]],
         ["speedup, one 7B model per process, median of %d rounds" % len(rounds), "", "",
          of_bound(sp["direct"], bound), ""],
         ["speedup through S-F32 (steps alternating with each 7B model; all %d + %d repeats)" % (
             len(pool[0]), len(pool[1])), "", "",
          of_bound(pooled, bound) + ", 90 %% interval %.3f-%.3f" % (ci[0] / bound, ci[1] / bound), ""]]
    if pair:
        t.append(["speedup, %d-block cuts in memory together, steps alternating (%d repeats)" % (
            pair["layers"], len(pair["runs"])), "%.3f" % pair["tokens_per_s"][0], "%.3f" % pair["tokens_per_s"][1],
            of_bound(pair["speedup"], pair["bound"]), ""])
    t += [["decode GB/s", "%.2f" % orig["decode_gb_per_s"], "%.2f" % merged["decode_gb_per_s"], "", ""],
          ["% of the ceiling (its own weights, between steps)", "%.1f %%" % (100 * orig["decode_ceiling_ratio"]),
           "%.1f %%" % (100 * merged["decode_ceiling_ratio"]), "", ""],
          ["% of a fresh-buffer read (same run)", "%.1f %% of %.2f GB/s" % (100 * orig["decode_buffer_ratio"],
                                                                       orig["buffer_gb_per_s"]),
           "%.1f %% of %.2f GB/s" % (100 * merged["decode_buffer_ratio"], merged["buffer_gb_per_s"]), "", ""],
          ["%% of S-F32 decode GB/s in the same seconds (S-F32: %.2f GB/s)" % s_row["decode_gb_per_s"],
           "%.1f %%" % (100 * gbs[names[0]]), "%.1f %%" % (100 * gbs[names[1]]), "", ""],
          ["weights on 2 MiB pages (min over rounds)",
           *["n/a" if r["huge_page_share_min"] is None else "%.0f %%" % (100 * r["huge_page_share_min"])
             for r in (orig, merged)], "", ""]]
    hm = ["merge", "wall", "merge time (with verify)", "peak RssAnon", "max RSS", "GFLOP/s", "dgemm GFLOP/s",
          "ratio", "max condition", "max residual", "verify error"]
    tm = [["--remove qp --dtype bf16 --verify", "%.1f s" % mg["wall_seconds"], "%.1f s" % mg["merge_seconds"],
           gb(mg["peak_rss_anon_bytes"]), gb(mg["max_rss_bytes"]), "%.1f" % mg["merge_gflops"],
           "%.1f (%.1f, %.1f)" % (mg["dgemm_gflops"], mg["dgemm_gflops_before"], mg["dgemm_gflops_after"]),
           "%.2f" % mg["merge_dgemm_ratio"], "%.4g" % mg["max_condition"], "%.3g" % mg["max_residual"],
           "inconclusive (activations overflow or vanish)" if math.isnan(mg["verify_error"])
           else "%.3g" % mg["verify_error"]]]
    for dt, c in sorted(cut.items()):
        tm.append(["cut of the first blocks, --dtype %s --verify" % dt, "", "", "", "", "", "", "", "", "",
                   fnum(c["verify_error"], "%.3g")])
    checks = [("merged speedup through S-F32 >= %.2f of its bound" % TARGET_SPEEDUP,
               sp["through_s"] / bound >= TARGET_SPEEDUP,
               of_bound(sp["through_s"], bound) + "; 90 %% interval %.3f-%.3f of it" % (ci[0] / bound, ci[1] / bound))]
    if pair:
        checks.append(("merged speedup, %d-block cuts together, >= %.2f of its bound" % (pair["layers"], TARGET_SPEEDUP),
                       pair["speedup"] / pair["bound"] >= TARGET_SPEEDUP, of_bound(pair["speedup"], pair["bound"])))
    for n in names:
        checks.append(("%s decode GB/s >= %.0f %% of S-F32's (same seconds)" % (n, 100 * TARGET_BF16),
                       gbs[n] >= TARGET_BF16, "%.1f %%" % (100 * gbs[n])))
    tc = [[c[0], c[2], "met" if c[1] else "MISSED"] for c in checks]

    params = read_text(os.path.join(out, "params"))
    head = "%s%s, %s, `%s`; %s" % ("The paper's table, measured", scaled, read_text(os.path.join(out, "started")),
                                  read_text(os.path.join(out, "cpu")), params)
    print(head + "\n")
    tables = ((h, t), (hm, tm), (["target", "measured", ""], tc))
    for hh, tt in tables:
        print(fmt_table(hh, tt) + "\n")
    rounds_line = ("Per round, speedup one model per process: %s; through S-F32: %s. Per repeat, tokens/s over "
                   "S-F32's, original: %s; merged: %s." % (
        ", ".join("%.3f" % x for x in direct), ", ".join("%.3f" % x for x in through),
        ", ".join("%.4f" % x for x in pool[0]), ", ".join("%.4f" % x for x in pool[1])) +
        (" Cuts together, per repeat: %s." % ", ".join("%.3f" % x for x in pair["runs"]) if pair else ""))
    print(rounds_line + "\n")
    md = "\n\n".join(md_table(hh, tt) for hh, tt in tables) + "\n\n" + rounds_line
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"params": params, "cpu": read_text(os.path.join(out, "cpu")), "models": rows + [s_row],
                   "merge_speedup": sp, "pair": pair, "gb_per_s_over_s_f32": gbs, "merge": mg, "verify_cut": cut,
                   "targets": [{"target": c[0], "met": c[1], "measured": c[2]} for c in checks]}, f, indent=2)
    if plot:
        # the models that shared their seconds: the cuts decoded in alternation when there are any (the two
        # 7B models' runs are minutes apart, on a bandwidth that moves by a third), else the 7B models
        dat = os.path.join(out, "plot.dat")
        if pair:
            pm = pair["models"]
            bars = [("%d-block original" % pair["layers"], pm[0]), ("%d-block merged (no q, o)" % pair["layers"], pm[1])]
            bars = [(lbl, m["decode_tokens_per_s"], m["ceiling_gb_per_s"] * 1e9 / m["bytes_per_token"],
                     m["decode_ceiling_ratio"]) for lbl, m in bars]
            title = ("%d-block cuts of the 7B shape, BF16, decoded in alternation, %d threads, %s: speedup %.3fx, "
                     "bound %.3fx" % (pair["layers"], orig["threads"], read_text(os.path.join(out, "cpu")),
                                      pair["speedup"], pair["bound"]))
        else:
            bars = [("%s %s" % (r["name"].split("-")[0].replace("_", " "), label), r["decode_tokens_per_s"],
                     r["decode_bound_tokens_per_s"], r["decode_ceiling_ratio"])
                    for r, label in ((orig, "original"), (merged, "merged (no q, o)"))]
            title = ("7B-shaped BF16 decode%s, %d threads, %s: speedup %.3fx through S-F32, bound %.3fx" % (
                scaled, orig["threads"], read_text(os.path.join(out, "cpu")), sp["through_s"], bound))
        title = title.replace("_", " ")
        with open(dat, "w") as f:  # bench/plot.gp's columns
            for lbl, tps, btps, ratio in bars:
                f.write('"%s" %.4f %.4f %.4f\n' % (lbl, tps, btps, ratio))
        gp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plot.gp")
        subprocess.run(["gnuplot", "-e", "datafile='%s'; outfile='%s'; plottitle='%s'; n=2; ymax=%g" % (
            dat, plot, title, 1.3 * max(b[2] for b in bars)), gp],
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
