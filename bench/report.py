#!/usr/bin/python3
"""Summarise `skipless bench --json` results written by bench/run.sh.

    /usr/bin/python3 bench/report.py OUT_DIR [PLOT.png [DOC.md]]

Reads OUT_DIR/pair-NAME-ROUND.json (`skipless bench NAME --compare NAME-merged
--json`; NAME = SHAPE-DTYPE) or OUT_DIR/run-NAME-ROUND.json (one model each,
NAME = SHAPE-DTYPE[-merged]) and OUT_DIR/blas.json.  Each figure is the median over every repeat of every round
(the per-repeat values are in the JSON), with the definitions of
src/cli/bench.c:
  decode GB/s      = bytes_per_token * decode tokens/s
  % of ceiling     = median over all repeats of (that repeat's decode GB/s / the
                     ceiling read before every decode step of that repeat: by default
                     the weights a decode step reads, in the page cache)
  % buffer         = decode GB/s / the median rate of a fresh 1 GiB buffer read at the
                     start of each run (placement of the weights' pages not matched)
  bound tokens/s   = ceiling GB/s / bytes_per_token
  prefill GFLOP/s  = prefill_flops * prefill tokens/s / prompt_len
  % sgemm          = median over all repeats of (that repeat's prefill GFLOP/s / the
                     sgemm rate over 4 runs right before and 4 right after it)
  merge speedup    = merged / unmerged decode tokens/s, paired: with pair files the
                     median over every repeat of every round of the per-repeat ratio
                     (the two models' steps alternated in one process); with run files
                     the median over rounds of the ratio of the two runs' medians; against its
                     bound bytes_per_token unmerged / merged (within 3 %:
                     |speedup / bound - 1| <= 0.03); "pooled": the ratio of the
                     two models' medians over all rounds; "at equal ceiling":
                     bound * the median over rounds of (merged % of ceiling /
                     unmerged % of ceiling), the speedup had both run at the same
                     ceiling (a diagnostic for shared machines)
Prints the tables, writes OUT_DIR/summary.json, OUT_DIR/table.md (markdown, for
docs/performance.md) and OUT_DIR/plot.dat, and draws PLOT with gnuplot
(bench/plot.gp) when given; $BENCH_NOTE, if set, is appended to the plot title
and put above the tables.  With DOC.md, rewrites its sections between
<!-- bench:blas:begin/end --> and <!-- bench:results:begin/end --> markers
(docs/performance.md) with the BLAS table and the result tables.
"""
import argparse, glob, json, os, re, statistics, subprocess, sys

TARGET_F32, TARGET_F16, TARGET_MERGE, TARGET_PREFILL = 0.92, 0.85, 0.03, 0.70


def load_runs(out):
    """({name: [json of round 1, round 2, ...]}, {name: [pair json, ...]}): each model json with its
    "round" number added; pair-NAME-ROUND.json (bench --compare) gives NAME and NAME-merged."""
    runs, pairs = {}, {}
    for path in glob.glob(os.path.join(out, "run-*.json")) + glob.glob(os.path.join(out, "pair-*.json")):
        m = re.match(r"(run|pair)-(.+)-(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            j = json.load(f)
        rnd, name = int(m.group(3)), m.group(2)
        models = [(name, j)]
        if m.group(1) == "pair":
            models = [(name, j["models"][0]), (name + "-merged", j["models"][1])]
            j["round"] = rnd
            pairs.setdefault(name, []).append(j)
        for n, mj in models:
            mj["round"] = rnd
            runs.setdefault(n, []).append(mj)
    for rs in list(runs.values()) + list(pairs.values()):
        rs.sort(key=lambda j: j["round"])
    return runs, pairs


def ratio_runs(j):
    """Per-repeat decode GB/s over the ceiling of that repeat (bench.c's decode_ceiling_ratio_runs)."""
    if "decode_ceiling_ratio_runs" in j:
        return j["decode_ceiling_ratio_runs"]
    return [j["bytes_per_token"] * j["gen"] / d / 1e9 / c
            for d, c in zip(j["decode_seconds_runs"], j["ceiling_gb_per_s_runs"])]


def summarise(name, rs):
    """Pool the per-repeat values of all rounds of one model; medians; figures."""
    j0 = rs[0]
    for j in rs:
        for k in ("bytes_per_token", "prompt_len", "gen", "threads", "dtype", "prefill_flops"):
            if j[k] != j0[k]:
                sys.exit("report: %s: rounds disagree on %s" % (name, k))
    gen, plen, nbytes = j0["gen"], j0["prompt_len"], j0["bytes_per_token"]
    decode = [gen / s for j in rs for s in j["decode_seconds_runs"]]
    prefill = [plen / s for j in rs for s in j["prefill_seconds_runs"]]
    ceiling = statistics.median([c for j in rs for c in j["ceiling_gb_per_s_runs"]])
    sgemm = statistics.median([g for j in rs for g in j["sgemm_gflops_runs"]])
    d, p = statistics.median(decode), statistics.median(prefill)
    ratio = statistics.median([x for j in rs for x in ratio_runs(j)])
    by_round = {j["round"]: {"decode_tokens_per_s": statistics.median([gen / s for s in j["decode_seconds_runs"]]),
                             "decode_ceiling_ratio": statistics.median(ratio_runs(j))} for j in rs}
    shape, dtype_file = name.split("-")[0], name.split("-")[1]
    sources = {j.get("ceiling_source", "buffer") for j in rs}
    buf = [j["buffer_read_gb_per_s"] for j in rs if "buffer_read_gb_per_s" in j]
    buffer_gbps = statistics.median(buf) if buf else None
    return {
        "name": name, "shape": shape, "file_dtype": dtype_file, "dtype": j0["dtype"],
        "merged": j0["merged"], "absent_projections": j0["absent_projections"],
        "threads": j0["threads"], "blas_core": j0["blas_core"], "n_samples": len(decode),
        "n_rounds": len(rs), "repeat": j0["repeat"], "prompt_len": plen, "gen": gen,
        "bytes_per_token": nbytes,
        "decode_tokens_per_s": d, "decode_gb_per_s": nbytes * d / 1e9,
        "ceiling_gb_per_s": ceiling, "decode_ceiling_ratio": ratio, "by_round": by_round,
        "ceiling_source": sources.pop() if len(sources) == 1 else "mixed",
        "buffer_gb_per_s": buffer_gbps,
        "decode_buffer_ratio": nbytes * d / 1e9 / buffer_gbps if buffer_gbps else None,
        "huge_page_share_min": min([j["weights_huge_page_share"] for j in rs
                                    if j.get("weights_huge_page_share") is not None], default=None),
        "decode_bound_tokens_per_s": ceiling * 1e9 / nbytes,
        "decode_tokens_per_s_min": min(decode), "decode_tokens_per_s_max": max(decode),
        "prefill_tokens_per_s": p, "prefill_gflops": j0["prefill_flops"] * p / plen / 1e9,
        "sgemm_gflops": sgemm, "sgemm_shape": j0["sgemm_shape"],
        # the median of the per-repeat ratios (sgemm run around each prefill) when the JSON has them
        "prefill_sgemm_ratio": (statistics.median([x for j in rs for x in j["prefill_sgemm_ratio_runs"]])
                                if all("prefill_sgemm_ratio_runs" in j for j in rs)
                                else j0["prefill_flops"] * p / plen / 1e9 / sgemm),
    }


def speedups(rows, pairs):
    by = {r["name"]: r for r in rows}
    out = []
    for r in rows:
        if r["merged"] or r["name"] + "-merged" not in by:
            continue
        m = by[r["name"] + "-merged"]
        rounds = sorted(set(r["by_round"]) & set(m["by_round"]))
        if not rounds:
            continue
        b = r["bytes_per_token"] / m["bytes_per_token"]
        ps = pairs.get(r["name"])
        if ps:
            # bench --compare: the two models decoded in alternation within every repeat; the median of
            # all per-repeat ratios of every round
            s = statistics.median([x for p in ps for x in p["speedup_runs"]])
            sn = b * statistics.median([y / x for p in ps for x, y in zip(p["models"][0]["decode_ceiling_ratio_runs"],
                                                                       p["models"][1]["decode_ceiling_ratio_runs"])])
        else:
            # separate runs, paired by round (the merged run followed the unmerged one)
            s = statistics.median([m["by_round"][k]["decode_tokens_per_s"] / r["by_round"][k]["decode_tokens_per_s"]
                                   for k in rounds])
            # the same with each decode rate taken relative to the ceiling read between its steps
            sn = b * statistics.median([m["by_round"][k]["decode_ceiling_ratio"] /
                                        r["by_round"][k]["decode_ceiling_ratio"] for k in rounds])
        pooled = m["decode_tokens_per_s"] / r["decode_tokens_per_s"]
        out.append({"shape": r["shape"], "file_dtype": r["file_dtype"], "dtype": r["dtype"],
                    "merged_dtype": m["dtype"], "speedup": s, "bound": b, "speedup_over_bound": s / b,
                    "speedup_pooled": pooled, "speedup_at_equal_ceiling": sn, "n_rounds": len(rounds),
                    "within_3_percent": abs(s / b - 1) <= TARGET_MERGE,
                    "bytes_before": r["bytes_per_token"], "bytes_after": m["bytes_per_token"]})
    return out


def machine():
    info = {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "L2 cache", "L3 cache", "Hypervisor vendor"):
                info[k.strip()] = v.strip()
        flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("Flags")), [])
        info["AVX-512"] = " ".join(f for f in flags if f.startswith("avx512"))
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        with open("/proc/meminfo") as f:
            info["memory"] = "%.0f GiB" % (int(f.readline().split()[1]) / 2**20)
    except OSError:
        pass
    return info


def fmt_table(header, rows):
    w = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).rjust(n) for x, n in zip(r, w))
    return "\n".join([line(header), line(["-" * n for n in w])] + [line(r) for r in rows])


def md_table(header, rows):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] +
                     ["| " + " | ".join(str(x) for x in r) + " |" for r in rows])


def parse_args(usage):
    """OUT_DIR [PLOT.png [DOC.md]] from the command line: (out, plot or None, doc or None); usage on a wrong count."""
    ap = argparse.ArgumentParser(description=usage.split("\n")[0], usage="%(prog)s OUT_DIR [PLOT.png [DOC.md]]")
    ap.add_argument("out", metavar="OUT_DIR")
    ap.add_argument("plot", metavar="PLOT.png", nargs="?")
    ap.add_argument("doc", metavar="DOC.md", nargs="?")
    a = ap.parse_args()
    return a.out, a.plot or None, a.doc or None


def main():
    out, plot, doc = parse_args(__doc__)
    runs, pairs = load_runs(out)
    if not runs:
        sys.exit("report: no run-*.json or pair-*.json in %s" % out)
    order = lambda n: (n.split("-")[0] != "S", n.split("-")[1] != "F32", n.endswith("-merged"))
    rows = [summarise(n, runs[n]) for n in sorted(runs, key=order)]
    sp = speedups(rows, pairs)
    blas = None
    if os.path.exists(os.path.join(out, "blas.json")):
        with open(os.path.join(out, "blas.json")) as f:
            blas = json.load(f)

    h1 = ["model", "in memory", "2 MiB pages", "MB/token", "decode tok/s", "GB/s", "ceiling GB/s", "ceiling reads",
          "% ceiling", "bound tok/s", "fresh buffer GB/s", "% buffer", "prefill tok/s", "GFLOP/s", "sgemm GFLOP/s",
          "% sgemm"]
    t1 = [[r["name"], r["dtype"],
           "n/a" if r["huge_page_share_min"] is None else "%.0f %%" % (100 * r["huge_page_share_min"]),
           "%.1f" % (r["bytes_per_token"] / 1e6), "%.2f" % r["decode_tokens_per_s"],
           "%.2f" % r["decode_gb_per_s"], "%.2f" % r["ceiling_gb_per_s"], r["ceiling_source"],
           "%.1f" % (100 * r["decode_ceiling_ratio"]), "%.2f" % r["decode_bound_tokens_per_s"],
           "n/a" if r["buffer_gb_per_s"] is None else "%.2f" % r["buffer_gb_per_s"],
           "n/a" if r["decode_buffer_ratio"] is None else "%.1f" % (100 * r["decode_buffer_ratio"]),
           "%.1f" % r["prefill_tokens_per_s"], "%.1f" % r["prefill_gflops"],
           "%.1f" % r["sgemm_gflops"], "%.1f" % (100 * r["prefill_sgemm_ratio"])] for r in rows]
    h2 = ["model", "in memory (unmerged/merged)", "weights read before -> after (MB/token)", "bound",
          "speedup (paired)", "speedup / bound", "within 3 %", "pooled", "at equal ceiling"]
    t2 = [["%s-%s" % (s["shape"], s["file_dtype"]), "%s/%s" % (s["dtype"], s["merged_dtype"]),
           "%.1f -> %.1f" % (s["bytes_before"] / 1e6, s["bytes_after"] / 1e6), "%.3fx" % s["bound"],
           "%.3fx" % s["speedup"], "%.3f" % s["speedup_over_bound"], "yes" if s["within_3_percent"] else "no",
           "%.3fx" % s["speedup_pooled"], "%.3fx" % s["speedup_at_equal_ceiling"]]
          for s in sp]
    # targets of the issue
    checks = []
    for r in rows:
        if r["dtype"] == "F32":
            checks.append(("%s decode >= 92 %% of ceiling" % r["name"], r["decode_ceiling_ratio"] >= TARGET_F32,
                           "%.1f %%" % (100 * r["decode_ceiling_ratio"])))
        elif r["dtype"] in ("F16", "BF16"):
            checks.append(("%s decode >= 85 %% of ceiling" % r["name"], r["decode_ceiling_ratio"] >= TARGET_F16,
                           "%.1f %%" % (100 * r["decode_ceiling_ratio"])))
        if r["sgemm_shape"][0] == 256:
            checks.append(("%s prefill >= 70 %% of sgemm" % r["name"], r["prefill_sgemm_ratio"] >= TARGET_PREFILL,
                           "%.1f %%" % (100 * r["prefill_sgemm_ratio"])))
    for s in sp:
        checks.append(("%s-%s merged speedup within 3 %% of bound" % (s["shape"], s["file_dtype"]),
                       s["within_3_percent"], "%.3fx of %.3fx" % (s["speedup"], s["bound"])))
    t3 = [[c[0], c[2], "met" if c[1] else "MISSED"] for c in checks]

    mach = machine()
    print("machine: " + ", ".join("%s %s" % kv for kv in mach.items()))
    if blas:
        print("OpenBLAS core %s -> %s: sgemm %s %.1f -> %.1f GFLOP/s, sgemv %s %.1f -> %.1f GB/s (%d threads)" % (
            blas["core_before"], blas["blas_core"], "x".join(map(str, blas["sgemm_shape"])),
            blas["sgemm_gflops_before"], blas["sgemm_gflops_after"], "x".join(map(str, blas["sgemv_shape"])),
            blas["sgemv_gb_per_s_before"], blas["sgemv_gb_per_s_after"], blas["threads"]))
    print()
    print(fmt_table(h1, t1))
    print()
    print(fmt_table(h2, t2))
    print()
    print(fmt_table(["target", "measured", ""], t3))

    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"machine": mach, "blas": blas, "models": rows, "merge_speedups": sp,
                   "targets": [{"target": c[0], "met": c[1], "measured": c[2]} for c in checks]}, f, indent=2)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(md_table(h1, t1) + "\n\n" + md_table(h2, t2) + "\n\n" + md_table(["target", "measured", ""], t3) + "\n")
    dat = os.path.join(out, "plot.dat")
    with open(dat, "w") as f:
        f.write("# label measured_tok_s bound_tok_s (ceiling / bytes per token) decode_ceiling_ratio\n")
        for r in rows:
            label = r["name"] + (" (%s in memory)" % r["dtype"] if r["dtype"] != r["file_dtype"] else "")
            f.write('"%s" %.4f %.4f %.4f\n' % (label, r["decode_tokens_per_s"], r["decode_bound_tokens_per_s"],
                                               r["decode_ceiling_ratio"]))
    if plot:
        gp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plot.gp")
        title = "decode, %d threads, %s" % (rows[0]["threads"], mach.get("Model name", ""))
        if os.environ.get("BENCH_NOTE"):
            title += " - " + os.environ["BENCH_NOTE"].replace("'", "")
        try:
            subprocess.run(["gnuplot", "-e", "datafile='%s'; outfile='%s'; plottitle='%s'; n=%d" % (
                dat, plot, title, len(rows)), gp], check=True)
        except OSError as e:
            sys.exit("report: cannot run gnuplot (%s); install gnuplot-nox (make deps) or set BENCH_PLOT=''" % e)
        print("\nplot: %s" % plot)
    print("summary: %s, %s" % (os.path.join(out, "summary.json"), os.path.join(out, "table.md")))
    if doc:
        rewrite_doc(doc, out, rows, blas, md_table(h1, t1) + "\n\n" + md_table(h2, t2) + "\n\n" +
                    md_table(["target", "measured", ""], t3))
        print("updated: %s" % doc)


def read_text(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def replace_section(text, name, body):
    begin, end = "<!-- bench:%s:begin -->" % name, "<!-- bench:%s:end -->" % name
    a, b = text.find(begin), text.find(end)
    if a < 0 or b < a:
        sys.exit("report: no %s ... %s markers in the document" % (begin, end))
    return text[:a + len(begin)] + "\n" + body.strip() + "\n" + text[b:]


# Figures from the issue that asked for this benchmark, measured elsewhere on the
# same kind of machine (2 cores): ratio of decode to the read ceiling, GFLOP/s.
PEERS = {"S-F32": ("llama.cpp and llama2.c: about 95 %", 0.95),
         "S-F16": ("llama.cpp: about 60 %", 0.60)}
PEER_PREFILL = "llama.cpp 256-token F32 prefill about 186 GFLOP/s; OpenBLAS sgemm about 300 GFLOP/s"


def peer_table(rows):
    """Our shape-S figures beside the peers' (which were not measured in this run)."""
    lines = ["| shape S, 2 threads | libskipless, this run | measured elsewhere on the same kind of machine |",
             "|---|---|---|"]
    for r in rows:
        if r["name"] in PEERS:
            buf = ("; %.1f %% of a fresh buffer's read" % (100 * r["decode_buffer_ratio"])
                   if r.get("decode_buffer_ratio") else "")
            lines.append("| %s decode, %% of read ceiling | %.1f %% of the ceiling (reads `%s`)%s (%.2f tok/s) | %s |" % (
                r["name"], 100 * r["decode_ceiling_ratio"], r["ceiling_source"], buf, r["decode_tokens_per_s"],
                PEERS[r["name"]][0]))
    for r in rows:
        if r["name"] == "S-F32":
            lines.append("| S-F32 256-token prefill | %.1f GFLOP/s; sgemm in the same run %.1f GFLOP/s | %s |" % (
                r["prefill_gflops"], r["sgemm_gflops"], PEER_PREFILL))
    return "\n".join(lines) if len(lines) > 2 else ""


def rewrite_doc(doc, out, rows, blas, tables):
    """Put the measured tables into the marked sections of doc."""
    r0 = rows[0]
    when = read_text(os.path.join(out, "started"), "?")
    load0 = read_text(os.path.join(out, "loadavg-start"), "?").split()[:3]
    load1 = read_text(os.path.join(out, "loadavg-end"), "?").split()[:3]
    note = os.environ.get("BENCH_NOTE", "")
    head = ("Measured %s by bench/run.sh (`make bench`): %d round(s) x %d repeats per model, %d threads, "
            "prompt %d, gen %d; load average %s at the start and %s at the end (1, 5, 15 min). "
            "Figures are medians over all repeats (%d per model); %% of ceiling is the median of the per-repeat "
            "ratios to the ceiling read before every decode step of that repeat (ceiling reads `weights`: a streaming "
            "read of the weights a decode step reads, in the page cache; `buffer`: a fresh 1 GiB buffer), "
            "%% buffer the median decode GB/s over the median rate of a fresh 1 GiB buffer read at the start of each "
            "run, and a merge speedup the median of the per-repeat ratios of the two models' decode rates (token by "
            "token in alternation in one process, `bench --compare`).\n" % (
                when, r0["n_rounds"], r0["repeat"], r0["threads"], r0["prompt_len"], r0["gen"], " ".join(load0), " ".join(load1), r0["n_samples"]))
    if note:
        head = "> **%s.** The tables below are not final; re-run `make bench` on a quiet machine.\n\n" % note + head
    with open(doc) as f:
        text = f.read()
    text = replace_section(text, "results", head + "\n" + tables + "\n\n" + peer_table(rows))
    if blas:
        b = blas
        btab = ("| | before (core %s, OpenBLAS's own choice) | after (core %s) | after / before |\n"
                "|---|---|---|---|\n"
                "| sgemm %s, GFLOP/s | %.1f | %.1f | %.2fx |\n"
                "| sgemv %s (%d MiB), GB/s | %.1f | %.1f | %.2fx |\n\n"
                "`skipless bench --blas --threads %d` in the same `make bench` run; streaming-read ceiling in that "
                "process: %.1f GB/s.\n" % (
                    b["core_before"], b["blas_core"], " x ".join(map(str, b["sgemm_shape"])),
                    b["sgemm_gflops_before"], b["sgemm_gflops_after"], b["sgemm_gflops_after"] / b["sgemm_gflops_before"],
                    " x ".join(map(str, b["sgemv_shape"])), b["sgemv_shape"][0] * b["sgemv_shape"][1] * 4 >> 20,
                    b["sgemv_gb_per_s_before"], b["sgemv_gb_per_s_after"],
                    b["sgemv_gb_per_s_after"] / b["sgemv_gb_per_s_before"], b["threads"], b["ceiling_gb_per_s"]))
        text = replace_section(text, "blas", btab)
    with open(doc + ".tmp", "w") as f:
        f.write(text)
    os.replace(doc + ".tmp", doc)


if __name__ == "__main__":
    main()
