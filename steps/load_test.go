package steps

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
)

// secretWindows returns every run of n characters of a key file's secret
// part: the base64 body of each PEM block, or the whole text otherwise.
func secretWindows(data []byte, n int) []string {
	var body string
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		body += strings.ReplaceAll(string(pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: block.Bytes})), "\n", "")
		body = strings.TrimSuffix(strings.TrimPrefix(body, "-----BEGIN X-----"), "-----END X-----")
	}
	if body == "" {
		body = strings.Join(strings.Fields(string(data)), "")
	}
	var out []string
	for i := 0; i+n <= len(body); i++ {
		out = append(out, body[i:i+n])
	}
	return out
}

// leak finds a piece of the key in a message, whitespace and escaped new
// lines removed (a quoted message folds the key onto one line).
func leak(msg string, windows []string) string {
	flat := strings.Join(strings.Fields(strings.ReplaceAll(msg, `\n`, " ")), "")
	for _, w := range windows {
		if strings.Contains(flat, w) {
			return w
		}
	}
	return ""
}

// keyFiles makes one real file of each kind ztwizard keeps in its store,
// and the kind the loader must name.
func keyFiles(t *testing.T) []struct {
	name, kind string
	data       []byte
} {
	t.Helper()
	key, err := pki.GenerateKey(pki.KeyType("ecdsa-p256"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKeyPEM(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	encPEM, err := pki.EncodeKeyPEM(key, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewRoot(pki.Subject{CommonName: "Test Root"}, key, 24*time.Hour, time.Now(), big.NewInt(7))
	if err != nil {
		t.Fatal(err)
	}
	sshKey, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sshPEM, err := sshca.EncodePrivateKey(sshKey, "user-ca", nil)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(sshKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubLine := sshca.PublicKeyLine(sshPub, "user-ca")
	wg, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 512)
	if _, err := rand.Read(junk); err != nil {
		t.Fatal(err)
	}
	return []struct {
		name, kind string
		data       []byte
	}{
		{"ca-key.pem", "a private key (PEM)", keyPEM},
		{"ca-key-encrypted.pem", "a private key (PEM)", encPEM},
		{"ca.pem", "a certificate (PEM)", pki.EncodeCertPEM(ca.Cert)},
		{"user_ca", "an OpenSSH private key", sshPEM},
		{"user_ca.pub", "an SSH public key", []byte(pubLine)},
		{"web.key", "a WireGuard key", []byte(wg.String() + "\n")},
		{"index.bin", "binary data", junk},
	}
}

// TestKeyFileNeverQuoted gives the loader each kind of key file instead of
// a site: the error names the file, the line and the kind, and holds no
// piece of the key.
func TestKeyFileNeverQuoted(t *testing.T) {
	for _, kf := range keyFiles(t) {
		t.Run(kf.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), kf.name)
			if err := os.WriteFile(path, kf.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			var list Errors
			if !errors.As(err, &list) || len(list) != 1 {
				t.Fatalf("want one site error, got %v", err)
			}
			msg := err.Error()
			if kf.kind == "binary data" {
				if !strings.Contains(msg, "not a site file: it holds binary data") {
					t.Fatalf("message %q does not say binary data", msg)
				}
				for i := 0; i+6 <= len(kf.data); i++ {
					if bytes.Contains([]byte(msg), kf.data[i:i+6]) {
						t.Fatalf("message holds bytes of the file: %q", msg)
					}
				}
				return
			}
			want := fmt.Sprintf("%s:1: not a site file: it looks like %s", path, kf.kind)
			if msg != want {
				t.Fatalf("got  %s\nwant %s", msg, want)
			}
			if w := leak(msg, secretWindows(kf.data, 8)); w != "" {
				t.Fatalf("message holds %q of the key: %s", w, msg)
			}
		})
	}
}

// TestYAMLErrorsQuoteNoContent holds that what the YAML library says about
// a file that is no site never carries the file's text on.
func TestYAMLErrorsQuoteNoContent(t *testing.T) {
	const secret = "hunter2Secret"
	for name, doc := range map[string]string{
		"unknown anchor":      "version: 1\nsite: *" + secret + "\n",
		"anchor in a list":    "nodes: [*" + secret + "]\n",
		"scalar":              secret + " and more " + secret + "\n",
		"list":                "- " + secret + "\n- x\n",
		"foreign mapping":     "password: " + secret + "\nuser: root\n",
		"json":                `{"token": "` + secret + `"}`,
		"bad base64":          "version: 1\nsite: !!binary " + secret + "!!\n",
		"tab after secret":    secret + ":\n\t- x\n",
		"unterminated quote":  "version: 1\nsite: \"" + secret + "\n",
		"flow not closed":     "nodes: [" + secret + ", {name: " + secret + "\n",
		"bad escape":          "site: \"" + secret + "\\q\"\n",
		"second document bad": "version: 1\n---\n" + secret + ": [\n",
		"control character":   "site: " + secret + "\x01\n",
		"long value":          "version: 1\nsite: " + strings.Repeat(secret, 100) + "\n",
		"long key":            "version: 1\n" + strings.Repeat(secret, 10) + ": 1\n",
		"mapping key":         "version: 1\n? [" + secret + "]\n: 1\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(doc), "x.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("message quotes the file: %v", err)
			}
		})
	}
}

// TestLoadRefusesWhatIsNoFile reads devices, folders and huge files
// without reading them whole, and still reads a site from a pipe.
func TestLoadRefusesWhatIsNoFile(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 30); err != nil { // sparse: reading it would take minutes
		t.Fatal(err)
	}
	f.Close()
	limit := fmt.Sprintf("larger than %d bytes (4 MiB), the limit for a site file", MaxSiteSize)
	for _, tt := range []struct{ path, want string }{
		{"/dev/zero", "/dev/zero: is a character device, not a site file"},
		{"/dev/urandom", "/dev/urandom: is a character device, not a site file"},
		{dir, dir + ": is a folder, not a site file"},
		{big, big + ": " + limit},
	} {
		start := time.Now()
		_, err := Load(tt.path)
		var list Errors
		if !errors.As(err, &list) || err.Error() != tt.want {
			t.Errorf("%s: got %v, want %s", tt.path, err, tt.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", tt.path, d)
		}
	}

	// An endless pipe is cut at the limit.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		chunk := bytes.Repeat([]byte("# comment line\n"), 4096)
		for {
			if _, err := w.Write(chunk); err != nil {
				w.Close()
				return
			}
		}
	}()
	path := fmt.Sprintf("/proc/self/fd/%d", r.Fd())
	_, err = Load(path)
	r.Close()
	if err == nil || err.Error() != path+": "+limit {
		t.Errorf("endless pipe: got %v", err)
	}

	// A named pipe holding a site is read like a file.
	fifo := filepath.Join(dir, "site.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			done <- err
			return
		}
		_, err = w.Write(ExampleYAML)
		w.Close()
		done <- err
	}()
	if s, err := Load(fifo); err != nil || s.Site != "oslo-prod" {
		t.Errorf("site from a named pipe: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSecondDocument refuses content after a "---", but not a bare one.
func TestSecondDocument(t *testing.T) {
	if _, err := Parse(append(bytes.Clone(ExampleYAML), "---\n"...), "x.yaml"); err != nil {
		t.Fatalf("a closing --- refused: %v", err)
	}
	_, err := Parse(append(bytes.Clone(ExampleYAML), "---\n---\nsite: other\n"...), "x.yaml")
	if err == nil || !strings.Contains(err.Error(), `a second YAML document (after "---"); a site file holds exactly one`) {
		t.Fatalf("got %v", err)
	}
}

// stringFields returns every text field of v, by path.
func stringFields(v reflect.Value, path string, out map[string]reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		out[path] = v
	case reflect.Struct:
		for i := range v.NumField() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			stringFields(v.Field(i), join(path, name), out)
		}
	case reflect.Slice:
		for i := range v.Len() {
			stringFields(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// TestLongValuesNeverQuoted sets each text field of the example, one at a
// time, to a long value: it is reported once, at its path, and no message
// quotes it.
func TestLongValuesNeverQuoted(t *testing.T) {
	fields := map[string]reflect.Value{}
	stringFields(reflect.ValueOf(example(t)).Elem(), "", fields)
	if len(fields) < 20 {
		t.Fatalf("only %d text fields", len(fields))
	}
	long := strings.Repeat("Z", MaxValueLen+1)
	for path := range fields {
		s := example(t)
		f := map[string]reflect.Value{}
		stringFields(reflect.ValueOf(s).Elem(), "", f)
		f[path].SetString(long)
		got := messages(s.Validate())
		want := fmt.Sprintf("%s: %d bytes is too long (at most %d)", path, len(long), MaxValueLen)
		if !slices.Contains(got, want) {
			t.Errorf("%s: want %q in\n  %s", path, want, strings.Join(got, "\n  "))
		}
		for _, m := range got {
			if strings.Contains(m, "ZZZZZZZZ") {
				t.Errorf("%s: message quotes the value: %.120s", path, m)
			}
		}
	}
}

// TestLoadDraft reads a site that does not validate, for the wizard, with
// Load's limits.
func TestLoadDraft(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(path, bytes.Replace(ExampleYAML, []byte("peers: [db]"), []byte("peers: [dbb]"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("Load took a site that does not validate")
	}
	s, err := LoadDraft(path)
	if err != nil || s.Nodes[1].Peers[0] != "dbb" || s.CA.Key != DefaultCAKey {
		t.Fatalf("draft: %v", err)
	}
	for _, bad := range []string{"/dev/zero", "version: 1\nsite: x\nnodes: {a: 1}\n"} {
		p := bad
		if !strings.HasPrefix(bad, "/") {
			p = filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var list Errors
		if _, err := LoadDraft(p); !errors.As(err, &list) {
			t.Errorf("%s: got %v", bad, err)
		}
	}
}

// TestHugeValuesCostNoQuadraticWork parses a site whose node name and peer
// are a megabyte each: the "did you mean" search skips what is no name
// (it once compared them letter by letter, a terabyte table).
func TestHugeValuesCostNoQuadraticWork(t *testing.T) {
	a, b := strings.Repeat("a", 1<<20), strings.Repeat("b", 1<<20)
	y := strings.Replace(string(ExampleYAML), "{name: db,", "{name: "+a+",", 1)
	y = strings.Replace(y, "peers: [db]", "peers: ["+b+"]", 1)
	_, err := Parse([]byte(y), "huge.yaml")
	got := messages(err)
	if !slices.Contains(got, "nodes[0].name: 1048576 bytes is too long (at most 260)") ||
		!slices.Contains(got, "nodes[1].peers[0]: 1048576 bytes is too long (at most 260)") {
		t.Fatalf("got %.300v", got)
	}
}
