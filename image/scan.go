package image

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// wireGuardDirs hold WireGuard configuration on a node.
var wireGuardDirs = []string{"etc/wireguard", "etc/ztwizard/wireguard"}

var (
	rePEMPrivate = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----`) })
	reWGSecret   = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?m)^\s*(PrivateKey|PresharedKey)\s*=\s*([A-Za-z0-9+/]{43}=)\s*$`)
	})
)

// ScanTree looks for private keys in the tree at root: PEM private keys
// of any kind (PKCS#1, PKCS#8, SEC 1, encrypted, OpenSSH) in any file,
// and WireGuard private or preshared keys in the WireGuard folders (as a
// key file or a PrivateKey/PresharedKey line). It returns "path: what"
// for each one found.
//
// A file exactly as a Debian package ships it (its MD5 sum matches the
// one in /var/lib/dpkg/info/*.md5sums) is the same on every Debian system:
// the test vectors libgnutls carries for its self-tests are not secrets.
func ScanTree(root string) ([]string, error) {
	shipped := packageSums(root)
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if keys := pemPrivateKeys(data); len(keys) > 0 {
			if sum, ok := shipped[filepath.ToSlash(rel)]; !ok || sum != md5.Sum(data) {
				for _, what := range keys {
					found = append(found, "/"+rel+": "+what)
				}
			}
		}
		for _, dir := range wireGuardDirs {
			if strings.HasPrefix(filepath.ToSlash(rel), dir+"/") {
				for _, what := range wireGuardSecrets(data) {
					found = append(found, "/"+rel+": "+what)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("image: scan %s: %w", root, err)
	}
	return found, nil
}

// packageSums reads the MD5 sums of the files Debian packages installed.
func packageSums(root string) map[string][md5.Size]byte {
	out := map[string][md5.Size]byte{}
	lists, _ := filepath.Glob(filepath.Join(root, "var/lib/dpkg/info/*.md5sums"))
	for _, l := range lists {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			sum, file, ok := strings.Cut(line, "  ")
			b, err := hex.DecodeString(sum)
			if !ok || err != nil || len(b) != md5.Size {
				continue
			}
			out[file] = [md5.Size]byte(b)
		}
	}
	return out
}

// pemPrivateKeys names the PEM private key blocks in data that decode.
// Programs that only mention the armour line (ssh-keygen, libssl) do not
// count: a block needs its base64 body and END line.
func pemPrivateKeys(data []byte) []string {
	var out []string
	for _, loc := range rePEMPrivate().FindAllIndex(data, -1) {
		block, _ := pem.Decode(data[loc[0]:])
		if block != nil && strings.HasSuffix(block.Type, "PRIVATE KEY") && len(block.Bytes) > 0 {
			out = append(out, block.Type)
		}
	}
	return out
}

// wireGuardSecrets names the WireGuard secrets in a file: a bare key
// (what wg genkey writes) or PrivateKey/PresharedKey lines.
func wireGuardSecrets(data []byte) []string {
	var out []string
	if isWireGuardKey(string(bytes.TrimSpace(data))) {
		out = append(out, "WireGuard key")
	}
	for _, m := range reWGSecret().FindAllSubmatch(data, -1) {
		if isWireGuardKey(string(m[2])) {
			out = append(out, "WireGuard "+string(m[1]))
		}
	}
	return out
}

func isWireGuardKey(s string) bool {
	if len(s) != 44 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

// ScanReader looks for PEM private keys in a byte stream (a raw disk, a
// filesystem image), in windows overlapping by 64 KiB so a key across a
// window's edge is still seen whole. It returns the offset and type of
// each.
func ScanReader(r io.Reader) ([]string, error) {
	const window, overlap = 8 << 20, 64 << 10
	var found []string
	buf := make([]byte, window+overlap)
	keep := 0
	var base int64 // offset of buf[0] in the stream
	for {
		n, err := io.ReadFull(r, buf[keep:])
		end := keep + n
		data := buf[:end]
		for _, loc := range rePEMPrivate().FindAllIndex(data, -1) {
			block, _ := pem.Decode(data[loc[0]:])
			if block != nil && strings.HasSuffix(block.Type, "PRIVATE KEY") && len(block.Bytes) > 0 {
				found = append(found, fmt.Sprintf("offset %d: %s", base+int64(loc[0]), block.Type))
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return dedupe(found), nil
		}
		if err != nil {
			return found, fmt.Errorf("image: scan: %w", err)
		}
		keep = min(overlap, end)
		copy(buf, data[end-keep:])
		base += int64(end - keep)
	}
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
