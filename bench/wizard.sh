#!/bin/sh
# The wizard: time to its first frame (the model alone, then the real
# binary on a pseudo-terminal, also side by side with an older binary by
# bench/firstframe), one keystroke, and the binary's size.
set -eu
cd "$(dirname "$0")/.."
echo "\$ go test -run '^\$' -bench 'FirstFrame|Keystroke' -benchmem ./tui/"
go test -run '^$' -bench 'FirstFrame|Keystroke' -benchmem ./tui/
echo
echo "\$ go test -run '^\$' -bench WizardFirstFrame -benchtime 30x ./cmd/ztwizard/"
go test -run '^$' -bench WizardFirstFrame -benchtime 30x ./cmd/ztwizard/
echo
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s build BIN="$tmp/ztw"
go build -o "$tmp/firstframe" ./bench/firstframe
# ZTWIZARD=PATH adds that binary (an older build, say) to the comparison.
if [ -n "${ZTWIZARD:-}" ]; then
	echo "\$ firstframe -n ${N:-21} before=$ZTWIZARD after=ztw (bench/firstframe)"
	"$tmp/firstframe" -n "${N:-21}" before="$ZTWIZARD" after="$tmp/ztw"
else
	echo "\$ firstframe -n ${N:-21} ztw (bench/firstframe)"
	"$tmp/firstframe" -n "${N:-21}" ztw="$tmp/ztw"
fi
echo
echo "\$ make build BIN=$tmp/ztw && stat -c %s $tmp/ztw"
make -s build BIN="$tmp/ztw"
size=$(stat -c %s "$tmp/ztw")
echo "$size bytes ($(awk "BEGIN {printf \"%.1f\", $size/1048576}") MiB)"
CGO_ENABLED=0 go build -ldflags='-s -w' -o "$tmp/ztw-stripped" ./cmd/ztwizard
echo "stripped (-ldflags='-s -w'): $(stat -c %s "$tmp/ztw-stripped") bytes"
echo
echo "\$ GODEBUG=inittrace=1 ztw validate (package init before main, the slowest)"
GODEBUG=inittrace=1 "$tmp/ztw" validate -c steps/example.yaml 2>&1 >/dev/null |
	awk '{t+=$5; print $5, $2}' | sort -rn | head -3
