# Shared by the whole-process bench scripts (sourced): builds ztwizard, the
# empty Go program and bench/wholeproc into a scratch folder $W, removed on
# exit, and defines wholeproc. ZTWIZARD=PATH takes that binary instead of
# building one from this tree.
W=$(mktemp -d "${TMPDIR:-/tmp}/ztwizard-bench-XXXXXX")
N=${N:-15}
if [ -n "${ZTWIZARD:-}" ]; then cp "$ZTWIZARD" "$W/ztwizard"; else make -s build BIN="$W/ztwizard"; fi
go build -o "$W/empty" ./bench/empty
go build -o "$W/wholeproc" ./bench/wholeproc
wholeproc() { "$W/wholeproc" -n "$N" "$@"; }
