#!/bin/sh
# merge.sh - the merge benchmark behind `make bench-merge` and docs/merge.md ("Cost").
#
#   sh bench/merge.sh PATH/TO/merge_bench OUT_DIR
#
# Generates once (seeded; reused when present) a random serial model of Mistral-7B's block
# shape with examples/tools/random_model.py: hidden 4096, 32 heads / 8 KV heads (head_dim 128),
# SwiGLU FFN 14336, vocab 32000, MERGE_LAYERS (2) layers, F32: 2.8 GB in OUT_DIR/models.
# Its q_proj / o_proj are 2 I + N(0, 1/d) (condition estimate about 840, far below the merge's
# limit 1.68e5; a plain Gaussian of this size would be refused).  Then runs merge_bench on it:
# dgemm 4096^3 before and after the in-memory merge (skl_model_merge, --remove qp), all with
# MERGE_THREADS (2) OpenBLAS threads, and prints the figures (docs/merge.md).
set -eu
[ $# -eq 2 ] || { echo "usage: sh bench/merge.sh PATH/TO/merge_bench OUT_DIR" >&2; exit 2; }
BIN=$1
OUT=$2
LAYERS=${MERGE_LAYERS:-2}
THREADS=${MERGE_THREADS:-2}
MODEL=$OUT/models/merge7b-L$LAYERS
[ -x "$BIN" ] || { echo "bench-merge: $BIN is not executable" >&2; exit 2; }
# MB: 349M weights per layer, 262M in the embeddings, 4 bytes each
sh bench/random_model.sh "$MODEL" $((1400 * LAYERS + 1100)) --hidden 4096 --layers "$LAYERS" --heads 32 \
    --kv-heads 8 --ffn 14336 --vocab 32000 --seed 1
echo "cpu $(lscpu | sed -n 's/^Model name: *//p')"
echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load_before $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" "$MODEL" --threads "$THREADS" --remove qp
echo "load_after $(cut -d' ' -f1-3 /proc/loadavg)"
