#!/bin/sh
# The Python scripts are commands that parse their arguments: `SCRIPT --help` prints a usage
# and exits 0 without creating anything (test/models.py --help once made a directory named
# "--help"), and a wrong argument count exits 2 with a usage on stderr, also creating nothing.
#   sh test/test_scripts.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
PY=${PY:-/usr/bin/python3}
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# SCRIPT  ARGS-THAT-ARE-WRONG (a count the script refuses)
while read -r script wrong; do
    for args in "--help" "$wrong"; do
        rm -rf "$tmp"/* "$tmp"/.[!.]* 2>/dev/null
        [ "$args" = "--help" ] && want=0 || want=2
        # shellcheck disable=SC2086
        (cd "$tmp" && $PY "$root/$script" $args >out 2>err); rc=$?
        left=$(cd "$tmp" && ls -A | grep -v -x -e out -e err)
        if [ "$rc" != "$want" ] || [ -n "$left" ] || { [ "$want" = 0 ] && ! grep -qi usage "$tmp/out"; } ||
            { [ "$want" = 2 ] && ! grep -qi usage "$tmp/err"; }; then
            echo "FAIL: $script $args: exit $rc (want $want), left behind: [$left]"; sed 's/^/  | /' "$tmp/err" | head -5
            fails=$((fails + 1))
        fi
    done
done <<LIST
test/models.py a b
test/tokenizers.py a b
test/test_merged_reference.py a
test/test_trained.py a b c
test/cli_checks.py no_such_check
bench/peak_mem.py a
bench/report.py a b c d
LIST
[ "$fails" = 0 ] && echo "scripts: all parse their arguments" || { echo "scripts: $fails FAILED"; exit 1; }
