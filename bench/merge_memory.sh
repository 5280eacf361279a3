#!/bin/sh
# merge_memory.sh - peak anonymous memory of `skipless merge`, streaming against in-memory
# (docs/merge.md, "Memory"; not a test: it measures).
#
#   sh bench/merge_memory.sh PATH/TO/skipless OUT_DIR [MODEL]
#
# Without MODEL, generates once (seeded; reused when present) a random serial F32 model with
# examples/tools/random_model.py: hidden 1024, 8 / 2 heads (head_dim 128), SwiGLU FFN 3584,
# vocab 8000, MEMORY_LAYERS (16) layers: about 0.94 GB in OUT_DIR/models.  Then runs
# `skipless merge MODEL OUT --remove qp` twice, streamed (the default) and --in-memory, each
# under a sampler of /proc/PID/status (RssAnon, every 10 ms) and prints the peak RssAnon, the
# model's file size and their ratio, and the wall time.  MERGE_ARGS adds merge options (e.g.
# "--max-shard-size 2GB" or "--remove auto"); MEMORY_MODES picks "stream in-memory".
set -eu
[ $# -ge 2 ] || { echo "usage: sh bench/merge_memory.sh PATH/TO/skipless OUT_DIR [MODEL]" >&2; exit 2; }
[ -x "$1" ] || { echo "merge_memory: $1 is not executable" >&2; exit 2; }
CLI=$1 OUT=$2 MODEL=${3:-$2/models/memory-d1024-L${MEMORY_LAYERS:-16}}
MODES=${MEMORY_MODES:-stream in-memory}
ARGS=${MERGE_ARGS:---remove qp}
# MB: 13.6M weights per layer, 16.4M in the embeddings, 4 bytes each
[ $# -ge 3 ] || sh bench/random_model.sh "$MODEL" $((55 * ${MEMORY_LAYERS:-16} + 100)) --hidden 1024 \
    --layers "${MEMORY_LAYERS:-16}" --heads 8 --kv-heads 2 --ffn 3584 --vocab 8000 --seed 1
# the model's weights: every .safetensors file of the directory, or the file itself
file_bytes=$(if [ -d "$MODEL" ]; then cat "$MODEL"/*.safetensors; else cat "$MODEL"; fi | wc -c)
echo "cpu $(lscpu | sed -n 's/^Model name: *//p')"
echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "model $MODEL ($file_bytes bytes of safetensors)"
for mode in $MODES; do
    dst=$OUT/merged-$mode
    rm -rf "$dst"
    flag=""
    [ "$mode" = in-memory ] && flag=--in-memory
    start=$(date +%s.%N)
    # shellcheck disable=SC2086 # ARGS is a list of options
    "$CLI" merge "$MODEL" "$dst" $ARGS $flag > "$OUT/merge-$mode.out" 2> "$OUT/merge-$mode.err" &
    pid=$!
    peak=0
    while [ -r /proc/$pid/status ]; do
        a=$(awk '/^RssAnon:/ { print $2 }' /proc/$pid/status 2>/dev/null || true)
        [ -n "$a" ] && [ "$a" -gt "$peak" ] && peak=$a
        # a zombie (exited, not yet waited for) has no RssAnon line: stop sampling
        [ -z "$a" ] && break
        sleep 0.01
    done
    rc=0
    wait $pid || rc=$?
    end=$(date +%s.%N)
    [ $rc -eq 0 ] || { echo "merge_memory: $mode merge failed ($rc):" >&2; cat "$OUT/merge-$mode.err" >&2; exit 1; }
    awk -v m="$mode" -v p="$peak" -v f="$file_bytes" -v s="$start" -v e="$end" 'BEGIN {
        printf "%-9s peak RssAnon %8.1f MiB = %.3f x the file, wall %.1f s\n", m, p / 1024, p * 1024 / f, e - s }'
    tail -n 1 "$OUT/merge-$mode.err" | tr '\r' '\n' | tail -n 1 | sed 's/^/          last progress: /'
    rm -rf "$dst"
done
