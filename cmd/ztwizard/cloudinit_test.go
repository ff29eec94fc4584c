package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"ztwizard/image"
)

// relayEnv makes the test binary a relay (see relay): qemu's guestfwd
// runs it once per connection the guest opens.
const relayEnv = "ZTWIZARD_TEST_RELAY"

// relay copies stdin to a TCP connection to addr and the connection to
// stdout: qemu's user network hands it one guest connection on both.
func relay(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 1
	}
	done := make(chan struct{})
	go func() {
		io.Copy(os.Stdout, c)
		close(done)
	}()
	io.Copy(c, os.Stdin)
	c.(*net.TCPConn).CloseWrite()
	<-done
	return 0
}

// binServer serves a file over HTTP on loopback and records the requests.
type binServer struct {
	addr string
	mu   sync.Mutex
	gets []string
}

func serveBinary(t *testing.T, path string, data []byte) *binServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &binServer{addr: l.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.gets = append(s.gets, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		if r.Method != http.MethodGet || r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}), ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *binServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.gets...)
}

// guestChecks is the vendor-data of the user-data boot: after the
// user-data's first boot, cloud-init runs it (runcmd) and it prints
// ZTWIZARD-CI lines on the console: the bundle file's mode and owner, the
// installed binary's SHA-256, the ruleset and the WireGuard interface, the
// node's self-check, whether sshd started only after cloud-init's init
// stage (where bootcmd runs), and whether cloud-init's logs or the journal
// hold a private key, the node's WireGuard key or a piece of the bundle.
// Then it reboots, once (power_state is per instance).
const guestChecks = `#cloud-config
runcmd:
  - - sh
    - -c
    - |
      out() { echo "ZTWIZARD-CI $*" > /dev/console; }
      b=/var/lib/ztwizard/first-boot.ztb
      out "bundle=$(stat -c %a:%U:%G $b)"
      out "binary=$(sha256sum /usr/local/bin/ztwizard | cut -d' ' -f1)"
      if nft list table inet ztwizard >/dev/null 2>&1; then out "ruleset=loaded"; else out "ruleset=missing"; fi
      if ip link show zt0 >/dev/null 2>&1; then out "interface=zt0"; else out "interface=missing"; fi
      out "selfcheck: $(/usr/local/bin/ztwizard selfcheck --node web --wait 90s 2>&1 | grep ZTWIZARD-SELFCHECK)"
      ci=$(systemctl show -P ActiveEnterTimestampMonotonic cloud-init.service)
      ssh=$(systemctl show -P ExecMainStartTimestampMonotonic ssh.service)
      if [ "$ssh" -gt "$ci" ]; then out "sshd=after-bootcmd"; else out "sshd=before-bootcmd($ssh<=$ci)"; fi
      logs="/var/log/cloud-init.log /var/log/cloud-init-output.log"
      for f in $logs; do [ -s "$f" ] || out "log-missing=$f"; done
      grep -q 'ztwizard first boot: fetched' /var/log/cloud-init-output.log && out "output-log=has-bootcmd"
      wg=$(cat /etc/ztwizard/wireguard/private.key)
      piece=$(sed -n 's/^ *- content: //p' /var/lib/cloud/instance/user-data.txt | cut -c200-263)
      journalctl -b --no-pager > /run/journal.txt
      leak=none
      for f in $logs /run/journal.txt; do
        if grep -q 'PRIVATE[ ]KEY' "$f" || grep -qF "$wg" "$f" || grep -qF "$piece" "$f"; then leak="$leak $f"; fi
      done
      [ ${#wg} -eq 44 ] && [ ${#piece} -eq 64 ] || leak="no-needles"
      out "leaks=$leak"
      out "done"
power_state:
  mode: reboot
  condition: true
`

// testCloudInitFirstBoot boots the golden image as a provider's new VPS:
// its NoCloud seed holds the user-data `bundle --cloud-init` wrote, as
// written, and the test's checks as vendor-data. The guest's only network
// is qemu's user network (restrict=on); http://10.0.2.100/ztwizard is
// forwarded to the test's HTTP server on loopback, which serves a copy of
// ztwizard that differs from the image's (a few bytes appended), so the
// binary that ran is the fetched one.
func testCloudInitFirstBoot(t *testing.T, b *bakedImages) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tag := make([]byte, 16)
	rand.Read(tag)
	data = append(data, tag...)
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	srv := serveBinary(t, "/ztwizard", data)

	// web: the golden image has every package web's plan names (nginx),
	// and the guest cannot reach a mirror.
	ud := filepath.Join(b.dir, "web-user-data.yaml")
	if _, err := bakeRun(b.dir, nil, "bundle", "--state", b.state, "--node", "web", "--out", filepath.Join(b.dir, "web-ci.ztb"),
		"--cloud-init", ud, "--ztwizard-url", "http://10.0.2.100/ztwizard", "--ztwizard-sha256", hexSum); err != nil {
		t.Fatal(err)
	}
	user, err := os.ReadFile(ud)
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(b.dir, "web-user-data-seed.iso")
	if err := image.WriteNoCloud(seed, b.dir, map[string][]byte{
		"meta-data":   []byte("instance-id: ztwizard-user-data-web\nlocal-hostname: web\n"),
		"user-data":   user,
		"vendor-data": []byte(guestChecks),
	}); err != nil {
		t.Fatal(err)
	}
	fwd := fmt.Sprintf("guestfwd=tcp:10.0.2.100:80-cmd:env %s=%s %s", relayEnv, srv.addr, self)
	v := bootImage(t, "golden-user-data", b.golden,
		"-device", "virtio-scsi-pci,id=scsi0",
		"-drive", "if=none,id=seed,format=raw,readonly=on,media=cdrom,file="+seed,
		"-device", "scsi-cd,drive=seed,bus=scsi0.0",
		"-netdev", "user,id=n0,restrict=on,"+fwd, "-device", "virtio-net-pci,netdev=n0")
	v.waitFor(t, regexp.MustCompile(`ZTWIZARD-CI done`), bootTimeout(t))
	lines := strings.Join(v.find(regexp.MustCompile(`ZTWIZARD-CI .*`)), "\n")
	t.Logf("the guest's checks:\n%s", lines)
	if got := srv.requests(); len(got) != 1 || got[0] != "GET /ztwizard" {
		t.Errorf("the test's server saw %q: want one GET /ztwizard", got)
	}
	for _, want := range []string{
		"ZTWIZARD-CI bundle=600:root:root",
		"ZTWIZARD-CI binary=" + hexSum,
		"ZTWIZARD-CI ruleset=loaded",
		"ZTWIZARD-CI interface=zt0",
		"ZTWIZARD-CI selfcheck: ZTWIZARD-SELFCHECK ok node=web ",
		"wireguard=zt0@10.100.0.2:db",
		"ZTWIZARD-CI sshd=after-bootcmd",
		"ZTWIZARD-CI output-log=has-bootcmd",
		"ZTWIZARD-CI leaks=none\n",
	} {
		if !strings.Contains(lines+"\n", want) {
			t.Errorf("the guest's checks lack %q", want)
		}
	}
	if strings.Contains(lines, "log-missing") {
		t.Error("cloud-init's logs are missing")
	}
	if t.Failed() {
		console, _ := os.ReadFile(v.serial)
		if i := strings.Index(string(console), "ztwizard first boot:"); i >= 0 {
			console = console[i:min(len(console), i+6000)]
		}
		t.Logf("the first boot on the console:\n%s", console)
	}
	// The bootcmd's own lines reached the console: the packages were all
	// there (no apt), the binary came from the test's server.
	for _, want := range []string{"ztwizard first boot: packages present: nftables openssh-server nginx",
		"ztwizard first boot: fetched http://10.0.2.100/ztwizard (SHA-256 " + hexSum + ")"} {
		if len(v.find(regexp.MustCompile(regexp.QuoteMeta(want)))) != 1 {
			t.Errorf("the console lacks %q", want)
		}
	}

	// The second boot (the checks end with a reboot) applies nothing. Its
	// console starts a new file.
	select {
	case err := <-v.exited:
		v.exited <- err
	case <-time.After(5 * time.Minute):
		t.Fatalf("the guest did not reboot after its checks:\n%s", v.tail(20))
	}
	if err := os.Rename(v.serial, v.serial+".1"); err != nil {
		t.Fatal(err)
	}
	(&serverVM{imageVM: v}).powerCycle(t, time.Minute)
	v.waitFor(t, regexp.MustCompile(`Cloud-init v\. .* finished at`), bootTimeout(t))
	if again := v.find(regexp.MustCompile(`ztwizard first boot:|ZTWIZARD-CI`)); len(again) > 0 {
		t.Errorf("the second boot ran the first boot again: %q", again)
	}
	if got := srv.requests(); len(got) != 1 {
		t.Errorf("the second boot fetched again: %q", got)
	}
}
