//go:build linux

package testenv

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Substitute returns base with each old string of pairs (old, new, old,
// new, ...) replaced, once, by the new one after it; an old string that
// is not there fails t. It makes variants of a site file.
func Substitute(t testing.TB, base []byte, pairs ...string) []byte {
	t.Helper()
	if len(pairs)%2 != 0 {
		t.Fatalf("Substitute: %d strings, want old-new pairs", len(pairs))
	}
	s := string(base)
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("the site has no %q", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return []byte(s)
}

// HubSite is a site file whose node n0 has n peers, n1 to nN, each of them
// a client of n0's MariaDB database: n0's firewall set and WireGuard
// interface both hold n entries. adminCIDRs are its ssh.admin_cidrs.
func HubSite(n int, adminCIDRs ...string) []byte {
	var peers []string
	for i := 1; i <= n; i++ {
		peers = append(peers, fmt.Sprintf("n%d", i))
	}
	list := strings.Join(peers, ", ")
	var b strings.Builder
	fmt.Fprintf(&b, `version: 1
site: hub
ca:
  subject: {common_name: Hub Root CA, organization: Hub}
ssh:
  admin_cidrs: [%s]
  users:
    - {name: alice, principals: [root]}
wireguard:
  network: 10.100.0.0/16
nodes:
  - {name: n0, endpoint: "10.200.0.0:51820", peers: [%s]}
`, strings.Join(adminCIDRs, ", "), list)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - {name: n%d, endpoint: \"10.200.%d.%d:51820\"}\n", i, i/256, i%256)
	}
	fmt.Fprintf(&b, `databases:
  - {name: main, node: n0, engine: mariadb, port: 3306, clients: [%s]}
firewall:
  public_tcp: [80, 443]
`, list)
	return []byte(b.String())
}

// TreeDump lists every entry under root, one line each: its path relative
// to root, mode, owner and group, and a regular file's SHA-256 or a
// symbolic link's target. Two trees with equal dumps hold the same.
func TreeDump(t testing.TB, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", target)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatalf("dump %s: %v", root, err)
	}
	return b.String()
}

// Mtimes maps every entry under root but its folders (files, symbolic
// links, ...) to its modification time: a rewrite shows as a change.
func Mtimes(t testing.TB, root string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fi.ModTime()
		return nil
	})
	if err != nil {
		t.Fatalf("modification times under %s: %v", root, err)
	}
	return out
}

// DiffLines reports, for failure messages, the lines of want that got
// lacks ("- ") and those of got that want lacks ("+ ").
func DiffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// echoPayload is the data of every ICMP echo request EchoRequest makes.
const echoPayload = "zt"

// EchoRequest is an ICMPv4 echo request (type 8) with identifier id,
// sequence number seq and "zt" as its data, checksum set.
func EchoRequest(id, seq uint16) []byte {
	msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}
	msg = append(msg, echoPayload...)
	binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
	return msg
}

// icmpChecksum is the Internet checksum (RFC 1071) of b.
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
