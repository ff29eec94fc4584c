#!/bin/sh
# Issuing a P-256 client identity and signing an SSH user certificate, whole
# processes as an admin runs them: `ztwizard ca issue` against openssl's two
# commands (req, then x509 -req with the same CA) and `step certificate
# create` where step is installed (its column is skipped otherwise);
# `ztwizard ssh sign` against `ssh-keygen -s`. Each ztwizard row twice: with
# a store that holds only the CAs and one certificate of each kind, and one
# holding RECORDS more (default 100,000, half X.509 with their keys, half
# SSH, made by bench/storegen), to show whether the cost grows with the
# store. The last row of each table, `ztwizard --help`, is what starting
# the binary costs before any work. Three rows of the SSH table show where
# `ssh sign`'s time goes (see the comment above it).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
trap 'rm -rf "$W"' EXIT
RECORDS=${RECORDS:-100000}
z="$W/ztwizard -c $W/site.yaml"
cp steps/example.yaml "$W/site.yaml"
ssh-keygen -q -t ed25519 -N '' -C alice -f "$W/alice"
for s in small big; do
	$z --state "$W/$s" ca issue --name service-worker-01 >/dev/null
	$z --state "$W/$s" ssh sign --user alice --key "$W/alice.pub" >/dev/null
done
go run ./bench/storegen -state "$W/big" -records "$RECORDS"
cp "$W/small/ca/ca.pem" "$W/ca.pem"
cp "$W/small/ca/ca-key.pem" "$W/ca-key.pem"
cp "$W/small/ssh/user_ca" "$W/user_ca"
openssl="openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $W/o.key -out $W/o.csr -subj /CN=service-worker-01/O=MyOrg 2>/dev/null && openssl x509 -req -in $W/o.csr -CA $W/ca.pem -CAkey $W/ca-key.pem -CAcreateserial -days 90 -out $W/o.crt 2>/dev/null"
set -- "ca-issue=$z --state $W/small ca issue --name service-worker-01" \
	"ca-issue-big=$z --state $W/big ca issue --name service-worker-01" \
	"openssl=$openssl"
if command -v step >/dev/null 2>&1; then
	set -- "$@" "step=step certificate create service-worker-01 $W/s.crt $W/s.key --ca $W/ca.pem --ca-key $W/ca-key.pem --kty EC --curve P-256 --no-password --insecure --force --not-after 2160h"
else
	echo "(step is not installed: its column is left out)"
fi
# The start of the binary alone, what every ztwizard row pays first.
start="start=$W/ztwizard --help"
echo "\$ bench/pki_whole.sh   # RECORDS=$RECORDS"
wholeproc "$@" "$start"
echo
# Where the time of `ssh sign` goes, three more rows: sign-floor is
# bench/signfloor, a process that links only the site, the authority and
# the store (what a separate signing binary would cost), on the same store;
# ssh-sign-tmpfs is ztwizard with its store and output on a tmpfs, where
# fsync costs nothing (what the store's syncs cost, by difference), and
# floor-tmpfs both.
go build -o "$W/signfloor" ./bench/signfloor
set -- "ssh-sign=$z --state $W/small ssh sign --user alice --key $W/alice.pub" \
	"ssh-sign-big=$z --state $W/big ssh sign --user alice --key $W/alice.pub" \
	"sign-floor=$W/signfloor -c $W/site.yaml -state $W/small -user alice -key $W/alice.pub"
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
	M=$(mktemp -d /dev/shm/ztwizard-bench-XXXXXX)
	trap 'rm -rf "$W" "$M"' EXIT
	cp -a "$W/small" "$M/small"
	cp "$W/site.yaml" "$W/alice.pub" "$M/"
	set -- "$@" "ssh-sign-tmpfs=$W/ztwizard -c $M/site.yaml --state $M/small ssh sign --user alice --key $M/alice.pub" \
		"floor-tmpfs=$W/signfloor -c $M/site.yaml -state $M/small -user alice -key $M/alice.pub"
else
	echo "(/dev/shm is not a tmpfs: the tmpfs rows are left out)"
fi
wholeproc "$@" "ssh-keygen=ssh-keygen -q -s $W/user_ca -I alice -n root,devops -V -5m:+4h -z 7 $W/alice.pub" "$start"
