#!/bin/bash
# Revocation latency with the default distribution (nodes pull from the CA
# host): the time from `ztwizard ca revoke` to the last node refusing the
# revoked client, as whole processes on loopback. The CA host's published
# folder is served by nginx; NODES nodes each run the example web node's
# rendered mTLS vhost in their own nginx, with their own CRL, and a pull
# loop as their timer runs it: `ztwizard node pull` every INTERVAL seconds
# plus up to JITTER seconds (RandomizedDelaySec), each started at a random
# phase, nginx reloaded when the pull installed something. Each of ROUNDS
# rounds issues the client a new certificate, waits until every node serves
# it (200), revokes it at a random moment of the pull cycle and probes every
# node with curl every 0.1 s until each answers 400.
#
# INTERVAL and JITTER default to the pull timer of a site on the test
# timescale (ca.test_timescale with crl_validity CRL, cert_validity LEAF:
# `ztwizard validate` prints its interval; the jitter is a fifth of it). A
# real site's timer pulls every 300 s with up to 60 s of jitter: run with
# INTERVAL=300 JITTER=60 for that (rounds of up to six minutes).
# Needs nginx and curl; uses ports PORT to PORT+NODES+1 on 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
NODES=${NODES:-3}
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-18540}
CRL=${CRL:-3m}
LEAF=${LEAF:-10m}

dir=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

make -s build BIN="$dir/ztwizard"
z="$dir/ztwizard"
site=steps/example.yaml
st="$dir/state"

if [ -z "${INTERVAL:-}" ]; then
	sed -e "s/cert_validity: 2160h/cert_validity: $LEAF/" \
		-e "s/crl_validity: 168h /crl_validity: $CRL\n  test_timescale: true /" "$site" >"$dir/test.yaml"
	INTERVAL=$("$z" --state "$st" validate -c "$dir/test.yaml" 2>&1 >/dev/null | sed -n 's/.*timers every \([0-9]*\)s.*/\1/p')
	[ -n "$INTERVAL" ] || { echo "no test-timescale interval from validate" >&2; exit 1; }
	JITTER=${JITTER:-$((INTERVAL / 5))}
fi
JITTER=${JITTER:-0}

"$z" --state "$st" render -c "$site" --node web --out "$dir/root" >/dev/null
"$z" --state "$st" ca issue -c "$site" --name service-worker-01 --out "$dir/client" >/dev/null
pub="$dir/pub"
"$z" --state "$st" ca crl -c "$site" --publish "$pub" >/dev/null

start_nginx() { # name conf-body
	d="$dir/$1.d"
	mkdir -p "$d"
	cat >"$d/nginx.conf" <<EOF
user root root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
$2
}
EOF
	nginx -t -q -c "$d/nginx.conf" -p "$d/" -e "$d/error.log"
	nginx -c "$d/nginx.conf" -p "$d/" -e "$d/error.log" -g 'daemon off;' &
	pids="$pids $!"
}

# The published folder, and the service's upstream (port PORT+NODES+1).
up=$((PORT + NODES + 1))
start_nginx publish "server { listen 127.0.0.1:$PORT; root $pub; }
    server { listen 127.0.0.1:$up; location / { return 200; } }"
from="http://127.0.0.1:$PORT"
vhost="$dir/root/etc/nginx/conf.d/ztwizard-api.conf"
server=api.internal.example.com
for i in $(seq 1 "$NODES"); do
	root="$dir/node$i"
	cp -a "$dir/root" "$root"
	conf=$(sed -e "s|\"/etc/|\"$root/etc/|g" -e "s|listen 443 ssl http2;|listen 127.0.0.1:$((PORT + i)) ssl http2;|" \
		-e "s|http://127.0.0.1:8080|http://127.0.0.1:$up|" \
		-e "/listen \[::\]:443/d" "$vhost")
	start_nginx "node$i" "$conf"
done

# Each node's timer: a pull every INTERVAL + up to JITTER seconds, from a
# random phase; nginx reloaded when something was installed.
for i in $(seq 1 "$NODES"); do
	(
		sleep "$(awk -v s="$RANDOM$BASHPID" -v t="$INTERVAL" 'BEGIN { srand(s); printf "%.2f", rand() * t }')"
		while :; do
			if "$z" node pull --from "$from" --root "$dir/node$i" --no-reload 2>&1 | grep -q installed; then
				nginx -s reload -c "$dir/node$i.d/nginx.conf" -p "$dir/node$i.d/" -e "$dir/node$i.d/error.log" 2>/dev/null
			fi
			sleep "$(awk -v s="$RANDOM$BASHPID" -v t="$INTERVAL" -v j="$JITTER" 'BEGIN { srand(s); printf "%.2f", t + rand() * j }')"
		done
	) &
	pids="$pids $!"
done

probe() { # node -> HTTP status for the client
	curl -s -o /dev/null -w '%{http_code}' --max-time 2 --resolve "$server:$((PORT + $1)):127.0.0.1" \
		--cert "$dir/client/service-worker-01.crt" --key "$dir/client/service-worker-01.key" \
		--cacert "$dir/client/ca.pem" "https://$server:$((PORT + $1))/" || true
}
now() { date +%s.%N; }

echo "\$ ztwizard ca revoke --name service-worker-01 --publish DIR; curl each node every 0.1 s until it answers 400"
echo "($NODES nodes, pull every ${INTERVAL}s + up to ${JITTER}s, $ROUNDS rounds)"
all=""
for r in $(seq 1 "$ROUNDS"); do
	[ "$r" -gt 1 ] && "$z" --state "$st" ca issue -c "$site" --name service-worker-01 --out "$dir/client" >/dev/null
	for i in $(seq 1 "$NODES"); do
		n=0
		until [ "$(probe "$i")" = 200 ]; do
			n=$((n + 1))
			[ "$n" -lt 300 ] || { echo "node $i never served the new certificate (HTTP $(probe "$i"))" >&2; cat "$dir/node$i.d/error.log" >&2; exit 1; }
			sleep 0.1
		done
	done
	sleep "$(awk -v s="$RANDOM$BASHPID" -v t="$INTERVAL" 'BEGIN { srand(s); printf "%.2f", rand() * t }')"
	t0=$(now)
	"$z" --state "$st" ca revoke -c "$site" --name service-worker-01 --publish "$pub" >/dev/null
	left=$NODES
	declare -A done_at=()
	limit=$(awk -v t="$INTERVAL" -v j="$JITTER" 'BEGIN { print int((t + j) * 30) + 100 }')
	n=0
	while [ "$left" -gt 0 ]; do
		for i in $(seq 1 "$NODES"); do
			if [ -z "${done_at[$i]:-}" ] && [ "$(probe "$i")" = 400 ]; then
				done_at[$i]=$(now)
				left=$((left - 1))
			fi
		done
		n=$((n + 1))
		[ "$n" -lt "$limit" ] || { echo "a node still serves the revoked client" >&2; exit 1; }
		sleep 0.1
	done
	line=$(for i in $(seq 1 "$NODES"); do echo "${done_at[$i]}"; done | awk -v t0="$t0" '
		{ d = $1 - t0; s = s sprintf(" %.1f", d); if (d > m) m = d }
		END { printf "%.2f%s", m, s }')
	last=${line%% *}
	echo "round $r: last node refuses after ${last}s (each:${line#* })"
	all="$all $last"
	unset done_at
done
echo "$all" | awk -v i="$INTERVAL" -v j="$JITTER" '{ for (k = 1; k <= NF; k++) { s += $k; if ($k > m) m = $k } }
	END { printf "revoke to last node refusing: mean %.1fs, max %.1fs over %d rounds (design bound: %ds pull interval + %ds jitter + reload)\n", s / NF, m, NF, i, j }'
