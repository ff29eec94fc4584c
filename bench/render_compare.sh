#!/bin/sh
# `ztwizard render` of one node, whole process, in ring sites of 1,000 and
# 5,000 nodes (bench/sitegen): with the state made (keys, CA), and the first
# render of the 1,000-node site into an empty state folder.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
trap 'rm -rf "$W"' EXIT
for n in 1000 5000; do
	go run ./bench/sitegen -shape ring -nodes $n >"$W/ring$n.yaml"
	"$W/ztwizard" --state "$W/state$n" -c "$W/ring$n.yaml" render --node n500 --out "$W/out$n" >/dev/null
done
echo "\$ bench/render_compare.sh   # node n500 of \`go run ./bench/sitegen -shape ring -nodes N\`"
wholeproc -before "first-1000=rm -rf $W/first" \
	"empty-go=$W/empty" \
	"render-1000=$W/ztwizard --state $W/state1000 -c $W/ring1000.yaml render --node n500 --out $W/out1000" \
	"render-5000=$W/ztwizard --state $W/state5000 -c $W/ring5000.yaml render --node n500 --out $W/out5000" \
	"first-1000=$W/ztwizard --state $W/first -c $W/ring1000.yaml render --node n500 --out $W/outfirst"
