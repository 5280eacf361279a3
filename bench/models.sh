# models.sh - the seeded model shapes of `make bench`, sourced by bench/run.sh and bench/bench_7b.sh
# (so that both generate shape S the same way and share build/bench/models).  Needs PY and HERE.

# shape NAME -> examples/tools/random_model.py arguments
shape_args() {
    case $1 in
    S) echo "--hidden 2048 --layers 8 --heads 32 --kv-heads 8 --ffn 5632 --vocab 32000" ;;
    L) echo "--hidden 4096 --layers 2 --heads 32 --kv-heads 8 --ffn 14336 --vocab 32000" ;;
    T) echo "--hidden 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --vocab 1000" ;; # smoke test of the harness
    *) echo "bench: unknown shape $1" >&2; exit 2 ;;
    esac
}

# make_model DIR SHAPE DTYPE: generate DIR unless it holds a model (written to DIR.tmp, then
# renamed: an interrupted run leaves nothing half-made)
make_model() {
    [ -f "$1/model.safetensors" ] && return 0
    echo "bench: generating $1"
    rm -rf "$1.tmp"
    # shellcheck disable=SC2046
    nice "$PY" "$HERE/../examples/tools/random_model.py" "$1.tmp" $(shape_args "$2") --dtype "$3" --seed 1
    mv "$1.tmp" "$1"
}
