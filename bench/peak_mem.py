#!/usr/bin/python3
"""Run a command and record its wall time and peak memory.

    /usr/bin/python3 bench/peak_mem.py OUT.json CMD [ARG...]

Samples /proc/PID/status of the command every 0.2 s (VmRSS, RssAnon, RssFile) and writes
OUT.json with wall_seconds, peak_rss_anon_bytes, peak_vm_rss_bytes, peak_rss_file_bytes (the
maxima of the samples), max_rss_bytes (the kernel's ru_maxrss of the child, what
`/usr/bin/time -v` reports as "Maximum resident set size"), samples and exit_code.  The
command's stdout and stderr pass through; the exit code is the command's.  RssAnon is the
figure that matters for a merge: file-backed pages of the mapped checkpoint (RssFile) can be
dropped by the kernel under pressure, anonymous ones cannot.
"""
import argparse, json, os, resource, subprocess, sys, time

ap = argparse.ArgumentParser(prog="peak_mem.py", description=__doc__.split("\n")[0])
ap.add_argument("out", metavar="OUT.json")
ap.add_argument("cmd", metavar="CMD [ARG...]", nargs=argparse.REMAINDER)
_a = ap.parse_args()
if not _a.cmd:
    ap.error("CMD is missing")
out, cmd = _a.out, _a.cmd
FIELDS = {"VmRSS:": "peak_vm_rss_bytes", "RssAnon:": "peak_rss_anon_bytes", "RssFile:": "peak_rss_file_bytes"}
peak = dict.fromkeys(FIELDS.values(), 0)
n = 0
t0 = time.monotonic()
p = subprocess.Popen(cmd)
while p.poll() is None:
    try:
        with open("/proc/%d/status" % p.pid) as f:
            for line in f:
                k = line.split(None, 1)[0] if line.strip() else ""
                if k in FIELDS:  # "RssAnon:   123456 kB"
                    peak[FIELDS[k]] = max(peak[FIELDS[k]], int(line.split()[1]) * 1024)
        n += 1
    except (OSError, ValueError, IndexError):
        pass  # the process ended between poll() and the read
    time.sleep(0.2)
wall = time.monotonic() - t0
rec = dict(peak, wall_seconds=wall, samples=n, exit_code=p.returncode, command=cmd,
           max_rss_bytes=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
with open(out, "w") as f:
    json.dump(rec, f, indent=2)
print("peak_mem: %.1f s, peak RssAnon %.2f GB, peak VmRSS %.2f GB, max RSS %.2f GB (%d samples)" % (
    wall, peak["peak_rss_anon_bytes"] / 1e9, peak["peak_vm_rss_bytes"] / 1e9, rec["max_rss_bytes"] / 1e9, n),
    file=sys.stderr)
sys.exit(p.returncode)
