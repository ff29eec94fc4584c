#!/bin/sh
# Whole-process `ztwizard apply` of node n0 of a hub site whose 1,000 other
# nodes are its WireGuard peers and its database's clients (a 1,000-element
# firewall set, 1,000 WireGuard peers), as an admin runs it: the real binary,
# in a network namespace of its own with its own /etc and /run (bind-mounted
# copies) and state folder. Rows: the namespace wrapper alone (ip netns exec,
# unshare, mount; subtract it), the first apply into a fresh namespace, the
# re-apply that finds nothing to change, the apply of the same site with one
# peer's endpoint changed (after an untimed apply of the site into a fresh
# namespace), and `nft -f` of the same ruleset text into a fresh namespace. Needs root. Timed by bench/wholeproc.
# ZTWIZARD=PATH times that binary instead of building one from this tree;
# BEFORE=PATH adds the same two applies by that binary, interleaved with
# the others (before/after in one run).
set -eu
cd "$(dirname "$0")/.."
N=${N:-15}
W=$(mktemp -d /dev/shm/ztwizard-bench-XXXXXX)
cleanup() {
	for ns in ztwb-first ztwb-again ztwb-nft ztwb-chg ztwb-bfirst ztwb-bagain ztwb-bchg; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$W"
}
trap cleanup EXIT INT TERM
if [ -n "${ZTWIZARD:-}" ]; then cp "$ZTWIZARD" "$W/ztwizard"; else make -s build BIN="$W/ztwizard"; fi
if [ -n "${BEFORE:-}" ]; then cp "$BEFORE" "$W/before"; fi
go build -o "$W/wholeproc" ./bench/wholeproc
go run ./bench/sitegen -shape hub -nodes 1000 >"$W/hub.yaml"
sed 's/{name: n1, endpoint: "\([0-9.]*\):51820"}/{name: n1, endpoint: "\1:51821"}/' "$W/hub.yaml" >"$W/hub-changed.yaml"
cmp -s "$W/hub.yaml" "$W/hub-changed.yaml" && { echo "apply_whole.sh: no endpoint of n1 to change" >&2; exit 1; }
"$W/ztwizard" --state "$W/state.orig" -c "$W/hub.yaml" render --node n0 --out "$W/render" >/dev/null
cp -a /etc "$W/etc.orig"

# fresh.sh NAME: a new namespace ztwb-NAME and a new node tree for it.
cat >"$W/fresh.sh" <<EOS
#!/bin/sh
set -eu
ns=ztwb-\$1 node=$W/node-\$1
for pid in \$(ip netns pids \$ns 2>/dev/null); do kill \$pid 2>/dev/null || true; done
ip netns del \$ns 2>/dev/null || true
rm -rf \$node
ip netns add \$ns
ip -n \$ns link set lo up
mkdir -p \$node/run/sshd
cp -a $W/etc.orig \$node/etc
cp -a $W/state.\${2:-orig} \$node/state
EOS
# in.sh NAME CMD...: CMD inside namespace ztwb-NAME with its node's /etc and /run.
cat >"$W/in.sh" <<EOS
#!/bin/sh
ns=ztwb-\$1 node=$W/node-\$1
shift
exec ip netns exec \$ns unshare -m --propagation private sh -c 'mount --bind "\$1" /etc && mount --bind "\$2" /run && shift 2 && exec "\$@"' sh \$node/etc \$node/run "\$@"
EOS
# applied.sh NAME BINARY STATE: a fresh namespace ztwb-NAME (state.STATE)
# with the site applied by BINARY.
cat >"$W/applied.sh" <<EOS
#!/bin/sh
set -eu
$W/fresh.sh \$1 \$3
$W/in.sh \$1 $W/\$2 --state $W/node-\$1/state -c $W/hub.yaml apply --node n0 --no-confirm >/dev/null
EOS
chmod +x "$W/fresh.sh" "$W/in.sh" "$W/applied.sh"
for n in first again nft; do "$W/fresh.sh" $n; done
apply="$W/ztwizard --state $W/node-NAME/state -c $W/hub.yaml apply --node n0 --no-confirm"
first=$(echo "$apply" | sed 's/NAME/first/')
again=$(echo "$apply" | sed 's/NAME/again/')
"$W/in.sh" again $again >/dev/null
set -- -n "$N" \
	-before "first-apply=$W/fresh.sh first" \
	-before "nft-f=$W/fresh.sh nft" \
	-before "one-peer=$W/applied.sh chg ztwizard orig" \
	"wrapper=$W/in.sh again true" \
	"first-apply=$W/in.sh first $first" \
	"re-apply=$W/in.sh again $again" \
	"one-peer=$W/in.sh chg $W/ztwizard --state $W/node-chg/state -c $W/hub-changed.yaml apply --node n0 --no-confirm" \
	"nft-f=$W/in.sh nft nft -f $W/render/nftables.nft"
if [ -n "${BEFORE:-}" ]; then
	# The before binary's own state store: the store's format may differ.
	"$W/before" --state "$W/state.before" -c "$W/hub.yaml" render --node n0 --out "$W/render.before" >/dev/null
	for n in bfirst bagain; do "$W/fresh.sh" $n before; done
	bapply="$W/before --state $W/node-NAME/state -c $W/hub.yaml apply --node n0 --no-confirm"
	bfirst=$(echo "$bapply" | sed 's/NAME/bfirst/')
	bagain=$(echo "$bapply" | sed 's/NAME/bagain/')
	"$W/in.sh" bagain $bagain >/dev/null
	set -- -before "before-first=$W/fresh.sh bfirst before" -before "before-one-peer=$W/applied.sh bchg before before" "$@" \
		"before-first=$W/in.sh bfirst $bfirst" "before-again=$W/in.sh bagain $bagain" \
		"before-one-peer=$W/in.sh bchg $W/before --state $W/node-bchg/state -c $W/hub-changed.yaml apply --node n0 --no-confirm"
fi

echo "\$ bench/apply_whole.sh   # node n0 of \`go run ./bench/sitegen -shape hub -nodes 1000\`"
"$W/wholeproc" "$@"
