#!/bin/sh
# Building every bundle of a site (BENCHMARKS.md, "Building a fleet's
# bundles"): ring sites of 250, 500 and 1,000 nodes from bench/sitegen (one
# mTLS service and one database per ten nodes), a fresh state folder each;
# `ztwizard bundle --all` once when every key and certificate is made, then
# again when nothing new is issued. Wall time, CPU time, and the bundles'
# total size.
set -eu
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make -s build BIN="$work/ztwizard"
for n in ${SIZES:-250 500 1000}; do
	go run ./bench/sitegen -shape ring -nodes "$n" >"$work/ring$n.yaml"
	st="$work/state$n"
	"$work/ztwizard" --state "$st" -c "$work/ring$n.yaml" ca init >/dev/null
	for run in first again; do
		rm -rf "$work/out"
		/usr/bin/time -f "nodes=$n $run: %e s wall, %U s user, %S s sys" \
			"$work/ztwizard" --state "$st" -c "$work/ring$n.yaml" bundle --all --out "$work/out" >/dev/null
	done
	echo "nodes=$n bundles: $(du -sk "$work/out" | cut -f1) KiB, site file $(wc -c <"$work/ring$n.yaml") bytes"
done
