#!/bin/sh
# The Ansible push of the three-node fleet lab (BENCHMARKS.md, "Pushing a
# fleet with Ansible"): three nodes and an admin in namespaces, each node
# with its own sshd; Debian's ansible-playbook runs the files `ztwizard
# ansible` wrote. Wall time of the first push, and of a second run that
# changes nothing. Needs root.
set -eu
cd "$(dirname "$0")/.."
echo "\$ go test -run '^\$' -bench BenchmarkAnsiblePush -benchtime ${RUNS:-3}x ./cmd/ztwizard/"
go test -run '^$' -bench BenchmarkAnsiblePush -benchtime "${RUNS:-3}x" ./cmd/ztwizard/
