#!/usr/bin/env bash
# pki_compare.sh compares issuing one client identity (private key,
# certificate, PEM files) with ztwizard's steps/pki package against the
# openssl req + openssl x509 -req commands an administrator would run.
#
# It runs BenchmarkIssueClient once per key type (fixed iteration counts,
# since RSA-4096 key generation is slow) and prints, from that run, a table
# of ns/op per tool and the ratio openssl/ztwizard.
#
# Usage: bench/pki_compare.sh   (env: ECDSA_N=200 RSA_N=10)
set -euo pipefail

cd "$(dirname "$0")/.."
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

bench() { # bench KEYTYPE ITERATIONS
	go test -run '^$' -bench "BenchmarkIssueClient/.*/$1\$" -benchtime="$2x" ./steps/pki/ | tee -a "$raw"
}
bench ecdsa-p256 "${ECDSA_N:-200}"
bench rsa-4096 "${RSA_N:-10}"

echo
awk '
/^BenchmarkIssueClient\// {
	split($1, part, "/")
	tool = part[2]; kt = part[3]
	if (kt ~ /^[^-]+-[^-]+-[0-9]+$/) sub(/-[0-9]+$/, "", kt) # GOMAXPROCS suffix
	for (i = 2; i < NF; i++) if ($(i + 1) == "ns/op") ns[tool, kt] = $i
	if (!(kt in seen)) { seen[kt] = 1; order[++n] = kt }
}
END {
	if (n == 0) { print "no benchmark results" > "/dev/stderr"; exit 1 }
	printf "%-12s %16s %16s %18s\n", "key type", "ztwizard ns/op", "openssl ns/op", "openssl/ztwizard"
	for (i = 1; i <= n; i++) {
		kt = order[i]; z = ns["ztwizard", kt]; o = ns["openssl", kt]
		printf "%-12s %16s %16s %17.1fx\n", kt, z, o, (z > 0 ? o / z : 0)
	}
}' "$raw"
