package steps

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// binaryAt tells whether data is not text (a NUL byte or invalid UTF-8),
// and the line where it stops being text.
func binaryAt(data []byte) (line int, ok bool) {
	bad := bytes.IndexByte(data, 0)
	if utf8.Valid(data) && bad < 0 {
		return 0, false
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if (r == utf8.RuneError && size <= 1) || r == 0 {
			bad = i
			break
		}
		i += size
	}
	return 1 + bytes.Count(data[:max(bad, 0)], []byte("\n")), true
}

var (
	sshKeyRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(^|\s)(ssh-[a-z0-9]+|ecdsa-sha2-[a-z0-9]+|sk-[a-z0-9-]+@openssh\.com)(-cert-v01@openssh\.com)?\s+AAAA[0-9A-Za-z+/]`)
	})
	base64RE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9A-Za-z+/_-]{16,}={0,2}$`) })
)

// sniff names the kind of a file that is not a site file, by its shape: a
// PEM key or certificate, an OpenSSH key, a WireGuard key, base64 text. It
// returns the line where that starts and "" when it sees nothing known. The
// kind is all a message may say about such a file: never its bytes.
func sniff(data []byte) (line int, kind string) {
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if label, ok := strings.CutPrefix(l, "-----BEGIN "); ok {
			return i + 1, pemKind(strings.TrimSuffix(label, "-----"))
		}
	}
	for i, l := range lines {
		if m := sshKeyRE().FindStringSubmatch(l); m != nil {
			if m[3] != "" {
				return i + 1, "an SSH certificate"
			}
			return i + 1, "an SSH public key"
		}
	}
	text := strings.TrimSpace(string(data))
	if len(text) == 44 {
		if raw, err := base64.StdEncoding.DecodeString(text); err == nil && len(raw) == 32 {
			return 1 + strings.Count(string(data[:strings.Index(string(data), text)]), "\n"), "a WireGuard key"
		}
	}
	if base64RE().MatchString(text) {
		return 1 + strings.Count(string(data[:strings.Index(string(data), text)]), "\n"), "base64 data (a key?)"
	}
	return 0, ""
}

// pemKind names a PEM block by its label.
func pemKind(label string) string {
	switch {
	case label == "OPENSSH PRIVATE KEY":
		return "an OpenSSH private key"
	case strings.HasSuffix(label, "PRIVATE KEY"):
		return "a private key (PEM)"
	case strings.HasSuffix(label, "CERTIFICATE REQUEST"):
		return "a certificate request (PEM)"
	case strings.HasSuffix(label, "CERTIFICATE"):
		return "a certificate (PEM)"
	case label == "X509 CRL":
		return "a certificate revocation list (PEM)"
	case strings.HasSuffix(label, "PUBLIC KEY"):
		return "a public key (PEM)"
	case label == "SSH SIGNATURE":
		return "an SSH signature"
	case strings.HasPrefix(label, "PGP "):
		return "PGP data"
	}
	return "PEM data (a key or certificate?)"
}
