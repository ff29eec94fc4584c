#!/bin/sh
# The live applier at 1,000 peers (BENCHMARKS.md, "Applying to a live host"):
# the firewall as one netlink batch against `nft -f` of the same ruleset text,
# each into a fresh network namespace, with their ratio from the same run;
# then the real `ztwizard apply` into fresh namespaces, and the re-apply that
# finds nothing to change. Needs root.
set -eu
cd "$(dirname "$0")/.."

echo "\$ go test -run '^\$' -bench Firewall1000Peers -benchmem ./steps/host/"
out=$(go test -run '^$' -bench Firewall1000Peers -benchmem ./steps/host/)
echo "$out"
echo "$out" | awk '
	/Firewall1000Peers\/netlink/ { netlink = $3; for (i = 1; i < NF; i++) if ($(i+1) == "cpu-ms/op") netcpu = $i }
	/Firewall1000Peers\/nft_-f/  { nftf = $3; for (i = 1; i < NF; i++) if ($(i+1) == "cpu-ms/op") nftcpu = $i }
	END {
		if (netlink > 0) printf "nft -f / netlink batch: %.2fx wall, ", nftf / netlink
		if (netcpu > 0) printf "%.2fx CPU\n", nftcpu / netcpu
	}'
echo
echo "\$ go test -run '^\$' -bench 1000Peers -benchtime 5x ./cmd/ztwizard/"
go test -run '^$' -bench 1000Peers -benchtime 5x ./cmd/ztwizard/
echo
echo "\$ go test -run '^\$' -bench WireGuard1000Peers -benchtime 9x ./steps/"
go test -run '^$' -bench WireGuard1000Peers -benchtime 9x ./steps/
