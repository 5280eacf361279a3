#!/bin/sh
# bench_7b.sh - the paper's table, measured: `make bench-7b` (issue 13, section 6; docs/performance.md,
# "The paper's table, measured").  Not part of `make check`: about an hour at 32 layers.
#
#   sh bench/bench_7b.sh PATH/TO/skipless PATH/TO/merge_bench
#
# 1. checks the free disk space (original + merged + shape S F32) and stops with a message if short;
# 2. writes (once: a stamp file records the parameters, a change regenerates) a seeded Mistral-7B-shaped
#    BF16 skipless checkpoint with bench/make_7b.py, sharded (model.safetensors.index.json);
# 3. `skipless info` of it; a float64 dgemm rate (merge_bench on the tiny shape T of bench/models.sh,
#    whose own merge takes milliseconds) right before and right after the merge;
# 4. `skipless merge ORIG MERGED --remove qp --dtype bf16 --verify` under bench/peak_mem.py (wall
#    time, peak RssAnon and max RSS), with OPENBLAS_NUM_THREADS threads; `skipless info` of the result;
# 5. decode: BENCH_7B_ROUNDS rounds of `skipless bench --json`, one model per process, in the order
#    original, merged, shape S F32 (bench/models.sh, shared with `make bench`), each started from a
#    page cache that holds neither 7B model (the two do not fit in it together): by default the
#    library's own load reads the files (into 2 MiB folios, as bench/run.sh does; its warm-up faults
#    every page in before timing); BENCH_7B_WARM=dd reads them with dd first (4 KiB folios);
# 6. bench/report_7b.py: the table, the targets, summary.json, table.md and the plot.
#
# Environment: BENCH_7B_LAYERS (32), BENCH_7B_DIR (build/bench/7b), BENCH_7B_ROUNDS (3),
# BENCH_7B_REPEAT (2), BENCH_7B_THREADS (2), BENCH_7B_GEN (32), BENCH_7B_PROMPT (16),
# BENCH_7B_SHARD_SIZE (5000000000 bytes, the original's and the merged model's shards),
# BENCH_7B_WARM (load | dd), BENCH_MODELS (build/bench/models: shapes S and T),
# BENCH_7B_PLOT (docs/performance-7b.png at 32 layers, else DIR/plot.png; empty: no plot),
# BENCH_7B_DOC (docs/performance.md at 32 layers, else empty: its bench:7b section gets the table).
set -eu

PY=/usr/bin/python3
[ $# -eq 2 ] || { echo "usage: sh bench/bench_7b.sh PATH/TO/skipless PATH/TO/merge_bench" >&2; exit 2; }
BIN=$1
MERGE_BENCH=$2
LAYERS=${BENCH_7B_LAYERS:-32}
DIR=${BENCH_7B_DIR:-build/bench/7b}
ROUNDS=${BENCH_7B_ROUNDS:-3}
REPEAT=${BENCH_7B_REPEAT:-2}
THREADS=${BENCH_7B_THREADS:-2}
GEN=${BENCH_7B_GEN:-32}
PROMPT=${BENCH_7B_PROMPT:-16}
SHARD=${BENCH_7B_SHARD_SIZE:-5000000000}
WARM=${BENCH_7B_WARM:-load}
MODELS=${BENCH_MODELS:-build/bench/models}
if [ "$LAYERS" = 32 ]; then
    PLOT=${BENCH_7B_PLOT-docs/performance-7b.png}
    DOC=${BENCH_7B_DOC-docs/performance.md}
else
    PLOT=${BENCH_7B_PLOT-$DIR/plot-L$LAYERS.png}
    DOC=${BENCH_7B_DOC-}
fi
HERE=$(dirname "$0")
ORIG=$DIR/orig-L$LAYERS
MERGED=$DIR/merged-L$LAYERS
RUNS=$DIR/runs-L$LAYERS
case $WARM in load | dd) ;; *) echo "bench-7b: BENCH_7B_WARM must be load or dd, got '$WARM'" >&2; exit 2 ;; esac
for x in "$BIN" "$MERGE_BENCH"; do
    [ -x "$x" ] || { echo "bench-7b: $x is not executable (run make first)" >&2; exit 2; }
done
"$PY" -c 'import numpy' 2>/dev/null || { echo "bench-7b: $PY has no numpy (make deps)" >&2; exit 2; }
. "$HERE/models.sh" # shape_args, make_model
mkdir -p "$DIR" "$MODELS"

# ---- disk: the original (BF16: 2 bytes a weight), the merged model (q_proj and o_proj gone), shape S F32
d=4096 kv=1024 f=14336 V=32000
orig_mb=$(((2 * V * d + LAYERS * (2 * d * d + 2 * d * kv + 3 * d * f)) * 2 / 1000000))
merged_mb=$((orig_mb - LAYERS * 2 * d * d * 2 / 1000000))
STAMP="make_7b $(sha256sum "$HERE/make_7b.py" | cut -c1-16) --layers $LAYERS --shard-size $SHARD --seed 7 --vocab $V"
if [ -f "$ORIG/stamp" ] && [ "$(cat "$ORIG/stamp")" = "$STAMP" ]; then have_orig=1; else have_orig=0; fi
need=$merged_mb
[ "$have_orig" = 1 ] || need=$((need + orig_mb))
[ -f "$MODELS/S-F32/model.safetensors" ] || need=$((need + 1967))
rm -rf "$MERGED" # remade (and timed) every run
avail=$(df -Pm "$DIR" | awk 'NR == 2 { print $4 }')
if [ "$avail" -lt $((need + 1024)) ]; then
    echo "bench-7b: need about $need MB (+1 GB margin) in $DIR (original ${orig_mb} MB, merged ${merged_mb} MB," \
        "shape S F32 1967 MB, less what is already there), only $avail MB free: free some space or set BENCH_7B_DIR" >&2
    exit 2
fi
mem=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
echo "bench-7b: $LAYERS layers; $avail MB free in $DIR, $need MB needed; $mem MB memory available"
if [ "$mem" -lt $((orig_mb + 2048)) ]; then # decode: the original in the page cache, a 1 GiB buffer, the KV cache
    echo "bench-7b: only $mem MB of memory available; decoding the original from the page cache needs" \
        "about $((orig_mb + 2048)) MB (model $orig_mb MB, ceiling buffer, KV cache)" >&2
    exit 2
fi

# ---- models
if [ "$have_orig" = 0 ]; then
    rm -rf "$ORIG" "$ORIG.tmp"
    t0=$(date +%s)
    nice "$PY" "$HERE/make_7b.py" "$ORIG.tmp" --layers "$LAYERS" --shard-size "$SHARD" --seed 7 --vocab "$V"
    echo "$STAMP" >"$ORIG.tmp/stamp"
    mv "$ORIG.tmp" "$ORIG"
    echo "bench-7b: wrote $ORIG in $(($(date +%s) - t0)) s"
fi
make_model "$MODELS/S-F32" S F32
make_model "$MODELS/T-F32" T F32

# ---- page cache: evict MODEL drops its files' clean, unmapped pages; warm MODEL reads them
evict() {
    "$PY" -c 'import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)' "$1"/*.safetensors
}
warm() {
    for x in "$1"/*.safetensors; do dd if="$x" of=/dev/null bs=16M status=none; done
}
resident() { # MB of MODEL's files in the page cache
    fincore -b -n -o RES "$1"/*.safetensors 2>/dev/null | awk '{ s += $1 } END { printf "%d", s / 1e6 }'
}

rm -rf "$RUNS"
mkdir -p "$RUNS"
date -u '+%Y-%m-%d %H:%M UTC' >"$RUNS/started"
cat /proc/loadavg >"$RUNS/loadavg-start"
lscpu | sed -n 's/^Model name: *//p' >"$RUNS/cpu"
echo "LAYERS=$LAYERS ROUNDS=$ROUNDS REPEAT=$REPEAT THREADS=$THREADS GEN=$GEN PROMPT=$PROMPT WARM=$WARM" >"$RUNS/params"
"$BIN" info "$ORIG" | tee "$RUNS/info-orig.txt"

# ---- the merge, between two dgemm measurements
"$MERGE_BENCH" "$MODELS/T-F32" --threads "$THREADS" >"$RUNS/dgemm-before.txt" 2>/dev/null
grep '^dgemm_gflops' "$RUNS/dgemm-before.txt"
warm "$ORIG" # the merge reads the original from the page cache, not from the disk
echo "bench-7b: merging $ORIG -> $MERGED"
OPENBLAS_NUM_THREADS=$THREADS "$PY" "$HERE/peak_mem.py" "$RUNS/merge-mem.json" \
    "$BIN" merge "$ORIG" "$MERGED" --remove qp --dtype bf16 --verify --max-shard-size "$SHARD" >"$RUNS/merge.txt"
grep -v '^  ' "$RUNS/merge.txt"
"$MERGE_BENCH" "$MODELS/T-F32" --threads "$THREADS" >"$RUNS/dgemm-after.txt" 2>/dev/null
grep '^dgemm_gflops' "$RUNS/dgemm-after.txt"
"$BIN" info "$MERGED" | tee "$RUNS/info-merged.txt"

# ---- decode, one model per process
bench_one() { # NAME MODEL [OTHER]: a cold (or dd-warmed) run of MODEL with OTHER out of the page cache
    [ $# -lt 3 ] || evict "$3"
    evict "$2"
    [ "$WARM" = load ] || warm "$2"
    other=""
    [ $# -lt 3 ] || other=", $(resident "$3") MB of the other model"
    echo "bench-7b: round $r/$ROUNDS: $1 (in the page cache before the load: $(resident "$2") MB of it$other)"
    "$BIN" bench "$2" --threads "$THREADS" --repeat "$REPEAT" --prompt-len "$PROMPT" --gen "$GEN" --json \
        >"$RUNS/run-$1-$r.json"
}
name=7B; [ "$LAYERS" = 32 ] || name=7B_L$LAYERS
r=1
while [ "$r" -le "$ROUNDS" ]; do
    bench_one "$name-BF16" "$ORIG" "$MERGED"
    bench_one "$name-BF16-merged" "$MERGED" "$ORIG"
    bench_one S-F32 "$MODELS/S-F32"
    r=$((r + 1))
done
cat /proc/loadavg >"$RUNS/loadavg-end"
"$PY" "$HERE/report_7b.py" "$RUNS" "$PLOT" "$DOC"
