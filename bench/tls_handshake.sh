#!/bin/sh
# Full TLS handshakes per second (with the client certificate) against two
# nginx instances serving the same mTLS service on loopback, side by side:
# the vhost `ztwizard render` writes for the example's web node (Mozilla
# intermediate settings), and the same certificate, CA, CRL and client check
# with nginx's defaults for everything else. openssl s_time -new makes a new
# handshake per connection; the two are measured in turns, ROUNDS times
# SECONDS each. Needs nginx and openssl; uses ports PORT and PORT+1 on
# 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-5}
PORT=${PORT:-18443}

dir=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

make -s build BIN="$dir/ztwizard"
"$dir/ztwizard" --state "$dir/state" render -c steps/example.yaml --node web --out "$dir/root" >/dev/null
"$dir/ztwizard" --state "$dir/state" ca issue -c steps/example.yaml --name service-worker-01 --out "$dir/client" >/dev/null
root="$dir/root"
vhost="$root/etc/nginx/conf.d/ztwizard-api.conf"

# The rendered vhost, its files under $root, on loopback.
sed -e "s|\"/etc/|\"$root/etc/|g" \
	-e "s|listen 443 ssl http2;|listen 127.0.0.1:$PORT ssl http2;|" \
	-e "/listen \[::\]:443/d" "$vhost" >"$dir/hardened.conf"
# The same service with nginx's defaults for everything but the certificates
# and the client check.
cat >"$dir/default.conf" <<EOF
server {
    listen 127.0.0.1:$((PORT + 1)) ssl http2;
    ssl_certificate     $root/etc/ztwizard/tls/api.crt;
    ssl_certificate_key $root/etc/ztwizard/tls/api.key;
    ssl_verify_client      on;
    ssl_client_certificate $root/etc/ztwizard/ca.pem;
    ssl_crl                $root/etc/ztwizard/crl.pem;
    location / { return 204; }
}
EOF

for kind in hardened default; do
	mkdir -p "$dir/$kind.d"
	cat >"$dir/$kind.d/nginx.conf" <<EOF
user root root;
worker_processes 1;
pid $dir/$kind.d/nginx.pid;
error_log $dir/$kind.d/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir/$kind.d/body;
    proxy_temp_path $dir/$kind.d/proxy;
    fastcgi_temp_path $dir/$kind.d/fastcgi;
    uwsgi_temp_path $dir/$kind.d/uwsgi;
    scgi_temp_path $dir/$kind.d/scgi;
    include $dir/$kind.conf;
}
EOF
	nginx -t -q -c "$dir/$kind.d/nginx.conf" -p "$dir/$kind.d/" -e "$dir/$kind.d/error.log"
	nginx -c "$dir/$kind.d/nginx.conf" -p "$dir/$kind.d/" -e "$dir/$kind.d/error.log" -g 'daemon off;' &
	pids="$pids $!"
	eval "master_$kind=$!"
done
sleep 1
worker_hardened=$(ps -o pid= --ppid "$master_hardened" | tr -d ' ')
worker_default=$(ps -o pid= --ppid "$master_default" | tr -d ' ')
hz=$(getconf CLK_TCK)

ticks() { # pid -> user+system clock ticks so far
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

measure() { # port worker -> "connections-per-second ms-of-nginx-CPU-per-handshake"
	before=$(ticks "$2")
	openssl s_time -connect "127.0.0.1:$1" -new -time "$SECONDS_EACH" \
		-cert "$dir/client/service-worker-01.crt" -key "$dir/client/service-worker-01.key" \
		-CAfile "$dir/client/ca.pem" 2>/dev/null >"$dir/s_time.out"
	after=$(ticks "$2")
	awk -v t=$((after - before)) -v hz="$hz" '/connections in .* real seconds/ {
		printf "%.1f %.3f\n", $1 / $4, t * 1000 / hz / $1 }' "$dir/s_time.out"
}

echo "\$ openssl s_time -connect 127.0.0.1:PORT -new -time $SECONDS_EACH -cert service-worker-01.crt -key service-worker-01.key -CAfile ca.pem"
echo "(hardened: the rendered vhost on $PORT; default: nginx defaults on $((PORT + 1)); $ROUNDS rounds in turns;"
echo " nginx CPU: its worker's user+system time over the round, per handshake)"
sums="0 0 0 0"
i=1
while [ "$i" -le "$ROUNDS" ]; do
	h=$(measure "$PORT" "$worker_hardened")
	d=$(measure $((PORT + 1)) "$worker_default")
	[ -n "$h" ] && [ -n "$d" ] || { echo "s_time failed" >&2; exit 1; }
	echo "$h $d" | awk -v i="$i" '{ printf "round %d: hardened %s/s (%s ms nginx CPU each), default %s/s (%s ms)\n", i, $1, $2, $3, $4 }'
	sums=$(echo "$sums $h $d" | awk '{ print $1 + $5, $2 + $6, $3 + $7, $4 + $8 }')
	i=$((i + 1))
done
echo "$sums $ROUNDS" | awk '{ n = $5
	printf "mean: hardened %.1f/s, default %.1f/s, rate hardened/default %.3f\n", $1 / n, $3 / n, $1 / $3
	printf "nginx CPU per handshake: hardened %.3f ms, default %.3f ms, capacity hardened/default %.3f\n", $2 / n, $4 / n, $4 / $2 }'
