#!/bin/sh
# random_model.sh - generate a seeded benchmark model once (reused when present).
#
#   sh bench/random_model.sh MODEL_DIR NEED_MB [examples/tools/random_model.py options]
#
# Checks first that MODEL_DIR's file system has NEED_MB (+ 1 GB) free.
set -eu
[ $# -ge 2 ] || { echo "usage: sh bench/random_model.sh MODEL_DIR NEED_MB [options]" >&2; exit 2; }
MODEL=$1
NEED=$2
shift 2
[ -f "$MODEL/model.safetensors" ] && exit 0
mkdir -p "$(dirname "$MODEL")"
avail=$(df -Pm "$(dirname "$MODEL")" | awk 'NR == 2 { print $4 }')
[ "$avail" -gt $((NEED + 1024)) ] || { echo "random_model: need $NEED MB for $MODEL, $avail MB free" >&2; exit 2; }
/usr/bin/python3 examples/tools/random_model.py "$MODEL" "$@"
