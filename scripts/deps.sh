#!/bin/sh
# Installs the Debian packages ztwizard's tests need, skipping those already
# present, and fetches the Go modules. Safe to run again.
set -eu

PACKAGES="ansible-core openssl openssh-client openssh-server wireguard-tools nginx nftables iproute2 curl systemd mariadb-server-core postgresql-15 tmux mmdebstrap qemu-system-x86 qemu-utils ovmf systemd-boot-efi binutils e2fsprogs gdisk dosfstools libguestfs-tools zbar-tools testssl.sh cloud-init python3 xz-utils"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		SUDO="sudo"
	fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
go mod download
