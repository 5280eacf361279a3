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
# 5. verification on a cut: the first BENCH_7B_VERIFY_LAYERS (4) blocks of the same seeded weights
#    (bench/make_7b.py --layers 4: the same random stream), merged with --verify into BF16 and into F32
#    (a deeper random stack of SwiGLU blocks without norms is a degree-2^L map: its activations
#    overflow or vanish on any probe, so the 32-layer merge's own verification is inconclusive);
# 6. decode, at 32 layers: BENCH_7B_ROUNDS rounds of `skipless bench MODEL --compare S-F32 --json`
#    for the original, then the merged model, one 7B model per process (the two do not fit in the
#    page cache together; each started from a page cache that holds none of the other: by default the
#    library's own load reads the files (into 2 MiB folios, as bench/run.sh does; its warm-up faults
#    every page in before timing); BENCH_7B_WARM=dd reads them with dd first (4 KiB folios)).  Shape
#    S F32 steps in alternation with the 7B model in the same process: the yardstick that the
#    bandwidth of this shared machine, which moves by a third within seconds, moves too, so that the
#    two 7B runs can be compared through it and BF16 against F32 is measured in the same seconds;
# 7. the speedup measured directly: an original and a merged model of BENCH_7B_PAIR_LAYERS (20)
#    blocks, small enough to sit in memory together, decoded in alternation token by token
#    (`skipless bench ORIG --compare MERGED`, BENCH_7B_PAIR_REPEAT (6) repeats); 0 skips it;
# 8. bench/report_7b.py: the table, the targets, summary.json, table.md and the plot.
#
# Environment: BENCH_7B_LAYERS (32), BENCH_7B_DIR (build/bench/7b), BENCH_7B_ROUNDS (3),
# BENCH_7B_REPEAT (2), BENCH_7B_THREADS (2), BENCH_7B_GEN (32), BENCH_7B_PROMPT (16),
# BENCH_7B_SHARD_SIZE (5000000000 bytes, the original's and the merged model's shards),
# BENCH_7B_WARM (load | dd), BENCH_7B_VERIFY_LAYERS (4), BENCH_7B_PAIR_LAYERS (20),
# BENCH_7B_PAIR_REPEAT (6), BENCH_MODELS (build/bench/models: shapes S and T),
# BENCH_7B_PLOT (docs/performance-7b.png at 32 layers, else DIR/plot.png; empty: no plot),
# BENCH_7B_DOC (docs/performance.md at 32 layers, else empty: its bench:7b section gets the table).
# While it runs, /tmp/bench-7b.lock exists (other work on the machine can wait for it to go).
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
VLAYERS=${BENCH_7B_VERIFY_LAYERS:-4}
PLAYERS=${BENCH_7B_PAIR_LAYERS:-20}
PREPEAT=${BENCH_7B_PAIR_REPEAT:-6}
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

# ---- sizes (MB): a model of n blocks in BF16 (2 bytes a weight), and merged (q_proj and o_proj gone)
d=4096 kv=1024 f=14336 V=32000
orig_mb() { echo $(((2 * V * d + $1 * (2 * d * d + 2 * d * kv + 3 * d * f)) * 2 / 1000000)); }
merged_mb() { echo $(($(orig_mb "$1") - $1 * 2 * d * d * 2 / 1000000)); }
stamp() { echo "make_7b $(sha256sum "$HERE/make_7b.py" | cut -c1-16) --layers $1 --shard-size $SHARD --seed 7 --vocab $V"; }
have() { [ -f "$1/stamp" ] && [ "$(cat "$1/stamp")" = "$(stamp "$2")" ]; } # have DIR LAYERS

# ---- disk: what is not there yet (the merged models are remade, and timed, every run)
VCUT=$DIR/orig-L$VLAYERS PCUT=$DIR/orig-L$PLAYERS
for x in "$ORIG:$LAYERS" "$VCUT:$VLAYERS" "$PCUT:$PLAYERS"; do # stale models go first (remade below)
    have "${x%:*}" "${x##*:}" || rm -rf "${x%:*}"
done
need=$(merged_mb "$LAYERS")
have "$ORIG" "$LAYERS" || need=$((need + $(orig_mb "$LAYERS")))
[ -f "$MODELS/S-F32/model.safetensors" ] || need=$((need + 1967))
if [ "$VLAYERS" -gt 0 ]; then # the cut, its merged BF16 and F32 forms (F32 twice the BF16 bytes)
    need=$((need + 3 * $(merged_mb "$VLAYERS")))
    have "$VCUT" "$VLAYERS" || need=$((need + $(orig_mb "$VLAYERS")))
fi
if [ "$PLAYERS" -gt 0 ]; then
    need=$((need + $(merged_mb "$PLAYERS")))
    have "$PCUT" "$PLAYERS" || need=$((need + $(orig_mb "$PLAYERS")))
fi
rm -rf "$MERGED" "$DIR"/merged-L*
avail=$(df -Pm "$DIR" | awk 'NR == 2 { print $4 }')
if [ "$avail" -lt $((need + 1024)) ]; then
    echo "bench-7b: need about $need MB (+1 GB margin) in $DIR (the original $(orig_mb "$LAYERS") MB and merged" \
        "$(merged_mb "$LAYERS") MB models, the $VLAYERS- and $PLAYERS-block cuts, shape S F32 1967 MB, less what" \
        "is already there), only $avail MB free: free some space or set BENCH_7B_DIR" >&2
    exit 2
fi
mem=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
echo "bench-7b: $LAYERS layers; $avail MB free in $DIR, $need MB needed; $mem MB memory available"
# decode: the original and S-F32 in the page cache, a 1 GiB buffer, the KV cache; the pair: both cuts
mem_need=$(($(orig_mb "$LAYERS") + 1967 + 2048))
pair_need=$(($(orig_mb "$PLAYERS") + $(merged_mb "$PLAYERS") + 2048))
[ "$PLAYERS" -eq 0 ] || [ "$pair_need" -le "$mem_need" ] || mem_need=$pair_need
if [ "$mem" -lt "$mem_need" ]; then
    echo "bench-7b: only $mem MB of memory available; decode needs about $mem_need MB (the $LAYERS-block" \
        "original beside shape S F32, or the two $PLAYERS-block models, a ceiling buffer, the KV cache);" \
        "set BENCH_7B_PAIR_LAYERS lower if that is what does not fit" >&2
    exit 2
fi
touch /tmp/bench-7b.lock
trap 'rm -f /tmp/bench-7b.lock' EXIT

# ---- models
make_7b() { # make_7b DIR LAYERS: the seeded checkpoint, once (a stamp records the parameters)
    have "$1" "$2" && return 0
    rm -rf "$1" "$1.tmp"
    t0=$(date +%s)
    nice "$PY" "$HERE/make_7b.py" "$1.tmp" --layers "$2" --shard-size "$SHARD" --seed 7 --vocab "$V"
    stamp "$2" >"$1.tmp/stamp"
    mv "$1.tmp" "$1"
    echo "bench-7b: wrote $1 in $(($(date +%s) - t0)) s"
}
make_7b "$ORIG" "$LAYERS"
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
echo "LAYERS=$LAYERS ROUNDS=$ROUNDS REPEAT=$REPEAT THREADS=$THREADS GEN=$GEN PROMPT=$PROMPT WARM=$WARM" \
    "VERIFY_LAYERS=$VLAYERS PAIR_LAYERS=$PLAYERS PAIR_REPEAT=$PREPEAT" >"$RUNS/params"
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

# ---- verification on the cut (the same seeded blocks), merged into BF16 and into F32
if [ "$VLAYERS" -gt 0 ]; then
    make_7b "$VCUT" "$VLAYERS"
    for dt in bf16 f32; do
        OPENBLAS_NUM_THREADS=$THREADS "$BIN" merge "$VCUT" "$DIR/merged-L$VLAYERS-$dt" --remove qp --dtype "$dt" \
            --verify 2>/dev/null >"$RUNS/verify-cut-$dt.txt"
        echo "bench-7b: $VLAYERS-block cut, merged into $dt: $(grep '^verification' "$RUNS/verify-cut-$dt.txt")"
        rm -rf "$DIR/merged-L$VLAYERS-$dt"
    done
fi

# ---- decode at full depth: each 7B model beside shape S F32, one 7B model per process
bench_one() { # NAME MODEL OTHER: MODEL (with S-F32 stepping in alternation), OTHER out of the page cache
    evict "$3"
    evict "$2"
    [ "$WARM" = load ] || warm "$2"
    echo "bench-7b: round $r/$ROUNDS: $1 beside S-F32 (in the page cache before the load: $(resident "$2") MB" \
        "of it, $(resident "$3") MB of the other model)"
    "$BIN" bench "$2" --compare "$MODELS/S-F32" --threads "$THREADS" --repeat "$REPEAT" --prompt-len "$PROMPT" \
        --gen "$GEN" --json >"$RUNS/ystk-$1-$r.json"
}
name=7B; [ "$LAYERS" = 32 ] || name=7B_L$LAYERS
r=1
while [ "$r" -le "$ROUNDS" ]; do
    bench_one "$name-BF16" "$ORIG" "$MERGED"
    bench_one "$name-BF16-merged" "$MERGED" "$ORIG"
    r=$((r + 1))
done

# ---- the speedup measured directly: two cuts in memory together, decoded in alternation
if [ "$PLAYERS" -gt 0 ]; then
    evict "$ORIG"
    evict "$MERGED"
    make_7b "$PCUT" "$PLAYERS"
    OPENBLAS_NUM_THREADS=$THREADS "$BIN" merge "$PCUT" "$DIR/merged-L$PLAYERS" --remove qp --dtype bf16 \
        --max-shard-size "$SHARD" 2>/dev/null >"$RUNS/merge-pair.txt"
    evict "$PCUT" # both written just now, into 4 KiB folios: the load reads them again into 2 MiB ones
    evict "$DIR/merged-L$PLAYERS"
    echo "bench-7b: $PLAYERS-block original and merged, decoded in alternation"
    r=1
    "$BIN" bench "$PCUT" --compare "$DIR/merged-L$PLAYERS" --threads "$THREADS" --repeat "$PREPEAT" \
        --prompt-len "$PROMPT" --gen "$GEN" --json >"$RUNS/pair-7B_L$PLAYERS-BF16-1.json"
    rm -rf "$DIR/merged-L$PLAYERS"
fi
cat /proc/loadavg >"$RUNS/loadavg-end"
"$PY" "$HERE/report_7b.py" "$RUNS" "$PLOT" "$DOC"
