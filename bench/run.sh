#!/bin/sh
# Runs every benchmark that BENCHMARKS.md reports, each as its own command.
set -eu
cd "$(dirname "$0")/.."
# Whole processes first: these are the headline figures.
./bench/start_compare.sh
echo
./bench/render_compare.sh
echo
./bench/apply_whole.sh
echo
./bench/pki_whole.sh
echo
# In-process figures.
./bench/pki_compare.sh
echo
./bench/ssh_compare.sh
echo
echo "\$ go test -run '^\$' -bench 'Parse|BuildPlan|FirewallFor' -benchmem ./steps/"
go test -run '^$' -bench 'Parse|BuildPlan|FirewallFor' -benchmem ./steps/
echo
echo "\$ go test -run '^\$' -bench Apply -benchmem ./steps/"
go test -run '^$' -bench Apply -benchmem ./steps/
echo
./bench/apply_compare.sh
echo
./bench/tls_handshake.sh
echo
./bench/wizard.sh
./bench/image_compare.sh
./bench/ansible_push.sh
echo
./bench/bundle.sh
echo
./bench/live_server.sh
