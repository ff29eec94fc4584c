package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
)

// The plain servers' underlay: the example's endpoints, on one qemu socket
// network; each also has a user-mode NIC through which the test reaches
// its sshd on a loopback port (the guest sees the test as 10.0.2.2).
var servers = []struct{ name, mac, underlay string }{
	{"db", "52:54:00:7a:01:01", "192.168.1.100/24"},
	{"web", "52:54:00:7a:01:02", "192.168.1.50/24"},
}

// serverSite is the example with both engines on db, SSH admitted from the
// user-mode network the test comes in by, and what extra adds.
func serverSite(t *testing.T, extra ...string) []byte {
	pairs := append([]string{
		"admin_cidrs: [192.168.10.0/24]", "admin_cidrs: [10.0.2.0/24]",
		"  - {name: main, node: db, engine: mariadb, port: 3306, clients: [web]}",
		"  - {name: main, node: db, engine: mariadb, port: 3306, clients: [web]}\n  - {name: pg, node: db, engine: postgresql, port: 5432, clients: [web]}",
	}, extra...)
	return testenv.Substitute(t, steps.ExampleYAML, pairs...)
}

// serverVM is a plain Debian server booted under qemu, reached over SSH.
type serverVM struct {
	*imageVM
	port  int    // sshd, forwarded from 127.0.0.1
	https int    // port 443, forwarded from 127.0.0.1
	key   string // the test's SSH key (and KEY-cert.pub once signed)
}

// bootServer boots an overlay of img with its underlay NIC on the socket
// network (netdev) and a user-mode NIC forwarding 127.0.0.1:port to its
// sshd; the test's key reaches root's authorized_keys through a systemd
// credential. Unlike bootImage the guest may reboot.
func bootServer(t *testing.T, name, img, mac, netdev, key string) *serverVM {
	t.Helper()
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	v := &serverVM{port: port, https: testenv.FreePort(t), key: key}
	v.imageVM = bootImageArgs(t, name, img, true,
		"-m", "1536",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,mac="+mac,
		"-netdev", fmt.Sprintf("user,id=n1,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=tcp:127.0.0.1:%d-:443", port, v.https), "-device", "virtio-net-pci,netdev=n1",
		"-smbios", "type=11,value=io.systemd.credential:ssh.authorized_keys.root="+strings.TrimSpace(string(pub)))
	return v
}

// powerCycle waits until the guest has shut down (qemu exits on a
// reboot) and starts qemu again with the same command line: the same disk,
// firmware variables, networks and ports.
func (v *serverVM) powerCycle(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-v.exited:
	case <-time.After(within):
		t.Fatalf("%s did not shut down within %v:\n%s", v.name, within, v.tail(20))
	}
	cmd := exec.Command(v.cmd.Path, v.cmd.Args[1:]...)
	cmd.Stdout, cmd.Stderr = v.cmd.Stdout, v.cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start qemu again: %v", v.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	v.cmd, v.exited = cmd, exited
}

// sshArgs are the client's options: the test's key (and its certificate),
// no host key checks (the guests' keys are new each run), bounded waits.
func (v *serverVM) sshArgs() []string {
	return []string{"-i", v.key, "-p", strconv.Itoa(v.port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=5", "root@127.0.0.1"}
}

// run runs a shell command in the guest over a new SSH connection.
//
// The hardened sshd lets 3 unauthenticated connections wait per source
// (PerSourceMaxStartups), and every connection through qemu's port forward
// comes from one address: right after a boot, probes that gave up can
// still hold those places, and sshd closes the next connection before its
// banner. That connection ran nothing: it is tried again, a bounded number
// of times.
func (v *serverVM) run(t *testing.T, timeout time.Duration, command string) (string, error) {
	t.Helper()
	for try := 1; ; try++ {
		cmd := exec.Command("ssh", append(v.sshArgs(), command)...)
		stdout, stderr, err := testenv.RunCmd(context.Background(), timeout, cmd)
		if err != nil && try < 6 && strings.Contains(stderr, "kex_exchange_identification") {
			t.Logf("%s: sshd closed the connection before its banner (try %d): again in 5s", v.name, try)
			time.Sleep(5 * time.Second)
			continue
		}
		return stdout + stderr, err
	}
}

// must runs command in the guest and fails the test if it fails.
func (v *serverVM) must(t *testing.T, command string) string {
	t.Helper()
	out, err := v.run(t, 3*time.Minute, command)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", v.name, command, err, out)
	}
	return out
}

// copyIn copies a local file to path in the guest.
func (v *serverVM) copyIn(t *testing.T, local, path string) {
	t.Helper()
	args := []string{"-i", v.key, "-P", strconv.Itoa(v.port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", local, "root@127.0.0.1:" + path}
	if _, stderr, err := testenv.RunCmd(context.Background(), time.Minute, exec.Command("scp", args...)); err != nil {
		t.Fatalf("%s: scp %s: %v: %s", v.name, local, err, stderr)
	}
}

// waitSSH waits until the guest's sshd lets the test in.
func (v *serverVM) waitSSH(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		out, err := v.run(t, 30*time.Second, "true")
		if err == nil {
			return time.Since(start)
		}
		select {
		case err := <-v.exited:
			v.exited <- err
			t.Fatalf("%s stopped (%v) before sshd answered:\n%s", v.name, err, v.tail(40))
		case <-time.After(2 * time.Second):
		}
		if time.Since(start) > within {
			t.Fatalf("%s: sshd did not let the test in within %v: %s\n%s", v.name, within, out, v.tail(40))
		}
	}
}

// waitBooted waits until systemd has started everything the boot wants
// (the stock daemons are up), and fails the test if a unit failed.
func (v *serverVM) waitBooted(t *testing.T) {
	t.Helper()
	out, _ := v.run(t, bootTimeout(t), "systemctl is-system-running --wait")
	if strings.TrimSpace(out) != "running" {
		failed, _ := v.run(t, time.Minute, "systemctl --failed --no-legend")
		t.Fatalf("%s: the boot ended %q; failed units:\n%s", v.name, strings.TrimSpace(out), failed)
	}
}

// state is what an apply leaves that a rollback must restore: every file
// under /etc (a checksum), the whole ruleset and the listening sockets.
func (v *serverVM) state(t *testing.T) string {
	t.Helper()
	return v.must(t, "cd /etc && find . -xdev -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum; nft list ruleset; ss -Hltn | awk '{print $4}' | sort")
}

// TestLiveServers proves the live path on real Debian 12 servers under
// systemd: two plain servers (stock PostgreSQL, MariaDB, nginx and sshd on
// their default addresses, nothing of ztwizard applied) boot once under
// qemu on one socket network, and the test, as an admin would, applies
// each node's signed bundle over SSH, then checks what an admin would meet.
func TestLiveServers(t *testing.T) {
	if testing.Short() {
		t.Skip("baking and booting servers takes minutes; make test runs it")
	}
	requireImageTools(t)
	dir := t.TempDir()
	st := filepath.Join(dir, "state")
	writeSite := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	site := writeSite("site.yaml", serverSite(t))
	// The CA key is encrypted, as the README recommends.
	pass := filepath.Join(dir, "ca.pass")
	if err := os.WriteFile(pass, []byte("the servers' CA passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := bakeRun(dir, nil, append(args, "--state", st, "--passphrase-file", pass)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The admin's SSH key, signed for alice (principal root) by the site.
	key := filepath.Join(dir, "admin")
	testenv.MustRun(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin", "-f", key)
	run("ca", "init", "-c", site)
	run("ssh", "sign", "-c", site, "--user", "alice", "--key", key+".pub")
	fp := strings.Fields(run("ca", "fingerprint", "-c", site))[0]
	bundle := func(node, siteFile, name string) string {
		t.Helper()
		out := filepath.Join(dir, name)
		run("bundle", "-c", siteFile, "--node", node, "--out", out)
		return out
	}

	// One plain server image for both: their underlay addresses by MAC.
	overlay := filepath.Join(dir, "overlay")
	if err := os.MkdirAll(filepath.Join(overlay, "etc/systemd/network"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		// 0644: systemd-networkd reads it as its own user.
		conf := fmt.Sprintf("[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s\n", s.mac, s.underlay)
		if err := os.WriteFile(filepath.Join(overlay, "etc/systemd/network", "05-underlay-"+s.name+".network"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "server.qcow2")
	start := time.Now()
	out := run("bake", "--plain", "--out", img, "--overlay", overlay, "--cache", imageTestCache(),
		"--package", "postgresql,mariadb-server")
	t.Logf("baked the plain server in %v: %s", time.Since(start).Round(time.Second), lastLine(out))

	port := strconv.Itoa(testenv.FreePort(t))
	start = time.Now()
	// web's qemu listens, db's connects: when db is power-cycled its new
	// qemu connects again, and web's takes it.
	web := bootServer(t, "web", img, servers[1].mac, "socket,id=n0,listen=127.0.0.1:"+port, key)
	time.Sleep(2 * time.Second)
	db := bootServer(t, "db", img, servers[0].mac, "socket,id=n0,connect=127.0.0.1:"+port, key)
	db.waitSSH(t, bootTimeout(t))
	web.waitSSH(t, bootTimeout(t))
	t.Logf("both servers let the admin in over SSH %v after boot", time.Since(start).Round(time.Second))
	for _, v := range []*serverVM{db, web} {
		v.waitBooted(t)
	}
	t.Logf("both servers finished booting %v after boot", time.Since(start).Round(time.Second))

	// Stock daemons on their default addresses, and a client account in
	// each database for the probes.
	before := db.must(t, "ss -Hltn | awk '{print $4}' | sort")
	for _, want := range []string{"127.0.0.1:5432", "127.0.0.1:3306"} {
		if !strings.Contains(before, want) {
			t.Fatalf("db's stock databases: want %s listening:\n%s", want, before)
		}
	}
	db.must(t, `runuser -u postgres -- psql -qc "CREATE ROLE probe LOGIN PASSWORD 'probe'" && `+
		`mariadb -e "CREATE USER 'probe'@'10.100.0.%' IDENTIFIED BY 'probe'; CREATE USER 'probe'@'192.168.1.%' IDENTIFIED BY 'probe'"`)

	apply := func(t *testing.T, v *serverVM, local string, flags string) (string, error) {
		t.Helper()
		remote := "/root/" + filepath.Base(local)
		v.copyIn(t, local, remote)
		return v.run(t, 5*time.Minute, "ztwizard apply --bundle "+remote+" --ca-fingerprint "+fp+" "+flags)
	}

	t.Run("a unit the host lacks fails the check and changes nothing", func(t *testing.T) {
		// web's site puts a MariaDB on web, whose MariaDB is gone.
		variant := writeSite("site-missing.yaml", serverSite(t, "databases:                   # bound",
			"databases:\n  - {name: extra, node: web, engine: mariadb, port: 3306, clients: [db]}\n  # bound"))
		b := bundle("web", variant, "web-missing.ztb")
		// As on a server whose image lacks the package (its init script
		// too: systemd would make a unit of it).
		web.must(t, "DEBIAN_FRONTEND=noninteractive dpkg --purge mariadb-server >/dev/null && systemctl daemon-reload")
		was := web.state(t)
		out, err := apply(t, web, b, "--no-confirm")
		if code, _ := testenv.ExitCode(err); code != 1 || !strings.Contains(out, "mariadb.service is not installed on this host: install the package mariadb-server") ||
			!strings.Contains(out, "nothing was changed") {
			t.Errorf("apply on a host without MariaDB: exit %d:\n%s", code, out)
		}
		if now := web.state(t); now != was {
			t.Errorf("the host changed:\n%s", testenv.DiffLines(was, now))
		}
	})

	t.Run("apply over SSH", func(t *testing.T) {
		for _, v := range []*serverVM{db, web} {
			start := time.Now()
			out, err := apply(t, v, bundle(v.name, site, v.name+"-1.ztb"), "--no-confirm")
			if err != nil {
				t.Fatalf("%s: apply: %v\n%s", v.name, err, out)
			}
			t.Logf("%s applied in %v: %s", v.name, time.Since(start).Round(time.Millisecond), lastLine(out))
			if v == db && !strings.Contains(out, "restarted mariadb.service, postgresql.service") {
				t.Errorf("db's apply must restart both databases (their listen address changed):\n%s", out)
			}
			if m := regexp.MustCompile(`reloaded ([^,\n]*(, [a-z@.-]+\.service)*)`).FindStringSubmatch(out); m == nil || strings.Contains(m[1], "mariadb") || strings.Contains(m[1], "postgresql") {
				t.Errorf("a database reported as reloaded (%q):\n%s", m, out)
			}
		}
	})

	t.Run("databases listen on the mesh address only", func(t *testing.T) {
		got := db.must(t, "ss -Hltn | awk '{print $4}' | sort")
		for _, want := range []string{"10.100.0.1:3306", "10.100.0.1:5432"} {
			if !strings.Contains(got, want) {
				t.Errorf("db listens on\n%s\nwant %s", got, want)
			}
		}
		if regexp.MustCompile(`(127\.0\.0\.1|0\.0\.0\.0|\*|\[::\]|\[::1\]):(3306|5432)`).MatchString(got) {
			t.Errorf("a database still listens off the mesh:\n%s", got)
		}
	})

	t.Run("kernel WireGuard, configured with wgctrl, handshakes", func(t *testing.T) {
		for _, v := range []*serverVM{db, web} {
			link := v.must(t, "ip -d link show zt0")
			if !strings.Contains(link, "wireguard") {
				t.Errorf("%s: zt0 is not a kernel WireGuard link:\n%s", v.name, link)
			}
			if out, err := v.run(t, time.Minute, "pgrep -f 'wg device'"); err == nil {
				t.Errorf("%s: a userspace device runs although the kernel has WireGuard: %s", v.name, out)
			}
		}
	})

	t.Run("a client reaches the databases over the mesh, not the underlay", func(t *testing.T) {
		pg := func(host string) string {
			return "PGPASSWORD=probe PGCONNECT_TIMEOUT=5 psql -h " + host + " -U probe -d postgres -tAc 'SELECT 42'"
		}
		maria := func(host string) string {
			return "mariadb --connect-timeout=5 -h " + host + " -u probe -pprobe -BNe 'SELECT 42'"
		}
		for _, c := range []string{pg("10.100.0.1"), maria("10.100.0.1")} {
			if out := web.must(t, c); strings.TrimSpace(out) != "42" {
				t.Errorf("web over the mesh: %s: %q", c, out)
			}
		}
		for _, c := range []string{pg("192.168.1.100"), maria("192.168.1.100")} {
			if out, err := web.run(t, time.Minute, c); err == nil {
				t.Errorf("web reached db's database on the underlay: %s: %q", c, out)
			}
		}
		hs := web.must(t, "wg show zt0 latest-handshakes")
		if f := strings.Fields(hs); len(f) != 2 || f[1] == "0" {
			t.Errorf("web's handshake with db: %q", hs)
		}
	})

	t.Run("units are enabled and a second apply changes nothing", func(t *testing.T) {
		en := db.must(t, "systemctl is-enabled ztwizard-firewall.service ztwizard-boot-rollback.service ztwizard-wg@zt0.service mariadb.service postgresql.service")
		if strings.Count(en, "enabled") != 5 {
			t.Errorf("db's units:\n%s", en)
		}
		for _, v := range []*serverVM{db, web} {
			out, err := apply(t, v, bundle(v.name, site, v.name+"-2.ztb"), "--no-confirm")
			if err != nil || !strings.Contains(out, "no changes") {
				t.Errorf("%s: the same plan again: %v\n%s", v.name, err, out)
			}
		}
	})

	// A change the admin does not confirm: port 8443 opened.
	wider := writeSite("site-8443.yaml", serverSite(t, "public_tcp: [80, 443]", "public_tcp: [80, 443, 8443]"))

	t.Run("a dropped session's apply rolls back at the deadline", func(t *testing.T) {
		was := web.state(t)
		b := bundle("web", wider, "web-3.ztb")
		web.copyIn(t, b, "/root/web-3.ztb")
		// The session that applies stays open, then drops.
		cmd := exec.Command("ssh", append(web.sshArgs(), "ztwizard apply --bundle /root/web-3.ztb --confirm 45s; sleep 300")...)
		var buf testenv.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(buf.String(), "confirm before") {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("apply did not arm its watchdog:\n%s", buf.String())
			}
			time.Sleep(time.Second)
		}
		armed := time.Now()
		cmd.Process.Kill()
		cmd.Wait()
		if timers := web.must(t, "systemctl list-timers --all --no-legend 'ztwizard-rollback-*'"); !strings.Contains(timers, "ztwizard-rollback-") {
			t.Errorf("no transient rollback timer:\n%s", timers)
		}
		if fw := web.must(t, "nft list table inet ztwizard"); !strings.Contains(fw, "8443") {
			t.Fatalf("the change is not in:\n%s", fw)
		}
		time.Sleep(time.Until(armed.Add(45 * time.Second)))
		for {
			if now := web.state(t); now == was {
				break
			} else if time.Since(armed) > 3*time.Minute {
				t.Fatalf("not rolled back %v after the deadline:\n%s", time.Since(armed).Round(time.Second), testenv.DiffLines(was, now))
			}
			time.Sleep(3 * time.Second)
		}
		t.Logf("rolled back %v after the watchdog was armed (deadline 45s)", time.Since(armed).Round(time.Second))
	})

	t.Run("a reboot inside the confirm window rolls back at boot", func(t *testing.T) {
		was := db.state(t)
		out, err := apply(t, db, bundle("db", wider, "db-3.ztb"), "--confirm 10m")
		if err != nil || !strings.Contains(out, "confirm before") {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		if fw := db.must(t, "nft list table inet ztwizard"); !strings.Contains(fw, "8443") {
			t.Fatalf("the change is not in:\n%s", fw)
		}
		start := time.Now()
		// The guest reboots; qemu (-no-reboot) then exits and starts
		// again on the same disk and firmware variables: a cold boot, as
		// a power cycle, which TCG survives more reliably than a reset.
		db.run(t, 30*time.Second, "systemctl reboot")
		db.powerCycle(t, 5*time.Minute)
		took := db.waitSSH(t, bootTimeout(t))
		t.Logf("db rebooted and let the admin in %v later", time.Since(start).Round(time.Second))
		_ = took
		db.waitBooted(t) // the stock daemons (nginx) are up again
		t.Logf("db finished booting %v after the reboot", time.Since(start).Round(time.Second))
		if now := db.state(t); now != was {
			t.Errorf("after the reboot:\n%s", testenv.DiffLines(was, now))
		}
		log := db.must(t, "journalctl -b -u ztwizard-boot-rollback.service --no-pager")
		if !strings.Contains(log, "rolled back the apply of node db at boot") {
			t.Errorf("the boot rollback's log:\n%s", log)
		}
		if link := db.must(t, "ip -d link show zt0"); !strings.Contains(link, "wireguard") {
			t.Errorf("after the reboot zt0 is not the kernel's:\n%s", link)
		}
		// web's WireGuard still holds a session with the db before the
		// reboot: it makes a new handshake once its packets go unanswered
		// (WireGuard's rekey timeouts, about 15 s).
		for try := 0; try < 8; try++ {
			out, err = web.run(t, time.Minute, "PGPASSWORD=probe PGCONNECT_TIMEOUT=10 psql -h 10.100.0.1 -U probe -d postgres -tAc 'SELECT 42'")
			if err == nil {
				break
			}
		}
		if err != nil || strings.TrimSpace(out) != "42" {
			t.Errorf("web over the mesh after db's reboot: %v %q", err, out)
		}
	})

	t.Run("the self-check talks to both databases on the mesh", func(t *testing.T) {
		out, _ := db.run(t, 3*time.Minute, "ztwizard selfcheck -c /etc/ztwizard/site.yaml --node db --wait 1m")
		if !strings.Contains(out, " db=main:mariadb@10.100.0.1:3306,pg:postgresql@10.100.0.1:5432") {
			t.Errorf("db's self-check:\n%s", out)
		}
	})

	t.Run("time runs on systemd and nobody acts", func(t *testing.T) {
		// The same CA, now with minute-scale validities: db holds it
		// (ca.host) and publishes, web pulls; web's service answers with
		// the welcome page of its stock nginx.
		timeSite := writeSite("site-time.yaml", serverSite(t,
			"  cert_validity: 2160h       # leaf certificates", "  cert_validity: 12m",
			"  crl_validity: 168h         # nextUpdate; refreshed by a timer well before it", "  crl_validity: 150s\n  host: db\n  test_timescale: true",
			"allow: [service-worker-01]}", "allow: [service-worker-01, bad]}",
			`upstream: "http://127.0.0.1:8080"`, `upstream: "http://127.0.0.1:80"`,
			"  - {name: service-worker-01, organization: MyOrg}", "  - {name: service-worker-01, organization: MyOrg}\n  - {name: bad, organization: MyOrg}",
			// A new name: the bundle issues web a certificate of the new
			// cert_validity, to be renewed during the run.
			"server_name: api.internal.example.com", "server_name: api-time.internal.example.com"))
		// The CRL in force was signed for a week (the first site): one
		// signed now lasts the new crl_validity, and the schedule takes
		// over from it.
		run("ca", "crl", "-c", timeSite)
		for _, v := range []*serverVM{db, web} {
			out, err := apply(t, v, bundle(v.name, timeSite, v.name+"-time.ztb"), "--no-confirm")
			if err != nil {
				t.Fatalf("%s: apply: %v\n%s", v.name, err, out)
			}
		}
		// The apply started web's timers: they are active now.
		if out := web.must(t, "systemctl is-active "+steps.PullTimer+" "+steps.StatusTimer); strings.Count(out, "active") != 2 || strings.Contains(out, "inactive") {
			t.Fatalf("web's timers after the apply:\n%s", out)
		}
		liveTimeRuns(t, dir, st, pass, timeSite, db, web)
	})
}

// liveTimeRuns: the CA state goes to db, the CA host, whose `ca schedule`
// hands the passphrase to systemd-creds; then nobody acts for three CRL
// periods and a leaf renewal while web's service is probed through its
// port forward and `ztwizard status` runs on both; then db's nginx stops
// and web's status turns 1 before its CRL lapses.
func liveTimeRuns(t *testing.T, dir, st, pass, timeSite string, db, web *serverVM) {
	const probeEvery = 5 * time.Second
	site, err := steps.Load(timeSite)
	if err != nil {
		t.Fatal(err)
	}
	crlValidity, tm := site.CA.CRLValidity.D(), site.Timing()
	tgz := filepath.Join(dir, "ca-state.tgz")
	testenv.MustRun(t, "tar", "-C", st, "-czf", tgz, ".")
	db.copyIn(t, tgz, "/root/ca-state.tgz")
	db.copyIn(t, timeSite, "/root/site-time.yaml")
	db.must(t, "install -d -m 0700 /root/ca-state && tar -C /root/ca-state -xzf /root/ca-state.tgz && rm /root/ca-state.tgz")
	caCmd := func(args string) string {
		t.Helper()
		db.copyIn(t, pass, "/root/ca.pass")
		defer db.run(t, time.Minute, "rm -f /root/ca.pass")
		return db.must(t, "ztwizard --state /root/ca-state --passphrase-file /root/ca.pass -c /root/site-time.yaml "+args)
	}
	out := caCmd("ca schedule")
	if !strings.Contains(out, "(the passphrase, encrypted by systemd-creds)") || !strings.Contains(out, "enabled "+steps.CACRLTimer) {
		t.Fatalf("ca schedule:\n%s", out)
	}
	t.Logf("db: ca schedule:\n%s", out)
	// On the test timescale the timers fire within a second, not
	// systemd's default minute.
	for _, v := range []*serverVM{db, web} {
		if out := v.must(t, "systemctl show -p AccuracyUSec "+steps.StatusTimer); strings.TrimSpace(out) != "AccuracyUSec=1s" {
			t.Errorf("%s: %s: %s", v.name, steps.StatusTimer, out)
		}
	}
	// Clients, issued now: their certificates last cert_validity too.
	certs := map[string]tls.Certificate{}
	issue := func(c, d string) {
		t.Helper()
		caCmd("ca issue --name " + c + " --out " + d)
		crt := db.must(t, "cat "+d+"/"+c+".crt")
		key := db.must(t, "cat "+d+"/"+c+".key")
		cert, err := tls.X509KeyPair([]byte(crt), []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		certs[c] = cert
	}
	issue("service-worker-01", "/root/good")
	issue("bad", "/root/bad")
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(db.must(t, "cat /root/good/ca.pem"))) {
		t.Fatal("no CA certificate")
	}
	var served *x509.Certificate // the last probe's server certificate
	probe := func(client string) (int, string, error) {
		hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "api-time.internal.example.com", Certificates: []tls.Certificate{certs[client]}}}}
		resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/", web.https))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		served = resp.TLS.PeerCertificates[0]
		return resp.StatusCode, served.SerialNumber.Text(16), nil
	}
	status := func(v *serverVM) (int, string) {
		out, err := v.run(t, time.Minute, "ztwizard status")
		code, err := testenv.ExitCode(err)
		if err != nil {
			t.Fatalf("%s: status: %v\n%s", v.name, err, out)
		}
		return code, out
	}
	webCRL := func() *x509.RevocationList {
		b, _ := pem.Decode([]byte(web.must(t, "cat "+steps.CRLPath)))
		if b == nil {
			t.Fatal("web: no CRL installed")
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return crl
	}

	// web pulls (its timer started with its apply) once db publishes.
	var first string
	applied := webCRL().Number.String()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, serial, err := probe("bad")
		if code == http.StatusOK && webCRL().Number.String() != applied {
			first = serial
			if life := served.NotAfter.Sub(served.NotBefore); life > site.CA.CertValidity.D()+time.Hour {
				t.Fatalf("web serves a certificate for %v, not one of cert_validity %s: nothing to renew in the run", life, site.CA.CertValidity)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web's service before the revocation: %d %v\n%s", code, err, web.must(t, "journalctl -u ztwizard-pull.service --no-pager | tail -20"))
		}
		time.Sleep(probeEvery)
	}
	caCmd("ca revoke --name bad")
	revokedAt := time.Now()
	var refused, renewed time.Time
	numbers := map[string]bool{}
	errs := 0
	fail := func(format string, a ...any) {
		t.Helper()
		t.Errorf("%s: "+format, append([]any{time.Now().Format("15:04:05")}, a...)...)
		if errs++; errs > 6 {
			t.FailNow()
		}
	}
	end, limit := revokedAt.Add(3*crlValidity), revokedAt.Add(site.CA.CertValidity.D()*5/6)
	for now := time.Now(); now.Before(end) || renewed.IsZero() && now.Before(limit); now = time.Now() {
		round := time.Now()
		code, serial, err := probe("service-worker-01")
		if code != http.StatusOK {
			fail("the valid client: %d %v", code, err)
		} else if serial != first && renewed.IsZero() {
			renewed = time.Now()
			t.Logf("web serves a renewed certificate %v after the revocation", renewed.Sub(revokedAt).Round(time.Second))
		}
		code, _, err = probe("bad")
		switch {
		case code == http.StatusBadRequest && refused.IsZero():
			refused = time.Now()
		case refused.IsZero() && code != http.StatusOK:
			fail("the revoked client before web refused it: %d %v", code, err)
		case !refused.IsZero() && code != http.StatusBadRequest:
			fail("the revoked client after web refused it: %d %v", code, err)
		}
		for _, v := range []*serverVM{db, web} {
			if code, out := status(v); code != 0 {
				fail("%s: status exit %d:\n%s", v.name, code, out)
			}
		}
		crl := webCRL()
		if !time.Now().Before(crl.NextUpdate) {
			fail("web's CRL lapsed at %s", crl.NextUpdate.Format("15:04:05"))
		}
		numbers[crl.Number.String()] = true
		time.Sleep(time.Until(round.Add(probeEvery)))
	}
	if refused.IsZero() {
		t.Fatal("web never refused the revoked client")
	}
	t.Logf("web refused the revoked client %v after ca revoke", refused.Sub(revokedAt).Round(time.Second))
	if took := refused.Sub(revokedAt); took > tm.Pull+tm.PullJitter+probeEvery+15*time.Second {
		t.Errorf("web refused the revoked client %v after ca revoke, want within a pull interval (%v + %v), the probe period and 15s for the guest", took, tm.Pull, tm.PullJitter)
	}
	if renewed.IsZero() {
		t.Error("web never served a renewed certificate")
	}
	if len(numbers) < 4 {
		t.Errorf("web installed %d CRLs over three CRL periods, want at least 4", len(numbers))
	}
	signed := db.must(t, "journalctl -u "+steps.CACRLUnit+" --no-pager | grep -c 'CRL signed' || true")
	if n, err := strconv.Atoi(strings.TrimSpace(signed)); err != nil || n < 3 {
		t.Errorf("db's scheduled service signed the CRL %q times, want at least 3", strings.TrimSpace(signed))
	}
	if out, err := db.run(t, time.Minute, "test -e /root/ca.pass"); err == nil {
		t.Errorf("the clear-text passphrase is on db: %s", out)
	}

	// db stops serving: web's status turns 1 before its CRL lapses. The
	// valid client's own certificate (twelve minutes, as every leaf here;
	// clients are no nodes, nothing renews them) is renewed first, as its
	// owner would.
	issue("service-worker-01", "/root/good")
	db.must(t, "systemctl stop nginx.service")
	stopped := time.Now()
	for {
		code, out := status(web)
		crl := webCRL()
		now := time.Now()
		if !now.Before(crl.NextUpdate) {
			t.Fatalf("web's CRL lapsed (%s) before its status exited 1 (%d):\n%s", crl.NextUpdate.Format("15:04:05"), code, out)
		}
		if code == 1 {
			t.Logf("web: status exit 1 %v after db stopped serving, %v before the CRL's nextUpdate",
				now.Sub(stopped).Round(time.Second), crl.NextUpdate.Sub(now).Round(time.Second))
			if c, _, err := probe("service-worker-01"); c != http.StatusOK {
				t.Errorf("when status warned, the valid client got %d %v", c, err)
			}
			break
		}
		if code != 0 {
			t.Fatalf("web: status exit %d:\n%s", code, out)
		}
		time.Sleep(2 * time.Second)
	}
}

// requireImageTools fails the test when baking or booting cannot run.
func requireImageTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the image tests bake as root (make test runs as root)")
	}
	for _, tool := range append(imageTools, "ssh", "scp", "ssh-keygen") {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run scripts/deps.sh", tool)
		}
	}
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run scripts/deps.sh", err)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
