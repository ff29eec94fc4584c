#!/bin/sh
# The live path on plain Debian 12 servers under systemd (qemu, TCG): the
# times TestLiveServers logs as it goes: baking the plain server, booting two
# of them to SSH, one apply of a bundle inside each, the rollback of an
# unconfirmed apply at its deadline, and a reboot inside the confirm window
# with its rollback at boot. Needs root, as make test does.
set -eu
cd "$(dirname "$0")/.."
echo "\$ go test -count=1 -run '^TestLiveServers\$' -v ./cmd/ztwizard/"
go test -count=1 -run '^TestLiveServers$' -v -timeout 45m ./cmd/ztwizard/ 2>&1 |
	grep -E 'baked the plain server|let the admin in|finished booting|applied in|rolled back .* after|rebooted and|^(--- |ok|FAIL)'
