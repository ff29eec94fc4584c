#!/bin/sh
# Bakes the DESIGN example's db node and a golden image with a fresh (cold)
# and then a warm rootfs cache, reports the raw, qcow2 and compressed sizes,
# boots db and the golden image with db's seed under qemu (TCG, q35, OVMF) to
# the ZTWIZARD-SELFCHECK line, and times virt-customize (libguestfs, direct
# backend, TCG) putting db's files into the same base image. Needs root.
set -eu
cd "$(dirname "$0")/.."
echo
WORK=$(mktemp -d /var/tmp/ztwizard-bench.XXXXXX)
QEMU_PID=""
cleanup() {
	if [ -n "$QEMU_PID" ]; then kill "$QEMU_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
make -s build BIN="$WORK/ztwizard"
cp steps/example.yaml "$WORK/site.yaml"
CACHE="$WORK/cache" # fresh: the first bake of each package set is cold
Z() { "$WORK/ztwizard" --state "$WORK/state" -c "$WORK/site.yaml" "$@"; }
now() { date +%s.%N; }
secs() { echo "$1 $2" | awk '{ printf "%.1f", $2 - $1 }'; }
mib() { echo "$1" | awk '{ printf "%.0f", $1 / 1048576 }'; }
alloc() { du -B1 "$1" | cut -f1; }
export SOURCE_DATE_EPOCH=1700000000

bake() { # label, then bake's arguments
	label=$1
	shift
	echo "\$ ztwizard bake $*"
	t0=$(now)
	Z bake --cache "$CACHE" "$@" | sed 's/^/  /'
	t1=$(now)
	echo "$label: $(secs "$t0" "$t1") s"
}

bake "db, cold cache" --node db --out "$WORK/db.qcow2" --address 192.168.1.100/24
rm "$WORK/db.qcow2"
bake "db, warm cache" --node db --out "$WORK/db.qcow2" --address 192.168.1.100/24
bake "golden, cold cache" --golden --out "$WORK/golden.qcow2"
rm "$WORK/golden.qcow2"
bake "golden, warm cache" --golden --out "$WORK/golden.qcow2"
bake "golden, warm cache, compressed" --golden --out "$WORK/golden-c.qcow2" --compress
bake "golden, warm cache, raw" --golden --out "$WORK/golden.raw" --format raw
echo
echo "sizes (MiB):"
printf '  %-28s %6s %10s\n' image "file" "allocated"
for f in golden.raw golden.qcow2 golden-c.qcow2 db.qcow2; do
	printf '  %-28s %6s %10s\n' "$f" "$(mib "$(stat -c %s "$WORK/$f")")" "$(mib "$(alloc "$WORK/$f")")"
done
rm "$WORK/golden.raw"
echo

echo "\$ ztwizard seed --node db --out db-seed.iso --address 192.168.1.100/24"
t0=$(now)
Z seed --node db --out "$WORK/db-seed.iso" --address 192.168.1.100/24
echo "seed: $(secs "$t0" "$(now)") s"
echo

boot() { # label, image, then extra qemu arguments
	label=$1 img=$2
	shift 2
	cp /usr/share/OVMF/OVMF_VARS_4M.fd "$WORK/vars.fd"
	rm -f "$WORK/run.qcow2" "$WORK/serial.log"
	qemu-img create -q -f qcow2 -b "$img" -F qcow2 "$WORK/run.qcow2" 3G
	t0=$(now)
	qemu-system-x86_64 -machine q35 -accel tcg -m 1024 -smp 2 -nographic -no-reboot \
		-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
		-drive if=pflash,format=raw,file="$WORK/vars.fd" \
		-drive file="$WORK/run.qcow2",if=virtio,format=qcow2 -device virtio-rng-pci \
		-netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0 \
		-serial file:"$WORK/serial.log" -monitor none -display none "$@" >/dev/null 2>&1 &
	QEMU_PID=$!
	i=0
	while ! grep -qa ZTWIZARD-SELFCHECK "$WORK/serial.log" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 600 ]; then echo "$label: no marker in 600 s"; break; fi
		sleep 0.5
	done
	t1=$(now)
	kill "$QEMU_PID" 2>/dev/null || true
	wait "$QEMU_PID" 2>/dev/null || true
	QEMU_PID=""
	echo "$label: $(secs "$t0" "$t1") s from qemu start to:"
	grep -a -o 'ZTWIZARD-SELFCHECK.*' "$WORK/serial.log" | sed 's/^/  /'
}
echo "boot to the self-check marker (qemu -accel tcg -smp 2, OVMF):"
boot "db" "$WORK/db.qcow2"
boot "golden + db's seed" "$WORK/golden.qcow2" -device virtio-scsi-pci,id=scsi0 \
	-drive if=none,id=seed,format=raw,readonly=on,media=cdrom,file="$WORK/db-seed.iso" -device scsi-cd,drive=seed,bus=scsi0.0
echo

echo "virt-customize: db's files (ztwizard render) into a copy of the golden image"
if ! command -v virt-customize >/dev/null; then
	echo "virt-customize is not installed (apt-get install --no-install-recommends libguestfs-tools)"
	exit 0
fi
Z render --node db --out "$WORK/db-files" >/dev/null
rm -f "$WORK/db-files/nftables.nft" "$WORK/db-files/zt0.conf" # render's extra copies at the top
cp "$WORK/golden.qcow2" "$WORK/vc.qcow2"
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
# supermin builds its appliance from the host's kernel; a container has
# none, so it takes the image's own kernel from the rootfs cache.
if ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
	tar=$(ls "$CACHE"/rootfs-*.tar | head -n 1)
	mkdir -p "$WORK/kernel"
	tar -xf "$tar" -C "$WORK/kernel" --wildcards './boot/vmlinuz-*' './usr/lib/modules/*'
	SUPERMIN_KERNEL=$(ls "$WORK"/kernel/boot/vmlinuz-* | head -n 1)
	SUPERMIN_KERNEL_VERSION=${SUPERMIN_KERNEL##*/vmlinuz-}
	SUPERMIN_MODULES="$WORK/kernel/usr/lib/modules/$SUPERMIN_KERNEL_VERSION"
	export SUPERMIN_KERNEL SUPERMIN_KERNEL_VERSION SUPERMIN_MODULES
	[ -d /lib/modules ] || mkdir -p /lib/modules # supermin stats it
fi
echo "\$ virt-customize -a golden-copy.qcow2 --copy-in db-files/etc:/ (first run: builds the supermin appliance)"
t0=$(now)
if virt-customize -q -a "$WORK/vc.qcow2" --copy-in "$WORK/db-files/etc:/" >"$WORK/vc.log" 2>&1; then
	echo "virt-customize, first run: $(secs "$t0" "$(now)") s"
	cp "$WORK/golden.qcow2" "$WORK/vc.qcow2"
	t0=$(now)
	virt-customize -q -a "$WORK/vc.qcow2" --copy-in "$WORK/db-files/etc:/" >"$WORK/vc.log" 2>&1
	echo "virt-customize, appliance cached: $(secs "$t0" "$(now)") s"
else
	echo "virt-customize failed:"
	tail -n 5 "$WORK/vc.log" | sed 's/^/  /'
fi
