#!/bin/sh
# test_cli.sh - end-to-end checks of the skipless command-line tool.
#
#   sh test/test_cli.sh PATH/TO/skipless MODELS_DIR
#
# Covers usage and option errors, info on every good and bad model, logits
# (prefill and --decode) against the references, generate (greedy, seeded),
# plan, merge + save + reload against the same references, the tokenizer
# commands and bench.
#
# MODELS_DIR is the output of `/usr/bin/python3 test/models.py MODELS_DIR`
# (it holds manifest.json, models/, bad/ and the float64 *.ref.npy logits).
# Numeric and JSON checks are the named checks of test/cli_checks.py, run by
# /usr/bin/python3 (with numpy).  Prints each failing check by name, then
# "cli: N checks passed"; exits 1 on any failure.
#
# Adding a case
# - One command, one exit status, one output pattern: a row of a case table
#   (CASES, TOKENIZER_CASES or BENCH_CASES below); see `cases`.
# - A numeric or JSON property of an output: a named check in
#   test/cli_checks.py, called here with `check NAME CHECK ARGS...`.
# - Anything that needs several commands: a block below, ending in pass/fail.

PY=/usr/bin/python3
HERE=$(dirname "$0")
CHECKS=$HERE/cli_checks.py

if [ $# -ne 2 ]; then
    echo "usage: sh test/test_cli.sh PATH/TO/skipless MODELS_DIR" >&2
    exit 2
fi
BIN=$1
MD=$2
if [ ! -x "$BIN" ]; then echo "test_cli: $BIN is not executable" >&2; exit 2; fi
if [ ! -f "$MD/manifest.json" ]; then echo "test_cli: no $MD/manifest.json" >&2; exit 2; fi
if ! "$PY" -c 'import numpy' 2>/dev/null; then echo "test_cli: $PY has no numpy" >&2; exit 2; fi
if [ ! -f "$CHECKS" ]; then echo "test_cli: no $CHECKS" >&2; exit 2; fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/skl_cli.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
OUT=$TMP/out
ERR=$TMP/err
TAB=$(printf '\t')

n_pass=0
n_fail=0

pass() { n_pass=$((n_pass + 1)); }
fail() {
    n_fail=$((n_fail + 1))
    echo "FAIL: $1: $2" >&2
    if [ -s "$ERR" ]; then sed 's/^/    stderr: /' "$ERR" | head -n 5 >&2; fi
}

# run ARGS...: run the binary with stdout/stderr captured; sets rc.
run() {
    "$BIN" "$@" >"$OUT" 2>"$ERR" </dev/null
    rc=$?
}

stderr_lines() { wc -l <"$ERR" | tr -d ' '; }

# (POSIX sh has no locals: helpers use _-prefixed names the callers do not.)

# expect_error CHECK ARGS...: non-zero exit and exactly one line on stderr.
expect_error() {
    _check=$1
    shift
    run "$@"
    if [ "$rc" -eq 0 ]; then
        fail "$_check" "exit 0, expected non-zero"
    elif [ "$(stderr_lines)" -ne 1 ]; then
        fail "$_check" "expected exactly one line on stderr, got $(stderr_lines)"
    else
        pass
    fi
}

# check NAME CHECK ARGS...: the named check of cli_checks.py passes (else its message is the failure).
check() {
    _check=$1
    shift
    if _msg=$("$PY" "$CHECKS" "$@" 2>&1 </dev/null); then pass; else fail "$_check" "$_msg"; fi
}

# match_all 'ERE && N:ERE ...' FILE: every pattern matches (N: exactly N lines); else says which not.
match_all() {
    _rest=$1
    while :; do
        case $_rest in
            *' && '*) _p=${_rest%% && *} _rest=${_rest#* && } ;;
            *) _p=$_rest _rest= ;;
        esac
        case $_p in
            [0-9]:* | [0-9][0-9]:*)
                _n=$(grep -Ec -- "${_p#*:}" "$2")
                [ "$_n" = "${_p%%:*}" ] || { echo "$_n lines match '${_p#*:}', expected ${_p%%:*}"; return 1; } ;;
            *) grep -Eq -- "$_p" "$2" || { echo "no line matches '$_p'"; return 1; } ;;
        esac
        [ -n "$_rest" ] || return 0
    done
}

# cases < TABLE: one check a row.  A row is shell words (evaluated, so $ANY,
# $TMP, "quotes" and $(...) work):
#     EXPECT  STREAM  PATTERN  NAME  ARGS...
# EXPECT: 0 (exit 0), !0 (non-zero exit), error (non-zero exit and exactly
# one line on stderr), or 1 / 2 (that exit status, a usage or a run-time
# error, and exactly one line on stderr); STREAM: out, err or - (no pattern); PATTERN: an
# extended regular expression a line of STREAM must match, or several joined
# by ' && ' (each must match); 'N:ERE' means exactly N lines match.  Blank
# lines and lines starting with # are skipped.
cases() {
    while IFS= read -r _row; do
        case $_row in '' | '#'*) continue ;; esac
        eval "set -- $_row"
        _expect=$1 _stream=$2 _pattern=$3 _name=$4
        shift 4
        run "$@"
        case $_expect in
            0) if [ "$rc" -ne 0 ]; then fail "$_name" "exit $rc, expected 0"; continue; fi ;;
            '!0') if [ "$rc" -eq 0 ]; then fail "$_name" "exit 0, expected non-zero"; continue; fi ;;
            error | 1 | 2)
                if [ "$rc" -eq 0 ]; then fail "$_name" "exit 0, expected non-zero"; continue; fi
                if [ "$_expect" != error ] && [ "$rc" -ne "$_expect" ]; then
                    fail "$_name" "exit $rc, expected $_expect"; continue
                fi
                if [ "$(stderr_lines)" -ne 1 ]; then
                    fail "$_name" "expected exactly one line on stderr, got $(stderr_lines)"; continue
                fi ;;
            *) fail "$_name" "bad EXPECT '$_expect' in the case table"; continue ;;
        esac
        case $_stream in
            -) pass ;;
            out | err)
                if [ "$_stream" = out ]; then _file=$OUT; else _file=$ERR; fi
                if _why=$(match_all "$_pattern" "$_file"); then pass
                else fail "$_name" "std$_stream: $_why"; fi ;;
            *) fail "$_name" "bad STREAM '$_stream' in the case table" ;;
        esac
    done
}

# ------------------------------------------------------------------ manifest
"$PY" "$CHECKS" manifest "$MD" "$TMP" || { echo "test_cli: cannot read the manifest" >&2; exit 2; }
ANY=$(head -n 1 "$TMP/good.tsv" | cut -f 2)
ANY_TOKS=$(head -n 1 "$TMP/good.tsv" | cut -f 3)
ANY_DIR=$(awk -F "$TAB" '$2 !~ /\.safetensors$/ { print $2; exit }' "$TMP/good.tsv")

# A copy of ANY_DIR that `merge MODEL MODEL` must refuse to write over (issue 15, defect 6).
SELF=$TMP/self
cp -r "$ANY_DIR" "$SELF" && ln -s "$SELF" "$TMP/self_link"

# ------------------------------------------------------------ usage, options
# (The rows of a table share their shape by design: a case is a row.)
cases <<'EOF'
# expect stream pattern                                  name                                    command line
0     out '^usage: skipless'                             "--help"                                --help
0     out '^skipless [0-9]+\.[0-9]+\.[0-9]+$'            "--version"                             --version
'!0'  err '^usage: skipless'                             "no arguments"
error - '' "unknown command"                         frobnicate "$ANY"
error - '' "generate unknown option"                 generate "$ANY" --tokens 1,2 --bogus
error - '' "logits unknown option"                   logits "$ANY" --tokens 1,2 --out "$TMP/x.npy" --bogus
error - '' "generate missing option value"           generate "$ANY" --tokens
error - '' "logits without --out"                    logits "$ANY" --tokens 1,2
error - '' "info nonexistent model"                  info "$TMP/no_such_model"
error - '' "generate --prompt without tokenizer"     generate "$ANY" --prompt "hello world"
error - '' "generate without --tokens or --prompt"   generate "$ANY" -n 1
error - '' "generate --tokens '1,,2'"                generate "$ANY" --tokens '1,,2' -n 1
error - '' "logits --tokens '1,,2'"                  logits "$ANY" --tokens '1,,2' --out "$TMP/x.npy"
error - '' "generate --tokens 'abc'"                 generate "$ANY" --tokens 'abc' -n 1
error - '' "logits --tokens 'abc'"                   logits "$ANY" --tokens 'abc' --out "$TMP/x.npy"
error - '' "generate --tokens '1,2,'"                generate "$ANY" --tokens '1,2,' -n 1
error - '' "logits --tokens '1,2,'"                  logits "$ANY" --tokens '1,2,' --out "$TMP/x.npy"
error - '' "generate --tokens ''"                    generate "$ANY" --tokens '' -n 1
error - '' "logits --tokens ''"                      logits "$ANY" --tokens '' --out "$TMP/x.npy"
error - '' "generate --tokens ',1'"                  generate "$ANY" --tokens ',1' -n 1
error - '' "logits --tokens ',1'"                    logits "$ANY" --tokens ',1' --out "$TMP/x.npy"
error - '' "generate --tokens '1;2'"                 generate "$ANY" --tokens '1;2' -n 1
error - '' "logits --tokens '1;2'"                   logits "$ANY" --tokens '1;2' --out "$TMP/x.npy"
error - '' "generate --tokens '99999999999'"         generate "$ANY" --tokens '99999999999' -n 1
error - '' "logits --tokens '99999999999'"           logits "$ANY" --tokens '99999999999' --out "$TMP/x.npy"
error - '' "generate -n 'x'"                         generate "$ANY" --tokens "$ANY_TOKS" -n 'x'
error - '' "generate -n '-1'"                        generate "$ANY" --tokens "$ANY_TOKS" -n '-1'
error - '' "generate -n '1.5'"                       generate "$ANY" --tokens "$ANY_TOKS" -n '1.5'
error - '' "generate --threads 0"                    generate "$ANY" --tokens "$ANY_TOKS" --threads 0
error - '' "generate --temp -1"                      generate "$ANY" --tokens "$ANY_TOKS" --temp -1
error - '' "generate --top-p 0"                      generate "$ANY" --tokens "$ANY_TOKS" --top-p 0
error - '' "plan unknown option"                     plan "$ANY_DIR/config.json" --bogus
error - '' "plan missing config"                     plan
error err 'is where the model was loaded from'         "merge MODEL MODEL"                     merge "$SELF" "$SELF"
error err 'is where the model was loaded from'         "merge MODEL MODEL/."                   merge "$SELF" "$SELF/."
error err 'is where the model was loaded from'         "merge MODEL symlink-to-MODEL"          merge "$SELF" "$TMP/self_link"
'!0'  err 'is where the model was loaded from'         "merge --in-memory MODEL MODEL"         merge "$SELF" "$SELF" --in-memory
error err 'is where the model was loaded from'         "merge MODEL MODEL/model.safetensors"   merge "$SELF" "$SELF/model.safetensors"
error - '' "merge unknown option"                    merge "$ANY" "$TMP/m_out" --bogus
error - '' "merge --remove bogus"                    merge "$ANY" "$TMP/m_out" --remove bogus
error - '' "merge --format bogus"                    merge "$ANY" "$TMP/m_out" --format bogus
error - '' "merge without OUT"                       merge "$ANY"
error - '' "merge --dtype bogus"                     merge "$ANY" "$TMP/m_out" --dtype f8
error - '' "merge --max-shard-size 0"                merge "$ANY" "$TMP/m_out" --max-shard-size 0
error - '' "merge --max-shard-size 0GB"              merge "$ANY" "$TMP/m_out" --max-shard-size 0GB
error - '' "merge --max-shard-size abc"              merge "$ANY" "$TMP/m_out" --max-shard-size abc
error - '' "merge --max-shard-size 5XB"              merge "$ANY" "$TMP/m_out" --max-shard-size 5XB
error - '' "merge --max-shard-size GB"               merge "$ANY" "$TMP/m_out" --max-shard-size GB
error - '' "merge --max-shard-size -5"               merge "$ANY" "$TMP/m_out" --max-shard-size -5
error - '' "merge --max-shard-size 1.5GB"            merge "$ANY" "$TMP/m_out" --max-shard-size 1.5GB
error - '' "merge --max-shard-size ' 5GB'"           merge "$ANY" "$TMP/m_out" --max-shard-size ' 5GB'
error - '' "merge --max-shard-size 2^64"             merge "$ANY" "$TMP/m_out" --max-shard-size 18446744073709551616
error - '' "merge --max-shard-size overflow GiB"     merge "$ANY" "$TMP/m_out" --max-shard-size 17179869184GiB
error - '' "merge --max-shard-size missing"          merge "$ANY" "$TMP/m_out" --max-shard-size
0     out '^saved'                                   "merge --max-shard-size 20KB"           merge "$ANY_DIR" "$TMP/m_s1" --max-shard-size 20KB
0     out '^saved'                                   "merge --max-shard-size 5GB"            merge "$ANY_DIR" "$TMP/m_s2" --max-shard-size 5GB
0     out '^saved'                                   "merge --max-shard-size 500MB"          merge "$ANY_DIR" "$TMP/m_s3" --max-shard-size 500MB
0     out '^saved'                                   "merge --max-shard-size 1GiB"           merge "$ANY_DIR" "$TMP/m_s4" --max-shard-size 1GiB
0     out '^saved'                                   "merge --max-shard-size 64KiB"          merge "$ANY_DIR" "$TMP/m_s5" --max-shard-size 64KiB
0     out '^saved'                                   "merge --max-shard-size 2MiB"           merge "$ANY_DIR" "$TMP/m_s6" --max-shard-size 2MiB
0     out '^saved'                                   "merge --max-shard-size 30000 (bytes)"  merge "$ANY_DIR" "$TMP/m_s7" --max-shard-size 30000
0     out '^saved'                                   "merge --max-shard-size 20kb"           merge "$ANY_DIR" "$TMP/m_s8" --max-shard-size 20kb
0     out '^saved'                                   "merge --in-memory --max-shard-size 20KB" merge "$ANY_DIR" "$TMP/m_s9" --in-memory --max-shard-size 20KB
0     err '^block 1 of [0-9]+, [0-9.]+ GFLOP/s, [0-9]+ s left' "merge: progress on stderr"     merge "$ANY_DIR" "$TMP/m_s10"
0     out '^merge plan'                              "plan"                                  plan "$ANY_DIR/config.json"
0     out '^verification: inconclusive'              "merge --verify of a vanishing model"   merge "$MD/degenerate/vanishing" "$TMP/m_v1" --verify
0     out '^verification: inconclusive'              "merge --verify of an overflowing model" merge "$MD/degenerate/overflowing" "$TMP/m_v2" --verify
EOF
if diff -r "$ANY_DIR" "$SELF" >/dev/null; then pass; else fail "merge MODEL MODEL" "the model changed"; fi

# merge --dtype: the changed weights are stored as asked (the others keep the
# file's dtype, F32 here) and the merged model stays within 8 unit roundoffs
# of the storage dtype of the original's float64 reference.
line=$(awk -F "$TAB" '$1 == "serial_mha_silu_glu"' "$TMP/good.tsv")
m_path=$(printf '%s' "$line" | cut -f 2)
m_toks=$(printf '%s' "$line" | cut -f 3)
m_ref=$(printf '%s' "$line" | cut -f 4)
for dt in f16 bf16 same; do
    run merge "$m_path" "$TMP/m_dt_$dt" --dtype $dt
    if [ "$rc" -ne 0 ]; then fail "merge --dtype $dt" "exit $rc"; continue; fi
    if ! run logits "$TMP/m_dt_$dt" --tokens "$m_toks" --out "$TMP/m_dt.npy" || [ "$rc" -ne 0 ]; then
        fail "merge --dtype $dt" "logits exit $rc"; continue
    fi
    check "merge --dtype $dt" merge-dtype "$TMP/m_dt_$dt/model.safetensors" "$TMP/m_dt.npy" "$m_ref" $dt
    rm -rf "$TMP/m_dt_$dt" "$TMP/m_dt.npy"
done

# ------------------------------------------------------------ quantize
# Usage errors exit 1 before a model is loaded (--keep's layer beyond the
# model's once it is), run-time errors 2; the quantized models load, show their
# dtypes and generate.
SRC=$MD/models/serial_mha_silu_glu
cases <<'EOF'
1     err '^skipless: quantize: need MODEL, OUT and --type' "quantize without --type"  quantize "$SRC" "$TMP/q_out"
1     - ''                                          "quantize without OUT"              quantize "$SRC" --type q8_0
1     - ''                                          "quantize without arguments"        quantize
1     err "got 'q5_0'"                              "quantize --type q5_0"              quantize "$SRC" "$TMP/q_out" --type q5_0
1     err "got 'f16'"                               "quantize --type f16"               quantize "$SRC" "$TMP/q_out" --type f16
1     - ''                                          "quantize --type without a value"   quantize "$SRC" "$TMP/q_out" --type
1     err "got 'embed_tokens'"                      "quantize --keep embed_tokens"      quantize "$SRC" "$TMP/q_out" --type q8_0 --keep embed_tokens
1     - ''                                          "quantize --keep 'lm_head,'"        quantize "$SRC" "$TMP/q_out" --type q8_0 --keep 'lm_head,'
1     - ''                                          "quantize --keep a leading zero"    quantize "$SRC" "$TMP/q_out" --type q8_0 --keep model.layers.01.mlp.down_proj
1     - ''                                          "quantize --keep model.layers.0.down_proj" quantize "$SRC" "$TMP/q_out" --type q8_0 --keep model.layers.0.down_proj
1     err 'names layer 7, but .* has 2 layers'      "quantize --keep beyond the layers" quantize "$SRC" "$TMP/q_out" --type q8_0 --keep model.layers.7.mlp.down_proj
1     - ''                                          "quantize --format bogus"           quantize "$SRC" "$TMP/q_out" --type q8_0 --format bogus
1     - ''                                          "quantize --max-shard-size 0"       quantize "$SRC" "$TMP/q_out" --type q8_0 --max-shard-size 0
1     - ''                                          "quantize unknown option"           quantize "$SRC" "$TMP/q_out" --type q8_0 --bogus
1     - ''                                          "quantize extra argument"           quantize "$SRC" "$TMP/q_out" extra --type q8_0
2     err 'no_such_model'                           "quantize a nonexistent model"      quantize "$TMP/no_such_model" "$TMP/q_out" --type q8_0
0     out '^quantized .* to Q8_0$ && ^  linear weights by dtype: Q8_0 [0-9]+$ && ^saved' "quantize q8_0" quantize "$SRC" "$TMP/q8" --type q8_0
0     err '^quantized block 1 of 3, [0-9]+ s left'  "quantize: progress on stderr"      quantize "$SRC" "$TMP/q8b" --type Q8_0
0     out 'linear weights by dtype: F32 [0-9]+, Q4_0 [0-9]+$' "quantize q4_0 --keep"   quantize "$SRC" "$TMP/q4k" --type q4_0 --keep lm_head,down_proj
0     out '^saved'                                  "quantize --format file"            quantize "$SRC" "$TMP/q4.safetensors" --type q4_0 --format file
0     out '^saved'                                  "quantize --max-shard-size 20KB"    quantize "$SRC" "$TMP/q4s" --type q4_0 --max-shard-size 20KB
0     out '^quantized'                              "quantize as models.py did"         quantize "$SRC" "$TMP/q4h" --type q4_0 --keep lm_head
0     out '^weight dtype: +Q8_0 \(linear layers and lm_head: Q8_0 [0-9]+\)$' "info of a Q8_0 model" info "$TMP/q8"
0     out '^weight dtype: +mixed \(linear layers and lm_head: F32 [0-9]+, Q4_0 [0-9]+\)$' "info of a mixed model" info "$TMP/q4k"
0     out '^decode bytes: +[0-9]+ bytes'            "info: decode bytes"                info "$TMP/q4s"
0     out '^[0-9]+(,[0-9]+)*$'                      "generate on a quantized model"     generate "$TMP/q8" --tokens 1,2 -n 3
0     out '^saved'                                  "merge --dtype q8_0"                merge "$SRC" "$TMP/mq8" --dtype q8_0
0     out '^saved'                                  "merge --dtype Q4_0 --keep lm_head" merge "$SRC" "$TMP/mq4" --dtype Q4_0 --keep lm_head
0     out '^weight dtype: +Q8_0 '                   "info of a q8_0 merge"              info "$TMP/mq8"
0     out '^weight dtype: +mixed \(linear layers and lm_head: F32 8192, Q4_0 [0-9]+\)$' "info of a q4_0 merge keeping lm_head" info "$TMP/mq4"
1     err 'goes with --dtype q8_0 or q4_0'          "merge --keep without a quantized dtype" merge "$SRC" "$TMP/m_out" --keep lm_head
1     - ''                                          "merge --keep bogus"                merge "$SRC" "$TMP/m_out" --dtype q8_0 --keep bogus
1     err 'names layer 9'                           "merge --keep beyond the layers"    merge "$SRC" "$TMP/m_out" --dtype q8_0 --keep model.layers.9.self_attn.k_proj
EOF
check "quantize --keep lm_head: the tensors models.py made" same-tensors "$TMP/q4h" "$MD/models/q4_serial_mha_silu_glu_keep_head"
check "quantize --max-shard-size: the same tensors as one file" same-tensors "$TMP/q4s" "$TMP/q4.safetensors"
if [ -f "$TMP/q4s/model-00004-of-00004.safetensors" ]; then pass; else fail "quantize --max-shard-size 20KB" "not 4 shards"; fi
rm -rf "$TMP/q8" "$TMP/q8b" "$TMP/q4k" "$TMP/q4.safetensors" "$TMP/q4s" "$TMP/q4h" "$TMP/mq8" "$TMP/mq4"
if [ ! -e "$TMP/q_out" ] && [ ! -e "$TMP/m_out" ]; then pass; else fail "quantize and merge errors" "wrote an output"; fi

run plan "$ANY_DIR/config.json" --json
if [ "$rc" -ne 0 ]; then fail "plan --json" "exit $rc"; else check "plan --json" plan-json "$OUT"; fi

# ------------------------------------------------------------- bad models
while IFS=$TAB read -r name path; do
    expect_error "info bad/$name" info "$path"
done <"$TMP/bad.tsv"

# ------------------------------------------------------------- good models
while IFS=$TAB read -r name path toks ref block attn vocab greedy; do
    # info: block type and attention kind
    run info "$path"
    if [ "$rc" -ne 0 ]; then fail "info $name" "exit $rc"
    elif ! grep -Eq "^block type: +$block\$" "$OUT"; then fail "info $name" "no 'block type: $block' line"
    elif ! grep -Eq "^attention: +$attn " "$OUT"; then fail "info $name" "no 'attention: $attn' line"
    else pass; fi
    check "info memory $name" info-memory "$path" "$OUT"

    # logits, prefill and token-by-token decode, against the float64 reference
    for mode in prefill decode; do
        npy=$TMP/$name.$mode.npy
        if [ "$mode" = decode ]; then run logits "$path" --tokens "$toks" --out "$npy" --decode
        else run logits "$path" --tokens "$toks" --out "$npy"; fi
        if [ "$rc" -ne 0 ]; then fail "logits $mode $name" "exit $rc"
        else check "logits $mode $name" logits "$npy" "$ref"; fi
        rm -f "$npy"
    done

    # out-of-range token ids
    expect_error "logits token $vocab (= vocab) $name" logits "$path" --tokens "0,$vocab" --out "$TMP/x.npy"
    expect_error "generate token -1 $name" generate "$path" --tokens "-1" -n 1

    # greedy generation: 5 comma-separated ids, stats on stderr
    run generate "$path" --tokens "$toks" -n 5 --temp 0
    if [ "$rc" -ne 0 ]; then
        fail "generate greedy $name" "exit $rc"
    elif ! grep -Eqx '[0-9]+(,[0-9]+){4}' "$OUT" || [ "$(wc -l <"$OUT" | tr -d ' ')" -ne 1 ]; then
        fail "generate greedy $name" "stdout is '$(head -c 200 "$OUT")', expected 5 comma-separated ids"
    elif ! grep -q 'tok/s' "$ERR"; then
        fail "generate greedy $name" "no tokens/s line on stderr"
    elif [ "$greedy" -ge 0 ] && [ "$(cut -d, -f1 "$OUT")" != "$greedy" ]; then
        fail "generate greedy $name" "first token $(cut -d, -f1 "$OUT"), reference argmax is $greedy"
    else
        pass
    fi
    check "generate memory $name" generate-memory "$path" "$ERR" default

    # merge (auto removal) + save + reload: the merged model must give the
    # original model's logits; a model it does not apply to fails cleanly.
    case $path in
        *.safetensors) merged=$TMP/$name.merged.safetensors ;;
        *) merged=$TMP/$name.merged ;;
    esac
    run merge "$path" "$merged"
    if [ "$rc" -eq 0 ]; then
        if ! grep -q '^saved ' "$OUT"; then
            fail "merge $name" "no 'saved' line"
        elif ! run info "$merged" || [ "$rc" -ne 0 ] || grep -q '^absent projections: q 0, k 0, v 0, o 0 ' "$OUT"; then
            fail "merge $name" "merged model: info exit $rc or no absent projection"
        elif ! run logits "$merged" --tokens "$toks" --out "$TMP/merged.npy" || [ "$rc" -ne 0 ]; then
            fail "merge $name" "logits of the merged model: exit $rc"
        else
            check "merge $name (merged logits)" logits "$TMP/merged.npy" "$ref"
        fi
    elif [ "$rc" -ne 2 ]; then
        fail "merge $name" "exit $rc, expected 0 or 2 (library error)"
    elif [ "$(stderr_lines)" -ne 1 ] || ! grep -q '^skipless: merge: ' "$ERR"; then
        fail "merge $name" "expected one 'skipless: merge:' line on stderr"
    else
        pass
    fi
    rm -rf "$merged" "$TMP/merged.npy"

    # sampling: the same seed twice gives the same tokens
    run generate "$path" --tokens "$toks" -n 8 --temp 1 --top-k 0 --top-p 1 --seed 1234
    first_rc=$rc
    cp "$OUT" "$TMP/seed1"
    run generate "$path" --tokens "$toks" -n 8 --temp 1 --top-k 0 --top-p 1 --seed 1234
    if [ "$first_rc" -ne 0 ] || [ "$rc" -ne 0 ]; then
        fail "generate seeded $name" "exit $first_rc / $rc"
    elif ! grep -Eqx '[0-9]+(,[0-9]+){7}' "$OUT"; then
        fail "generate seeded $name" "stdout is '$(head -c 200 "$OUT")', expected 8 ids"
    elif ! cmp -s "$OUT" "$TMP/seed1"; then
        fail "generate seeded $name" "same seed gave '$(cat "$TMP/seed1")' then '$(cat "$OUT")'"
    else
        pass
    fi
done <"$TMP/good.tsv"

# merge --verify runs the library's own probe-token comparison
run merge "$ANY_DIR" "$TMP/verified" --verify --format dir
if [ "$rc" -ne 0 ]; then fail "merge --verify" "exit $rc"
elif ! grep -q '^verification: ' "$OUT"; then fail "merge --verify" "no verification line"
elif [ ! -f "$TMP/verified/config.json" ] || [ ! -f "$TMP/verified/model.safetensors" ]; then
    fail "merge --verify" "--format dir did not write config.json + model.safetensors"
else pass; fi

# merge --max-shard-size: 20KB gives Hugging Face's sharded layout, 5GB one
# model.safetensors and no index; both give the same logits, bit for bit.
dir_toks=$(awk -F "$TAB" -v d="$ANY_DIR" '$2 == d { print $3; exit }' "$TMP/good.tsv")
n_shards=$(ls "$TMP/m_s1" | grep -c '^model-[0-9]\{5\}-of-[0-9]\{5\}\.safetensors$')
if [ ! -f "$TMP/m_s1/model.safetensors.index.json" ] || [ "$n_shards" -lt 3 ] || [ -e "$TMP/m_s1/model.safetensors" ]; then
    fail "merge --max-shard-size 20KB" "expected 3+ shards and the index, got $n_shards shards"
elif [ -e "$TMP/m_s2/model.safetensors.index.json" ] || [ ! -f "$TMP/m_s2/model.safetensors" ]; then
    fail "merge --max-shard-size 5GB" "expected one model.safetensors and no index"
elif ! run logits "$TMP/m_s1" --tokens "$dir_toks" --out "$TMP/s1.npy" || [ "$rc" -ne 0 ] ||
     ! run logits "$TMP/m_s2" --tokens "$dir_toks" --out "$TMP/s2.npy" || [ "$rc" -ne 0 ]; then
    fail "merge --max-shard-size" "logits exit $rc"
elif ! cmp -s "$TMP/s1.npy" "$TMP/s2.npy"; then
    fail "merge --max-shard-size" "sharded and single-file logits differ"
else pass; fi

# the streaming merge (default) writes the files the in-memory merge + save write
if ! diff -r "$TMP/m_s1" "$TMP/m_s9" >/dev/null; then
    fail "merge --in-memory" "the streamed and the in-memory merge wrote different files"
else pass; fi

# ------------------------------------------------------ context size, -c
# -c N / --ctx N / --ctx=N: 1..max_position_embeddings (the test models allow 64); a value
# above the model's limit is a usage error found after loading (exit 1).
cases <<'EOF'
# expect stream pattern                                  name                                    command line
0     err ', 5 positions \| '                           "generate -c 5"                         generate "$ANY" --tokens 1 -n 2 -c 5
0     err ', 7 positions \| '                           "generate --ctx 7"                      generate "$ANY" --tokens 1 -n 2 --ctx 7
0     err ', 9 positions \| '                           "generate --ctx=9"                      generate "$ANY" --tokens 1 -n 2 --ctx=9
0     err ', 64 positions \| '                          "generate -c 64 (the maximum)"          generate "$ANY" --tokens 1 -n 2 -c 64
0     err 'stop: context full'                          "generate -c 3: context full"           generate "$ANY" --tokens 1 -n 5 -c 3
error err "got '0'"                                     "generate -c 0"                         generate "$ANY" --tokens 1 -c 0
error err "got '-2'"                                    "generate --ctx=-2"                     generate "$ANY" --tokens 1 --ctx=-2
error err "got 'x'"                                     "generate --ctx x"                      generate "$ANY" --tokens 1 --ctx x
error err "got ''"                                      "generate --ctx="                       generate "$ANY" --tokens 1 --ctx=
error err "got '1.5'"                                   "generate -c 1.5"                       generate "$ANY" --tokens 1 -c 1.5
error err 'needs a value'                               "generate -c without value"             generate "$ANY" --tokens 1 -c
error err '-c/--ctx 65 exceeds the max_position_embeddings 64 of' "generate -c 65"             generate "$ANY" --tokens 1 -c 65
error err '^skipless: generate: skl_eval: 4 tokens do not fit' "generate prompt over -c"       generate "$ANY" --tokens 1,2,3,4 -c 3
error err 'unknown option --ctxx'                       "generate --ctxx"                       generate "$ANY" --tokens 1 --ctxx 3
EOF
for c in "-c 11" "--ctx 12" "--ctx=13"; do
    # shellcheck disable=SC2086
    run generate "$ANY" --tokens 1 -n 2 $c
    if [ "$rc" -ne 0 ]; then fail "generate $c memory" "exit $rc"
    else check "generate $c memory" generate-memory "$ANY" "$ERR" "${c##*[ =]}"; fi
done
run generate "$ANY" --tokens 1 -c 65
if [ "$rc" -ne 1 ]; then fail "generate -c 65 exit status" "exit $rc, expected 1 (usage)"; else pass; fi
run generate "$ANY" --tokens 1 -c 0
if [ "$rc" -ne 1 ]; then fail "generate -c 0 exit status" "exit $rc, expected 1 (usage)"; else pass; fi

# A context that cannot be allocated: ANY_DIR's weights under a config allowing 2^24
# positions, and an address space of 1 GiB (ulimit -v): one line, exit 2, naming the bytes.
# A sanitizer build cannot start under ulimit -v (its shadow memory); test_api.c's
# test_context_nomem covers the library's message there.
LONG=$TMP/long_context
LONG_CTX=16777216
"$PY" "$CHECKS" long-context "$ANY_DIR" "$LONG" $LONG_CTX
if (ulimit -v 1048576 && "$BIN" --version) >/dev/null 2>&1; then
    (ulimit -v 1048576 && exec "$BIN" generate "$LONG" --tokens 1 -n 1 -c $LONG_CTX) >"$OUT" 2>"$ERR" </dev/null
    rc=$?
    if [ "$rc" -ne 2 ] || [ "$(stderr_lines)" -ne 1 ]; then
        fail "generate -c $LONG_CTX out of memory" "exit $rc (expected 2), $(stderr_lines) stderr lines (expected 1)"
    else check "generate -c $LONG_CTX out of memory" nomem "$LONG" "$ERR" $LONG_CTX; fi
else
    echo "test_cli: $BIN does not start under ulimit -v (a sanitizer build): out-of-memory case left to test_api.c"
fi
# Issue 15, defect 3: without -c the context is min(4096, max_position_embeddings) positions, so
# the same model generates in an address space of 1 GiB (a full 2^24-position context needs 2 GiB
# of KV cache alone).
if (ulimit -v 1048576 && "$BIN" --version) >/dev/null 2>&1; then
    (ulimit -v 1048576 && exec "$BIN" generate "$LONG" --tokens 1 -n 2) >"$OUT" 2>"$ERR" </dev/null
    rc=$?
    if [ "$rc" -ne 0 ] || ! grep -q ', 4096 positions' "$ERR"; then
        fail "generate default context under ulimit -v 1 GiB" "exit $rc: $(head -c 300 "$ERR")"
    else pass; fi
fi
run info "$LONG"
if [ "$rc" -ne 0 ]; then fail "info long context" "exit $rc"; else check "info long context" info-memory "$LONG" "$OUT"; fi

# ---------------------------------------------------------------- tokenizer
# Models carrying a tokenizer.json (test/tokenizers.py); ids are compared with
# @huggingface/tokenizers by test/tokenizers_js/compare.mjs, here the CLI.
TOKD=$MD/models/tok_plain
TOKF=$MD/models/tok_prefix.safetensors
EOT=$("$PY" "$CHECKS" eot-id "$MD/tokenizers/bpe_plain.json")

for tm in "$TOKD" "$TOKF"; do
    run tokenize "$tm" --text "Hello world, don't stop"
    ids=$(cat "$OUT")
    if [ "$rc" -ne 0 ] || ! grep -Eqx '[0-9]+(,[0-9]+)+' "$OUT"; then
        fail "tokenize $tm" "exit $rc, stdout '$ids'"
    else pass; fi
    run detokenize "$tm" --tokens "$ids"
    case $tm in
        "$TOKD") want="Hello world, don't stop" ;;
        *) want=" Hello world, don't stop" ;;   # add_prefix_space
    esac
    if [ "$rc" -ne 0 ] || [ "$(cat "$OUT")" != "$want" ]; then
        fail "detokenize $tm" "exit $rc, stdout '$(cat "$OUT")', expected '$want'"
    else pass; fi
    # TOKENIZER_CASES: run for each tokenizer model $tm
    cases <<'EOF'
error - '' "tokenize without --text $tm"             tokenize "$tm"
error - '' "tokenize --text without value $tm"       tokenize "$tm" --text
error - '' "tokenize unknown option $tm"             tokenize "$tm" --text x --bogus
error - '' "detokenize id out of range $tm"          detokenize "$tm" --tokens 1,99999
error - '' "detokenize negative id $tm"              detokenize "$tm" --tokens -1
error - '' "detokenize malformed --tokens $tm"       detokenize "$tm" --tokens 1,,2
EOF
    run detokenize "$tm" --tokens ''
    if [ "$rc" -ne 0 ] || [ "$(cat "$OUT")" != "" ]; then fail "detokenize no ids $tm" "exit $rc"; else pass; fi
    run tokenize "$tm" --text ''
    if [ "$rc" -ne 0 ] || [ "$(cat "$OUT")" != "" ]; then fail "tokenize empty text $tm" "exit $rc"; else pass; fi

    # generate --prompt streams text; the same ids via --tokens give the same text
    run generate "$tm" --prompt "the thing" -n 12 --temp 0 --no-eos-stop
    cp "$OUT" "$TMP/gen_prompt"
    prompt_rc=$rc
    run tokenize "$tm" --text "the thing"
    run generate "$tm" --tokens "$(cat "$OUT")" -n 12 --temp 0 --no-eos-stop
    if [ "$prompt_rc" -ne 0 ] || [ "$rc" -ne 0 ]; then
        fail "generate --prompt $tm" "exit $prompt_rc / $rc"
    elif ! cmp -s "$OUT" "$TMP/gen_prompt"; then
        fail "generate --prompt $tm" "'$(cat "$TMP/gen_prompt")' differs from --tokens '$(cat "$OUT")'"
    elif grep -Eqx '[0-9]+(,[0-9]+)*' "$OUT"; then
        fail "generate --prompt $tm" "printed ids, not text"
    else pass; fi
    # --ids prints the generated ids instead of text; they detokenize to the same text
    run generate "$tm" --prompt "the thing" -n 12 --temp 0 --no-eos-stop --ids
    if [ "$rc" -ne 0 ] || ! grep -Eqx '[0-9]+(,[0-9]+){11}' "$OUT"; then
        fail "generate --ids $tm" "exit $rc, stdout '$(cat "$OUT")'"
    else
        run detokenize "$tm" --tokens "$(cat "$OUT")"
        if [ "$rc" -ne 0 ] || ! cmp -s "$OUT" "$TMP/gen_prompt"; then
            fail "generate --ids $tm" "ids detokenize to '$(cat "$OUT")', text was '$(cat "$TMP/gen_prompt")'"
        else pass; fi
    fi
    cases <<'EOF'
error - '' "generate --prompt and --tokens $tm"      generate "$tm" --prompt x --tokens 1
error - '' "generate --prompt invalid UTF-8 $tm"     generate "$tm" --prompt "$(printf 'a\377b')"
EOF
done

# generate stops at the eos token (<|endoftext|>) by default: find a seed whose
# --no-eos-stop output holds it; the default run must end right before it.
found=0
for seed in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    run generate "$TOKD" --tokens 1 -n 200 --temp 1.5 --top-k 0 --top-p 1 --seed "$seed" --no-eos-stop
    if grep -q '<|endoftext|>' "$OUT"; then found=$seed; break; fi
done
if [ "$found" -eq 0 ]; then
    fail "generate eos stop" "no seed in 1..20 samples <|endoftext|>"
else
    cp "$OUT" "$TMP/no_eos"
    run generate "$TOKD" --tokens 1 -n 200 --temp 1.5 --top-k 0 --top-p 1 --seed "$found"
    if [ "$rc" -ne 0 ] || ! grep -q 'stop: stop token' "$ERR"; then
        fail "generate eos stop" "exit $rc, stderr '$(cat "$ERR")'"
    else check "generate eos stop" eos-prefix "$TMP/no_eos" "$OUT"; fi
fi

# added tokens: recognised by default, plain text with --plain
run tokenize "$TOKD" --text "a<|endoftext|>b"
if [ "$rc" -ne 0 ] || ! tr ',' '\n' <"$OUT" | grep -qx "$EOT"; then
    fail "tokenize added token" "exit $rc, '$(cat "$OUT")' lacks $EOT"
else pass; fi
run tokenize "$TOKD" --text "a<|endoftext|>b" --plain
if [ "$rc" -ne 0 ] || tr ',' '\n' <"$OUT" | grep -qx "$EOT"; then
    fail "tokenize --plain" "exit $rc, '$(cat "$OUT")' holds $EOT"
else pass; fi
run detokenize "$TOKD" --tokens "$(cat "$OUT")"
if [ "$rc" -ne 0 ] || [ "$(cat "$OUT")" != "a<|endoftext|>b" ]; then
    fail "detokenize --plain ids" "exit $rc, '$(cat "$OUT")'"
else pass; fi
cases <<'EOF'
'!0'  err 'byte offset 4'                            "tokenize invalid UTF-8"               tokenize "$TOKD" --text "$(printf 'bad \377 utf8')"
error - '' "tokenize model without tokenizer"        tokenize "$ANY" --text hi
error - '' "detokenize model without tokenizer"      detokenize "$ANY" --tokens 1
EOF

# merge keeps the tokenizer (directory and single file)
for fmt in dir file; do
    run merge "$TOKD" "$TMP/tok_merged_$fmt" --format "$fmt"
    merge_rc=$rc
    run tokenize "$TOKD" --text "Café <sep> 42"
    cp "$OUT" "$TMP/tok_orig"
    run tokenize "$TMP/tok_merged_$fmt" --text "Café <sep> 42"
    if [ "$merge_rc" -ne 0 ] || [ "$rc" -ne 0 ] || ! cmp -s "$OUT" "$TMP/tok_orig"; then
        fail "merge keeps the tokenizer ($fmt)" "exit $merge_rc / $rc"
    else pass; fi
done

# ------------------------------------------------------------------ bench
# No timing assertions (cli_checks.py bench): the figures must be present,
# finite and positive, and bytes_per_token, dtype and merged must match an
# independent count from the file.
BENCH_SMALL="--prompt-len 8 --gen 4 --repeat 2 --ceiling-mib 16"
# bench_json NAME MODEL THREADS EXTRA_ARGS: `bench MODEL EXTRA_ARGS $BENCH_SMALL --json`, checked.
bench_json() {
    # shellcheck disable=SC2086
    run bench "$2" $4 $BENCH_SMALL --json
    if [ "$rc" -ne 0 ]; then fail "$1" "exit $rc"
    else BENCH_ARGS="$4" check "$1" bench "$2" "$OUT" "$3"; fi
}
bench_json "bench --json" "$ANY" 2 "--threads 2"
# --no-mmap: weights read onto huge pages, reported as use_mmap false
bench_json "bench --no-mmap --json" "$ANY" 1 "--no-mmap"
# --ceiling weights: the ceiling reads the memory decode reads (with --no-mmap too); buffer: the buffer
bench_json "bench --ceiling weights --json" "$ANY" 1 "--ceiling weights"
bench_json "bench --ceiling weights --json (directory)" "$ANY_DIR" 1 "--ceiling weights"
bench_json "bench --ceiling weights --no-mmap --json" "$ANY" 1 "--ceiling weights --no-mmap"
bench_json "bench --ceiling buffer --json" "$ANY" 1 "--ceiling buffer"
# the merged model written above: fewer bytes per token than its original
bench_json "bench --json original" "$ANY_DIR" 1 ""
ANY_DIR_BYTES=$("$PY" "$CHECKS" json-field "$OUT" bytes_per_token 2>/dev/null)
bench_json "bench --json merged" "$TMP/verified" 1 ""
if [ "$rc" -eq 0 ]; then check "bench merged bytes" bench-fewer-bytes "$OUT" "${ANY_DIR_BYTES:-0}"; fi
# --compare: the original and its merged form back to back in one process; each model's object
# passes the single-model checks, and the speedup is recomputed from the per-repeat times
# shellcheck disable=SC2086
run bench "$ANY_DIR" --compare "$TMP/verified" $BENCH_SMALL --repeat 3 --json
if [ "$rc" -ne 0 ]; then fail "bench --compare --json" "exit $rc"
else
    cp "$OUT" "$TMP/compare.json"
    for k in 0 1; do
        if [ "$k" = 0 ]; then model=$ANY_DIR; else model=$TMP/verified; fi
        "$PY" "$CHECKS" json-pick "$TMP/compare.json" models "$k" "$TMP/compare-$k.json"
        check "bench --compare model $k" bench "$model" "$TMP/compare-$k.json" 1
    done
    check "bench --compare figures" bench-compare "$TMP/compare.json"
fi
run bench --blas --threads 2 --prompt-len 8 --ceiling-mib 16 --json
if [ "$rc" -ne 0 ]; then fail "bench --blas --json" "exit $rc"; else check "bench --blas --json" bench-blas "$OUT"; fi
# two models of different vocabulary sizes cannot take the same prompt
if OTHER_VOCAB=$("$PY" "$CHECKS" other-vocab "$MD/models" "$ANY_DIR" 2>&1) && [ -n "$OTHER_VOCAB" ]; then
    # shellcheck disable=SC2086
    expect_error "bench --compare other vocabulary" bench "$ANY_DIR" --compare "$OTHER_VOCAB" $BENCH_SMALL
else fail "bench --compare other vocabulary" "$OTHER_VOCAB"; fi

# BENCH_CASES
cases <<'EOF'
# expect stream pattern                                 name                                  command line
0     out '^ceiling .*of weights a decode step reads'    "bench --ceiling weights text"        bench "$ANY" $BENCH_SMALL --ceiling weights
0     out '2:^decode  && ^compare .*bound x'             "bench --compare text"                bench "$ANY_DIR" --compare "$TMP/verified" $BENCH_SMALL
0     out '^decode  && ^prefill  && ^ceiling '           "bench text"                          bench "$ANY" $BENCH_SMALL
0     out '^memory +weights [0-9]+ bytes .*KV cache [0-9]+ bytes .*for 12 positions' "bench text memory" bench "$ANY" $BENCH_SMALL
error - '' "bench --threads 0"                       bench "$ANY" --threads 0
error - '' "bench --threads x"                       bench "$ANY" --threads x
error - '' "bench --prompt-len 0"                    bench "$ANY" --prompt-len 0
error - '' "bench --gen 0"                           bench "$ANY" --gen 0
error - '' "bench --gen 1.5"                         bench "$ANY" --gen 1.5
error - '' "bench --repeat -1"                       bench "$ANY" --repeat -1
error - '' "bench --ceiling-mib 1"                   bench "$ANY" --ceiling-mib 1
error - '' "bench --bogus"                           bench "$ANY" --bogus
error - '' "bench --prompt-len 60 --gen 60"          bench "$ANY" --prompt-len 60 --gen 60
error - '' "bench --threads"                         bench "$ANY" --threads
error - '' "bench missing model"                     bench --threads 2
error - '' "bench --blas with model"                 bench "$ANY" --blas
error - '' "bench --blas --gen"                      bench --blas --gen 4
error - '' "bench --blas --no-mmap"                  bench --blas --no-mmap
error - '' "bench two models"                        bench "$ANY" "$ANY"
error - '' "bench nonexistent model"                 bench "$TMP/no_such_model"
error - '' "bench --compare without value"           bench "$ANY" --compare
error - '' "bench --compare nonexistent"             bench "$ANY" --compare "$TMP/no_such_model"
error - '' "bench --blas --compare"                  bench --blas --compare "$ANY"
error - '' "bench --ceiling bogus"                   bench "$ANY" --ceiling bogus
error - '' "bench --ceiling without value"           bench "$ANY" --ceiling
error - '' "bench --blas --ceiling"                  bench --blas --ceiling buffer
EOF

# ---------------------------------------------------------------- summary
if [ "$n_fail" -ne 0 ]; then
    echo "cli: $n_fail of $((n_pass + n_fail)) checks FAILED" >&2
    exit 1
fi
echo "cli: $n_pass checks passed"
exit 0
