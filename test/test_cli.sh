#!/bin/sh
# test_cli.sh - end-to-end checks of the skipless command-line tool.
#
#   sh test/test_cli.sh PATH/TO/skipless MODELS_DIR
#
# Covers usage and option errors, info on every good and bad model, logits
# (prefill and --decode) against the references, generate (greedy, seeded),
# plan, and merge + save + reload against the same references.
#
# MODELS_DIR is the output of `/usr/bin/python3 test/models.py MODELS_DIR`
# (it holds manifest.json, models/, bad/ and the float64 *.ref.npy logits).
# Numeric comparisons are done by /usr/bin/python3 with numpy.  Prints each
# failing check by name, then "cli: N checks passed"; exits 1 on any failure.

PY=/usr/bin/python3

if [ $# -ne 2 ]; then
    echo "usage: sh test/test_cli.sh PATH/TO/skipless MODELS_DIR" >&2
    exit 2
fi
BIN=$1
MD=$2
if [ ! -x "$BIN" ]; then echo "test_cli: $BIN is not executable" >&2; exit 2; fi
if [ ! -f "$MD/manifest.json" ]; then echo "test_cli: no $MD/manifest.json" >&2; exit 2; fi
if ! "$PY" -c 'import numpy' 2>/dev/null; then echo "test_cli: $PY has no numpy" >&2; exit 2; fi

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

# expect_error CHECK ARGS...: non-zero exit and exactly one line on stderr.
# (POSIX sh has no locals: helpers use _-prefixed names the callers do not.)
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

# ------------------------------------------------------------------ manifest
# good.tsv: name  path  tokens  ref  block_type  attention  vocab  greedy_first
# (greedy_first: argmax of the reference's last row, or -1 when the top two
#  logits are too close to call); bad.tsv: name  path
"$PY" - "$MD" "$TMP" <<'EOF' || { echo "test_cli: cannot read the manifest" >&2; exit 2; }
import json, os, sys
import numpy as np
md, tmp = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(md, "manifest.json")))
with open(os.path.join(tmp, "good.tsv"), "w") as f:
    for e in m["models"]:
        ref = os.path.join(md, e["ref"])
        r = np.load(ref)
        last = np.sort(r[-1])[::-1]
        first = int(np.argmax(r[-1])) if last[0] - last[1] > 1e-3 * np.max(np.abs(r)) else -1
        attn = next(a.upper() for a in ("mha", "gqa", "mqa") if a in e["features"])
        f.write("\t".join([e["name"], os.path.join(md, e["path"]),
                           ",".join(str(t) for t in e["tokens"]), ref, e["block_type"],
                           attn, str(r.shape[1]), str(first)]) + "\n")
with open(os.path.join(tmp, "bad.tsv"), "w") as f:
    for e in m["bad"]:
        f.write(e["name"] + "\t" + os.path.join(md, e["path"]) + "\n")
EOF

CMP='
import sys
import numpy as np
c, r = np.load(sys.argv[1]), np.load(sys.argv[2])
if c.dtype != np.float32:
    sys.exit("dtype %s, expected float32" % c.dtype)
if c.shape != r.shape:
    sys.exit("shape %s, expected %s" % (c.shape, r.shape))
if not np.all(np.isfinite(c)):
    sys.exit("non-finite logits")
err = np.max(np.abs(c.astype(np.float64) - r)) / np.max(np.abs(r))
if not err < 1e-4:
    sys.exit("relative error %.3g >= 1e-4" % err)
'

# ------------------------------------------------------------ usage, commands
run --help
if [ "$rc" -ne 0 ]; then fail "--help" "exit $rc, expected 0"
elif ! grep -q '^usage: skipless' "$OUT"; then fail "--help" "no usage on stdout"
else pass; fi

run --version
if [ "$rc" -eq 0 ] && grep -Eq '^skipless [0-9]+\.[0-9]+\.[0-9]+$' "$OUT"; then pass
else fail "--version" "exit $rc or no version line"; fi

run
if [ "$rc" -eq 0 ]; then fail "no arguments" "exit 0, expected non-zero"
elif ! grep -q '^usage: skipless' "$ERR"; then fail "no arguments" "no usage on stderr"
else pass; fi

ANY=$(head -n 1 "$TMP/good.tsv" | cut -f 2)
ANY_TOKS=$(head -n 1 "$TMP/good.tsv" | cut -f 3)
expect_error "unknown command" frobnicate "$ANY"
expect_error "generate unknown option" generate "$ANY" --tokens 1,2 --bogus
expect_error "logits unknown option" logits "$ANY" --tokens 1,2 --out "$TMP/x.npy" --bogus
expect_error "generate missing option value" generate "$ANY" --tokens
expect_error "logits without --out" logits "$ANY" --tokens 1,2
expect_error "info nonexistent model" info "$TMP/no_such_model"
expect_error "generate --prompt without tokenizer" generate "$ANY" --prompt "hello world"
expect_error "generate without --tokens or --prompt" generate "$ANY" -n 1

for bad in '1,,2' 'abc' '1,2,' '' ',1' '1;2' '99999999999'; do
    expect_error "generate --tokens '$bad'" generate "$ANY" --tokens "$bad" -n 1
    expect_error "logits --tokens '$bad'" logits "$ANY" --tokens "$bad" --out "$TMP/x.npy"
done
for bad in 'x' '-1' '1.5'; do
    expect_error "generate -n '$bad'" generate "$ANY" --tokens "$ANY_TOKS" -n "$bad"
done
expect_error "generate --threads 0" generate "$ANY" --tokens "$ANY_TOKS" --threads 0
expect_error "generate --temp -1" generate "$ANY" --tokens "$ANY_TOKS" --temp -1
expect_error "generate --top-p 0" generate "$ANY" --tokens "$ANY_TOKS" --top-p 0

ANY_DIR=$(awk -F "$TAB" '$2 !~ /\.safetensors$/ { print $2; exit }' "$TMP/good.tsv")
expect_error "plan unknown option" plan "$ANY_DIR/config.json" --bogus
expect_error "plan missing config" plan
expect_error "merge unknown option" merge "$ANY" "$TMP/m_out" --bogus
expect_error "merge --remove bogus" merge "$ANY" "$TMP/m_out" --remove bogus
expect_error "merge --format bogus" merge "$ANY" "$TMP/m_out" --format bogus
expect_error "merge without OUT" merge "$ANY"
expect_error "merge --dtype bogus" merge "$ANY" "$TMP/m_out" --dtype f8

# merge --dtype: the changed weights are stored as asked (the others keep the
# file's dtype, F32 here) and the merged model stays within 8 unit roundoffs
# of the storage dtype of the original's float64 reference.
line=$(awk -F "$TAB" '$1 == "serial_mha_silu_glu"' "$TMP/good.tsv")
m_path=$(printf '%s' "$line" | cut -f 2)
m_toks=$(printf '%s' "$line" | cut -f 3)
m_ref=$(printf '%s' "$line" | cut -f 4)
DTCHECK='
import json, struct, sys
import numpy as np
path, got, ref, dt = sys.argv[1:5]
raw = open(path, "rb").read()
hdr = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
dts = {v["dtype"] for k, v in hdr.items() if k != "__metadata__"}
want = {"f16": {"F16", "F32"}, "bf16": {"BF16", "F32"}, "same": {"F32"}}[dt]
if dts != want:
    sys.exit("dtypes %s, expected %s" % (sorted(dts), sorted(want)))
c, r = np.load(got).astype(np.float64), np.load(ref)
tol = {"f16": 8 * 2.0 ** -11, "bf16": 8 * 2.0 ** -8, "same": 1e-4}[dt]
err = np.max(np.abs(c - r)) / np.max(np.abs(r))
if not err < tol:
    sys.exit("relative error %.3g >= %.3g" % (err, tol))
'
for dt in f16 bf16 same; do
    run merge "$m_path" "$TMP/m_dt_$dt" --dtype $dt
    if [ "$rc" -ne 0 ]; then fail "merge --dtype $dt" "exit $rc"; continue; fi
    if ! run logits "$TMP/m_dt_$dt" --tokens "$m_toks" --out "$TMP/m_dt.npy" || [ "$rc" -ne 0 ]; then
        fail "merge --dtype $dt" "logits exit $rc"; continue
    fi
    if msg=$("$PY" -c "$DTCHECK" "$TMP/m_dt_$dt/model.safetensors" "$TMP/m_dt.npy" "$m_ref" $dt 2>&1 </dev/null); then
        pass
    else
        fail "merge --dtype $dt" "$msg"
    fi
    rm -rf "$TMP/m_dt_$dt" "$TMP/m_dt.npy"
done

run plan "$ANY_DIR/config.json"
if [ "$rc" -eq 0 ] && grep -q '^merge plan' "$OUT"; then pass
else fail "plan" "exit $rc or no 'merge plan' table"; fi
run plan "$ANY_DIR/config.json" --json
if [ "$rc" -ne 0 ]; then fail "plan --json" "exit $rc"
elif ! msg=$("$PY" -c 'import json, sys; json.load(open(sys.argv[1]))["removals"]' "$OUT" 2>&1); then
    fail "plan --json" "not JSON with removals: $msg"
else pass; fi

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

    # logits, prefill and token-by-token decode, against the float64 reference
    for mode in prefill decode; do
        npy=$TMP/$name.$mode.npy
        if [ "$mode" = decode ]; then run logits "$path" --tokens "$toks" --out "$npy" --decode
        else run logits "$path" --tokens "$toks" --out "$npy"; fi
        if [ "$rc" -ne 0 ]; then
            fail "logits $mode $name" "exit $rc"
        elif ! msg=$("$PY" -c "$CMP" "$npy" "$ref" 2>&1 </dev/null); then
            fail "logits $mode $name" "$msg"
        else
            pass
        fi
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
        elif ! msg=$("$PY" -c "$CMP" "$TMP/merged.npy" "$ref" 2>&1 </dev/null); then
            fail "merge $name" "merged logits: $msg"
        else
            pass
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

# ---------------------------------------------------------------- tokenizer
# Models carrying a tokenizer.json (test/tokenizers.py); ids are compared with
# @huggingface/tokenizers by test/tokenizers_js/compare.mjs, here the CLI.
TOKD=$MD/models/tok_plain
TOKF=$MD/models/tok_prefix.safetensors
EOT=$("$PY" -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(next(a["id"] for a in t["added_tokens"] if a["content"] == "<|endoftext|>"))' "$MD/tokenizers/bpe_plain.json")

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
    expect_error "tokenize without --text $tm" tokenize "$tm"
    expect_error "tokenize --text without value $tm" tokenize "$tm" --text
    expect_error "tokenize unknown option $tm" tokenize "$tm" --text x --bogus
    expect_error "detokenize id out of range $tm" detokenize "$tm" --tokens 1,99999
    expect_error "detokenize negative id $tm" detokenize "$tm" --tokens -1
    expect_error "detokenize malformed --tokens $tm" detokenize "$tm" --tokens 1,,2
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
    expect_error "generate --prompt and --tokens $tm" generate "$tm" --prompt x --tokens 1
    expect_error "generate --prompt invalid UTF-8 $tm" generate "$tm" --prompt "$(printf 'a\377b')"
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
    elif ! "$PY" -c '
import sys
full = open(sys.argv[1], encoding="utf-8", errors="surrogateescape").read()
got = open(sys.argv[2], encoding="utf-8", errors="surrogateescape").read()
sys.exit(0 if got == full.split("<|endoftext|>")[0] + "\n" else 1)' "$TMP/no_eos" "$OUT"; then
        fail "generate eos stop" "output is not the text before <|endoftext|>"
    else pass; fi
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
run tokenize "$TOKD" --text "$(printf 'bad \377 utf8')"
if [ "$rc" -eq 0 ] || ! grep -q 'byte offset 4' "$ERR"; then
    fail "tokenize invalid UTF-8" "exit $rc, stderr '$(cat "$ERR")'"
else pass; fi
expect_error "tokenize model without tokenizer" tokenize "$ANY" --text hi
expect_error "detokenize model without tokenizer" detokenize "$ANY" --tokens 1

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
# No timing assertions: the figures must be present, finite and positive, and
# bytes_per_token, dtype and merged must match an independent count from the file.
# check_bench NAME MODEL THREADS: validate $OUT (bench --json of MODEL).
check_bench() {
    if ! msg=$("$PY" - "$2" "$OUT" "$3" 2>&1 <<'EOF'
import json, math, os, re, struct, sys
model, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
j = json.load(open(out))
for k in ("decode_tokens_per_s", "prefill_tokens_per_s", "bytes_per_token", "ceiling_gb_per_s",
          "decode_gb_per_s", "decode_ceiling_ratio", "decode_bound_tokens_per_s", "prefill_gflops",
          "sgemm_gflops", "prefill_sgemm_ratio", "prefill_flops"):
    v = j.get(k)
    if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        sys.exit("%s = %r, expected a positive number" % (k, v))
if j["threads"] != threads:
    sys.exit("threads %r, expected %d" % (j["threads"], threads))
if not isinstance(j.get("blas_core"), str) or not j["blas_core"]:
    sys.exit("blas_core missing")
if not isinstance(j.get("load_seconds"), (int, float)) or not j["load_seconds"] >= 0:
    sys.exit("load_seconds = %r" % (j.get("load_seconds"),))
if j.get("use_mmap") is ("--no-mmap" in os.environ.get("BENCH_ARGS", "")):
    sys.exit("use_mmap = %r for arguments %r" % (j.get("use_mmap"), os.environ.get("BENCH_ARGS", "")))
for k in ("ceiling_gb_per_s_runs", "decode_seconds_runs", "prefill_seconds_runs", "sgemm_gflops_runs",
          "decode_ceiling_ratio_runs"):
    if len(j[k]) != j["repeat"]:
        sys.exit("%s has %d entries for %d repeats" % (k, len(j[k]), j["repeat"]))
# per repeat: decode GB/s over the ceiling measured around that repeat's decode; the figure is their median
rr = [j["bytes_per_token"] * j["gen"] / d / 1e9 / c for d, c in zip(j["decode_seconds_runs"], j["ceiling_gb_per_s_runs"])]
if any(abs(a - b) > 1e-6 * b for a, b in zip(rr, j["decode_ceiling_ratio_runs"])):
    sys.exit("decode_ceiling_ratio_runs %r, recomputed %r" % (j["decode_ceiling_ratio_runs"], rr))
srt = sorted(rr)
med = srt[len(srt) // 2] if len(srt) % 2 else (srt[len(srt) // 2 - 1] + srt[len(srt) // 2]) / 2
if abs(j["decode_ceiling_ratio"] - med) > 1e-6 * med:
    sys.exit("decode_ceiling_ratio %r, median of the runs %r" % (j["decode_ceiling_ratio"], med))
# per repeat: prefill GFLOP/s over the sgemm reference run around that prefill; the figure is their median
pr = [j["prefill_flops"] / p / 1e9 / g for p, g in zip(j["prefill_seconds_runs"], j["sgemm_gflops_runs"])]
if len(j["prefill_sgemm_ratio_runs"]) != j["repeat"] or any(abs(a - b) > 1e-6 * b for a, b in zip(pr, j["prefill_sgemm_ratio_runs"])):
    sys.exit("prefill_sgemm_ratio_runs %r, recomputed %r" % (j["prefill_sgemm_ratio_runs"], pr))
srt = sorted(pr)
med = srt[len(srt) // 2] if len(srt) % 2 else (srt[len(srt) // 2 - 1] + srt[len(srt) // 2]) / 2
if abs(j["prefill_sgemm_ratio"] - med) > 1e-6 * med:
    sys.exit("prefill_sgemm_ratio %r, median of the runs %r" % (j["prefill_sgemm_ratio"], med))
hp = j.get("weights_huge_page_share", "missing")
if not (isinstance(hp, (int, float)) and 0 <= hp <= 1):
    sys.exit("weights_huge_page_share = %r (use_mmap %r)" % (hp, j["use_mmap"]))
st = os.path.join(model, "model.safetensors") if os.path.isdir(model) else model
with open(st, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
# skl_model_decode_bytes: every tensor but the embedding table (linear layers,
# lm_head, biases, final norm) in its file dtype, plus one embedding row; a
# tied lm_head is the embedding table itself.
size = {"F32": 4, "F16": 2, "BF16": 2}
nbytes = lambda t: t["data_offsets"][1] - t["data_offsets"][0]
emb = hdr["model.embed_tokens.weight"]
expect = sum(nbytes(t) for k, t in hdr.items() if k not in ("__metadata__", "model.embed_tokens.weight"))
if "lm_head.weight" not in hdr:
    expect += nbytes(emb)
expect += emb["shape"][1] * size[emb["dtype"]]
if j["bytes_per_token"] != expect:
    sys.exit("bytes_per_token %r, expected %d from the file's tensors" % (j["bytes_per_token"], expect))
# the ceiling reads: with --ceiling weights the bytes a decode step reads (skl_model_decode_regions: the
# tensors above and one embedding row), also from the anonymous copy of --no-mmap; else the buffer (these
# test models are far smaller than twice the L3, so `auto` takes the buffer); one read before every step,
# one after the last
args = os.environ.get("BENCH_ARGS", "")
want = "weights" if "--ceiling weights" in args else "buffer"
if j.get("ceiling_source") != want:
    sys.exit("ceiling_source %r, expected %r for arguments %r" % (j.get("ceiling_source"), want, args))
if want == "buffer":
    if j["ceiling_read_bytes"] != j["buffer_bytes"] or j["buffer_bytes"] != 16 << 20:
        sys.exit("ceiling_read_bytes %r, buffer_bytes %r, expected 16 MiB" % (j["ceiling_read_bytes"], j["buffer_bytes"]))
elif j["ceiling_read_bytes"] != expect:
    sys.exit("ceiling_read_bytes %r, the read tensors have %d bytes" % (j["ceiling_read_bytes"], expect))
if j["ceiling_reads_per_repeat"] != j["gen"] + 1:
    sys.exit("ceiling_reads_per_repeat %r for gen %r" % (j["ceiling_reads_per_repeat"], j["gen"]))
for k in ("ceiling_best_gb_per_s", "buffer_read_gb_per_s"):
    if not (isinstance(j.get(k), (int, float)) and math.isfinite(j[k]) and j[k] > 0):
        sys.exit("%s = %r" % (k, j.get(k)))
if not j.get("ceiling_setting") or j["ceiling_setting"] == "none":
    sys.exit("ceiling_setting %r" % j.get("ceiling_setting"))
lin = re.compile(r"(model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj|lm_head)\.weight$")
dts = {t["dtype"] for k, t in hdr.items() if lin.match(k)}
if "lm_head.weight" not in hdr:
    dts.add(emb["dtype"])
if j["dtype"] != (dts.pop() if len(dts) == 1 else "mixed"):
    sys.exit("dtype %r, the file's linear weights are %s" % (j["dtype"], sorted(dts)))
layers = j["num_hidden_layers"]
absent = "".join(p for p in "qkvo"
                 if not any("model.layers.%d.self_attn.%s_proj.weight" % (l, p) in hdr for l in range(layers)))
if j["absent_projections"] != absent or j["merged"] != bool(absent):
    sys.exit("absent_projections %r merged %r, the file has absent %r" % (j["absent_projections"], j["merged"], absent))
EOF
    ); then
        fail "$1" "$msg"
    else
        pass
    fi
}
BENCH_SMALL="--prompt-len 8 --gen 4 --repeat 2 --ceiling-mib 16"
# shellcheck disable=SC2086
run bench "$ANY" --threads 2 $BENCH_SMALL --json
if [ "$rc" -ne 0 ]; then fail "bench --json" "exit $rc"; else check_bench "bench --json" "$ANY" 2; fi
# --no-mmap: weights read onto huge pages, reported as use_mmap false
# shellcheck disable=SC2086
run bench "$ANY" $BENCH_SMALL --no-mmap --json
if [ "$rc" -ne 0 ]; then fail "bench --no-mmap --json" "exit $rc"
else BENCH_ARGS="--no-mmap" check_bench "bench --no-mmap --json" "$ANY" 1; fi
# --ceiling weights: the ceiling reads the memory decode reads (with --no-mmap too); buffer: the buffer
# shellcheck disable=SC2086
run bench "$ANY" $BENCH_SMALL --ceiling weights --json
if [ "$rc" -ne 0 ]; then fail "bench --ceiling weights --json" "exit $rc"
else BENCH_ARGS="--ceiling weights" check_bench "bench --ceiling weights --json" "$ANY" 1; fi
# shellcheck disable=SC2086
run bench "$ANY_DIR" $BENCH_SMALL --ceiling weights --json
if [ "$rc" -ne 0 ]; then fail "bench --ceiling weights --json (directory)" "exit $rc"
else BENCH_ARGS="--ceiling weights" check_bench "bench --ceiling weights --json (directory)" "$ANY_DIR" 1; fi
# shellcheck disable=SC2086
run bench "$ANY" $BENCH_SMALL --ceiling weights --no-mmap --json
if [ "$rc" -ne 0 ]; then fail "bench --ceiling weights --no-mmap --json" "exit $rc"
else BENCH_ARGS="--ceiling weights --no-mmap" check_bench "bench --ceiling weights --no-mmap --json" "$ANY" 1; fi
# shellcheck disable=SC2086
run bench "$ANY" $BENCH_SMALL --ceiling buffer --json
if [ "$rc" -ne 0 ]; then fail "bench --ceiling buffer --json" "exit $rc"
else BENCH_ARGS="--ceiling buffer" check_bench "bench --ceiling buffer --json" "$ANY" 1; fi
# shellcheck disable=SC2086
run bench "$ANY" $BENCH_SMALL --ceiling weights
if [ "$rc" -eq 0 ] && grep -q '^ceiling .*of weights a decode step reads' "$OUT"; then pass
else fail "bench --ceiling weights text" "exit $rc or no ceiling line naming the weights"; fi
# the merged model written above: fewer bytes per token than its original
ANY_DIR_BYTES=""
# shellcheck disable=SC2086
run bench "$ANY_DIR" $BENCH_SMALL --json
if [ "$rc" -ne 0 ]; then fail "bench --json original" "exit $rc"
else
    check_bench "bench --json original" "$ANY_DIR" 1
    ANY_DIR_BYTES=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["bytes_per_token"])' "$OUT")
fi
# shellcheck disable=SC2086
run bench "$TMP/verified" $BENCH_SMALL --json
if [ "$rc" -ne 0 ]; then fail "bench --json merged" "exit $rc"
else
    check_bench "bench --json merged" "$TMP/verified" 1
    if ! "$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(not (j["merged"] and j["bytes_per_token"] < int(sys.argv[2])))' \
        "$OUT" "${ANY_DIR_BYTES:-0}"; then
        fail "bench merged bytes" "merged model not marked merged or not fewer bytes per token than ${ANY_DIR_BYTES:-?}"
    else pass; fi
fi
# --compare: the original and its merged form back to back in one process; each model's object
# passes the single-model checks, and the speedup is recomputed from the per-repeat times
# shellcheck disable=SC2086
run bench "$ANY_DIR" --compare "$TMP/verified" $BENCH_SMALL --repeat 3 --json
if [ "$rc" -ne 0 ]; then fail "bench --compare --json" "exit $rc"
else
    CMP=$OUT
    for k in 0 1; do
        "$PY" -c 'import json, sys; json.dump(json.load(open(sys.argv[1]))["models"][int(sys.argv[2])], open(sys.argv[3], "w"))' \
            "$CMP" "$k" "$TMP/compare-$k.json"
        OUT=$TMP/compare-$k.json
        if [ "$k" = 0 ]; then check_bench "bench --compare model 0" "$ANY_DIR" 1
        else check_bench "bench --compare model 1" "$TMP/verified" 1; fi
    done
    if ! msg=$("$PY" - "$CMP" 2>&1 <<'EOF'
import json, statistics, sys
j = json.load(open(sys.argv[1]))
a, b = j["models"]
if a["merged"] or not b["merged"]:
    sys.exit("merged flags %r/%r, expected false/true" % (a["merged"], b["merged"]))
runs = [x / y for x, y in zip(a["decode_seconds_runs"], b["decode_seconds_runs"])]
if len(j["speedup_runs"]) != 3 or any(abs(x - y) > 1e-6 * y for x, y in zip(j["speedup_runs"], runs)):
    sys.exit("speedup_runs %r, recomputed %r" % (j["speedup_runs"], runs))
if abs(j["speedup"] - statistics.median(runs)) > 1e-6 * j["speedup"]:
    sys.exit("speedup %r, median %r" % (j["speedup"], statistics.median(runs)))
bound = a["bytes_per_token"] / b["bytes_per_token"]
if abs(j["speedup_bound"] - bound) > 1e-6 * bound or bound <= 1:
    sys.exit("speedup_bound %r, bytes ratio %r" % (j["speedup_bound"], bound))
eq = bound * statistics.median([y / x for x, y in zip(a["decode_ceiling_ratio_runs"], b["decode_ceiling_ratio_runs"])])
if abs(j["speedup_at_equal_ceiling"] - eq) > 1e-6 * eq:
    sys.exit("speedup_at_equal_ceiling %r, recomputed %r" % (j["speedup_at_equal_ceiling"], eq))
EOF
    ); then fail "bench --compare figures" "$msg"; else pass; fi
fi
# shellcheck disable=SC2086
run bench "$ANY_DIR" --compare "$TMP/verified" $BENCH_SMALL
if [ "$rc" -eq 0 ] && [ "$(grep -c '^decode ' "$OUT")" = 2 ] && grep -q '^compare .*bound x' "$OUT"; then pass
else fail "bench --compare text" "exit $rc or not two decode lines and a compare line"; fi
# shellcheck disable=SC2086
run bench "$ANY" $BENCH_SMALL
if [ "$rc" -eq 0 ] && grep -q '^decode ' "$OUT" && grep -q '^prefill ' "$OUT" && grep -q '^ceiling ' "$OUT"; then pass
else fail "bench text" "exit $rc or missing ceiling/decode/prefill lines"; fi
run bench --blas --threads 2 --prompt-len 8 --ceiling-mib 16 --json
if [ "$rc" -ne 0 ]; then fail "bench --blas --json" "exit $rc"
elif ! msg=$("$PY" -c '
import json, math, sys
j = json.load(open(sys.argv[1]))
for k in ("sgemm_gflops_before", "sgemm_gflops_after", "sgemv_gb_per_s_before", "sgemv_gb_per_s_after", "ceiling_gb_per_s"):
    if not (isinstance(j.get(k), (int, float)) and math.isfinite(j[k]) and j[k] > 0):
        sys.exit("%s = %r" % (k, j.get(k)))
if not j.get("core_before") or "blas_core" not in j:
    sys.exit("core names missing")' "$OUT" 2>&1); then fail "bench --blas --json" "$msg"
else pass; fi
for bad in '--threads 0' '--threads x' '--prompt-len 0' '--gen 0' '--gen 1.5' '--repeat -1' '--ceiling-mib 1' \
           '--bogus' '--prompt-len 60 --gen 60' '--threads'; do
    # shellcheck disable=SC2086
    expect_error "bench $bad" bench "$ANY" $bad
done
expect_error "bench missing model" bench --threads 2
expect_error "bench --blas with model" bench "$ANY" --blas
expect_error "bench --blas --gen" bench --blas --gen 4
expect_error "bench --blas --no-mmap" bench --blas --no-mmap
expect_error "bench two models" bench "$ANY" "$ANY"
expect_error "bench nonexistent model" bench "$TMP/no_such_model"
expect_error "bench --compare without value" bench "$ANY" --compare
expect_error "bench --compare nonexistent" bench "$ANY" --compare "$TMP/no_such_model"
expect_error "bench --blas --compare" bench --blas --compare "$ANY"
expect_error "bench --ceiling bogus" bench "$ANY" --ceiling bogus
expect_error "bench --ceiling without value" bench "$ANY" --ceiling
expect_error "bench --blas --ceiling" bench --blas --ceiling buffer
# two models of different vocabulary sizes cannot take the same prompt
OTHER_VOCAB=$("$PY" - "$MD/models" "$ANY_DIR" <<'EOF'
import glob, json, os, sys
want = json.load(open(os.path.join(sys.argv[2], "config.json")))["vocab_size"]
for c in sorted(glob.glob(os.path.join(sys.argv[1], "*", "config.json"))):
    if json.load(open(c))["vocab_size"] != want:
        print(os.path.dirname(c))
        break
EOF
)
if [ -n "$OTHER_VOCAB" ]; then
    # shellcheck disable=SC2086
    expect_error "bench --compare other vocabulary" bench "$ANY_DIR" --compare "$OTHER_VOCAB" $BENCH_SMALL
else fail "bench --compare other vocabulary" "no test model with another vocab_size"; fi

# ---------------------------------------------------------------- summary
if [ "$n_fail" -ne 0 ]; then
    echo "cli: $n_fail of $((n_pass + n_fail)) checks FAILED" >&2
    exit 1
fi
echo "cli: $n_pass checks passed"
exit 0
