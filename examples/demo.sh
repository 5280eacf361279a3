#!/bin/sh
# Demo: inspect a model, merge it (remove Q and P), and check that the merged model
# generates exactly the same greedy tokens with fewer weights.
#   sh examples/demo.sh bin/skipless MODEL
set -eu
cli=$1
model=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== skipless info $model"
"$cli" info "$model"
echo
echo "== skipless merge $model --remove auto --verify"
"$cli" merge "$model" "$out/merged" --remove auto --verify
echo
echo "== greedy generation, original vs merged (token ids; a trained model and tokenizer come later)"
a=$("$cli" generate "$model" --tokens 1,2,3 -n 32 --temp 0)
b=$("$cli" generate "$out/merged" --tokens 1,2,3 -n 32 --temp 0)
echo "original: $a"
echo "merged:   $b"
if [ "$a" = "$b" ]; then echo "identical: yes"; else echo "identical: NO"; exit 1; fi
