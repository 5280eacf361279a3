#!/bin/sh
# The long fuzz campaign of docs/reliability.md: every harness for SECONDS (default 720, so
# 5 harnesses make an hour in all), JOBS at a time (default 2), niced; then one line per
# harness (executions, new corpus entries, crashes) in build/fuzz/campaign.txt.
#   sh test/fuzz/campaign.sh [SECONDS [JOBS]]
set -u
cd "$(dirname "$0")/../.."
secs=${1:-720}
jobs=${2:-2}
nice -n 19 make fuzz-build >/dev/null || exit 1
start=$(date -u '+%Y-%m-%d %H:%M UTC')
nice -n 19 make -k -j"$jobs" fuzz FUZZ_SECONDS="$secs" > build/fuzz/campaign.log 2>&1
rc=$?
{
    echo "campaign started $start, $secs s per harness, $jobs at a time, make exit $rc"
    for n in load_file load_dir tokenizer_json tokenize cli_options; do
        execs=$(sed -n "s/^stat::number_of_executed_units: *//p" build/fuzz/$n.log | tail -n 1)
        rss=$(sed -n 's/^stat::peak_rss_mb: *//p' build/fuzz/$n.log | tail -n 1)
        crashes=$(ls build/fuzz/crash-$n-* 2>/dev/null | wc -l)
        corpus=$(ls build/fuzz/corpus/$n 2>/dev/null | wc -l)
        echo "$n: ${execs:-?} executions, corpus ${corpus} inputs, ${crashes} crashes, peak RSS ${rss:-?} MB"
    done
} > build/fuzz/campaign.txt
cat build/fuzz/campaign.txt
