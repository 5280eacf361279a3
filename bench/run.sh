#!/bin/sh
# run.sh - the benchmark behind `make bench` and docs/performance.md.
#
#   sh bench/run.sh PATH/TO/skipless OUT_DIR
#
# Generates (seeded, once; reused when present) random serial skipless models
# with examples/tools/random_model.py into OUT_DIR/models:
#   S: hidden 2048, 8 layers, 32 heads / 8 KV heads, FFN 5632 (SwiGLU), vocab 32000
#   L: hidden 4096, 2 layers, 32 heads / 8 KV heads, FFN 14336 (SwiGLU), vocab 32000
# each in F32 and F16, and their merged forms (q_proj and o_proj removed:
# `skipless merge --remove qp`; F16 merged kept in F16 when merge has --dtype).
# Then runs `skipless bench MODEL --compare MODEL-merged --json` on every
# pair, BENCH_ROUNDS rounds (pairs interleaved, so slow phases of a shared
# machine hit all of them) of BENCH_REPEAT repeats each (within a repeat the
# two models decode token by token in alternation), plus `skipless bench --blas`; writes the JSON
# to OUT_DIR (pair-NAME-ROUND.json) and hands it to bench/report.py (table,
# summary, plot).
#
# Environment: BENCH_THREADS (2), BENCH_ROUNDS (3), BENCH_REPEAT (4: even, so both orders of a pair run equally often),
# BENCH_PROMPT (256), BENCH_GEN (64), BENCH_PLOT (docs/performance.png; empty: no plot),
# BENCH_SHAPES ("S L"; "T" is a tiny shape that checks the harness in seconds),
# BENCH_NOTE (put in the plot title and above the tables, e.g. "PRELIMINARY"),
# BENCH_DOC (docs/performance.md: its marked sections get the tables; empty: leave it).
set -eu

PY=/usr/bin/python3
if [ $# -ne 2 ]; then
    echo "usage: sh bench/run.sh PATH/TO/skipless OUT_DIR" >&2
    exit 2
fi
BIN=$1
OUT=$2
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
REPEAT=${BENCH_REPEAT:-4}
PROMPT=${BENCH_PROMPT:-256}
GEN=${BENCH_GEN:-64}
PLOT=${BENCH_PLOT-docs/performance.png}
DOC=${BENCH_DOC-docs/performance.md}
SHAPES=${BENCH_SHAPES:-S L}
HERE=$(dirname "$0")
MODELS=$OUT/models

[ -x "$BIN" ] || { echo "bench: $BIN is not executable (run make first)" >&2; exit 2; }
"$PY" -c 'import numpy' 2>/dev/null || { echo "bench: $PY has no numpy (make deps)" >&2; exit 2; }
mkdir -p "$MODELS"

. "$HERE/models.sh" # shape_args, make_model
# Size in MB of a model file: shape, bytes per weight (weights: S 491.7M, L 698.4M; merged: -67.1M each).
model_mb() {
    case $1 in S) w=492 ;; L) w=698 ;; *) w=2 ;; esac
    [ "$3" = merged ] && [ "$1" != T ] && w=$((w - 67))
    echo $((w * $2))
}

# ---- merge --dtype (F16 merged stored as F16) available?
if "$BIN" --help | grep -q -- '--dtype'; then HAVE_DTYPE=1; else HAVE_DTYPE=0; fi

# ---- disk and memory, before writing gigabytes
need=0
for s in $SHAPES; do
    for dt in F32 F16; do
        b=4; [ "$dt" = F16 ] && b=2
        [ -f "$MODELS/$s-$dt/model.safetensors" ] || need=$((need + $(model_mb "$s" $b plain)))
        mb=$b; [ "$dt" = F16 ] && [ "$HAVE_DTYPE" = 0 ] && mb=4
        [ -f "$MODELS/$s-$dt-merged/model.safetensors" ] || need=$((need + $(model_mb "$s" $mb merged)))
    done
done
avail=$(df -Pm "$MODELS" | awk 'NR == 2 { print $4 }')
if [ "$need" -gt 0 ] && [ "$avail" -lt $((need + 1024)) ]; then
    echo "bench: need about $need MB (+1 GB margin) in $MODELS for the models, only $avail MB free" >&2
    exit 2
fi
mem=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
if [ "$mem" -lt 6144 ]; then
    echo "bench: only $mem MB of memory available; shape L F32 needs about 6 GB (model 2.8 GB, merge scratch, 1 GiB ceiling buffer)" >&2
    exit 2
fi
echo "bench: $avail MB free on disk (models need $need MB more), $mem MB memory available"

# ---- models (written to a temporary name, then renamed: an interrupted run leaves nothing half-made)
for s in $SHAPES; do
    for dt in F32 F16; do
        dir=$MODELS/$s-$dt
        make_model "$dir" "$s" "$dt"
        mdir=$MODELS/$s-$dt-merged
        if [ ! -f "$mdir/model.safetensors" ]; then
            echo "bench: merging $dir -> $mdir"
            rm -rf "$mdir.tmp"
            extra=""
            [ "$dt" = F16 ] && [ "$HAVE_DTYPE" = 1 ] && extra="--dtype f16"
            # shellcheck disable=SC2086
            nice "$BIN" merge "$dir" "$mdir.tmp" --remove qp --format dir $extra >"$OUT/merge-$s-$dt.log"
            mv "$mdir.tmp" "$mdir"
        fi
    done
done

# ---- cold start, every round: drop the pair's model files from the page cache (the kernel
# drops only clean pages nobody maps) before the pair runs, so the first load reads them
# through libskipless's huge-page-advised mapping into 2 MiB folios, as a first load after a
# download or a reboot does (a file the page cache already holds in 4 KiB folios is mapped on
# 4 KiB pages and decodes a few per cent slower; bench reports weights_huge_page_share).
# Doing it every round also gives each round fresh physical pages: on the shared test
# machine some page-cache regions read 25 % slower than others (docs/performance.md, "Slow
# page-cache regions"), and with one placement for the whole run one model of a pair could
# keep a slow region in every round; medians over rounds now sample several placements.
drop_cache() {
    dd if="$1/model.safetensors" iflag=nocache count=0 status=none ||
        echo "bench: could not drop the page cache of $1 (measuring as cached)" >&2
}

# ---- measurements
rm -f "$OUT"/run-*.json "$OUT"/pair-*.json "$OUT"/blas.json
date -u '+%Y-%m-%d %H:%M UTC' >"$OUT/started"
cat /proc/loadavg >"$OUT/loadavg-start"
"$BIN" bench --blas --threads "$THREADS" --json >"$OUT/blas.json"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for s in $SHAPES; do
        for dt in F32 F16; do
            name=$s-$dt
            echo "bench: round $r/$ROUNDS: $name and $name-merged"
            drop_cache "$MODELS/$name"
            drop_cache "$MODELS/$name-merged"
            "$BIN" bench "$MODELS/$name" --compare "$MODELS/$name-merged" --threads "$THREADS" --repeat "$REPEAT" \
                --prompt-len "$PROMPT" --gen "$GEN" --json >"$OUT/pair-$name-$r.json"
        done
    done
    r=$((r + 1))
done

cat /proc/loadavg >"$OUT/loadavg-end"
"$PY" "$HERE/report.py" "$OUT" "$PLOT" "$DOC"
