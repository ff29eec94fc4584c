#!/bin/sh
# Compares in-process SSH user certificate signing (steps/sshca) with running
# ssh-keygen, from a single benchmark run.
set -eu
cd "$(dirname "$0")/.."
cmd="go test -run '^\$' -bench BenchmarkSignUser -benchtime=200x ./steps/sshca/"
echo "\$ $cmd"
out=$(go test -run '^$' -bench BenchmarkSignUser -benchtime=200x ./steps/sshca/)
printf '%s\n' "$out"
printf '%s\n' "$out" | awk '
	/^BenchmarkSignUser\/ztwizard/   { for (i = 1; i < NF; i++) if ($(i+1) == "ns/op") z = $i }
	/^BenchmarkSignUser\/ssh-keygen/ { for (i = 1; i < NF; i++) if ($(i+1) == "ns/op") k = $i }
	END {
		if (z == "" || k == "") { print "missing benchmark results" > "/dev/stderr"; exit 1 }
		printf "ztwizard:   %.0f ns/op\nssh-keygen: %.0f ns/op\nratio (ssh-keygen / ztwizard): %.1fx\n", z, k, k / z
	}'
