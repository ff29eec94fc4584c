#!/bin/sh
# Process start: the empty Go program against ztwizard commands that draw
# nothing (--help, validate of the example site), whole processes, then the
# slowest package initialisers (GODEBUG=inittrace=1).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
trap 'rm -rf "$W"' EXIT
cp steps/example.yaml "$W/site.yaml"
echo "\$ bench/start_compare.sh"
wholeproc "empty-go=$W/empty" "help=$W/ztwizard --help" "validate=$W/ztwizard validate -c $W/site.yaml"
echo
echo "\$ GODEBUG=inittrace=1 ztwizard validate -c site.yaml   # all package init before main, then the slowest three"
GODEBUG=inittrace=1 "$W/ztwizard" validate -c "$W/site.yaml" 2>&1 >/dev/null |
	awk '$1 == "init" {t += $5; print $5 " ms " $2} END {printf "%.2f ms total\n", t}' | sort -rn | head -4
