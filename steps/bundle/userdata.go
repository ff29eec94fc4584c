package bundle

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"ztwizard/steps"
)

// UserDataBundlePath is where cloud-init user-data (UserData) puts the
// bundle on the node, 0600.
const UserDataBundlePath = "/var/lib/ztwizard/first-boot.ztb"

// sshdPrivsep is sshd's privilege separation folder, which Debian's
// ssh.service makes when it starts (RuntimeDirectory).
const sshdPrivsep = "/run/sshd"

// cloudInitUserData is where cloud-init keeps the instance's user-data.
const cloudInitUserData = "/var/lib/cloud/instance/user-data.txt"

// Install says where a node fetches ztwizard from on its first boot.
type Install struct {
	// URL of the ztwizard binary, https or http: the SHA-256 pin gives
	// integrity either way; https also hides which file is fetched.
	URL    string
	SHA256 string // its SHA-256, hex
}

var (
	hexSHA256   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{64}$`) })
	packageName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`) })
)

// UserData writes #cloud-config user-data for a provider's new VPS: on its
// first boot, in cloud-init's bootcmd (which runs before sshd starts and
// before cloud-init's other modules), it installs those of the packages
// the node's plan names that dpkg does not have (no apt at all when none
// is missing), fetches ztwizard from in.URL with python3 (there wherever
// cloud-init runs) checking its SHA-256 before it is installed at
// steps.BinaryPath, and applies the bundle (data, whose payload is p) with
// --no-confirm, trusting the CA by its fingerprint. cloud-init-per runs
// it once per instance. The bundle travels in write_files (base64, 0600
// at UserDataBundlePath); ztwizard reads it from cloud-init's copy of the
// user-data, so it is never on a command line or in cloud-init's logs.
// The user-data holds the node's private keys when the bundle does.
func UserData(p *Payload, data []byte, packages []string, in Install) ([]byte, error) {
	u, err := url.Parse(in.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsAny(in.URL, "'\"\\ \n`$") {
		return nil, fmt.Errorf("bundle: user-data: %q is not an https or http URL of the ztwizard binary", in.URL)
	}
	if !hexSHA256().MatchString(in.SHA256) {
		return nil, fmt.Errorf("bundle: user-data: %q is not a SHA-256 in hex", in.SHA256)
	}
	for _, pk := range packages {
		if !packageName().MatchString(pk) {
			return nil, fmt.Errorf("bundle: user-data: %q is not a package name", pk)
		}
	}
	fp, err := ParseFingerprint(p.CAFingerprint)
	if err != nil {
		return nil, fmt.Errorf("bundle: user-data: %w", err)
	}
	script := firstBootScript(steps.BinaryPath, sshdPrivsep, packages, in, fp)
	doc := map[string]any{
		"bootcmd": []any{[]string{"cloud-init-per", "once", "ztwizard-first-boot", "sh", "-c", script}},
		"write_files": []map[string]string{{
			"path":        UserDataBundlePath,
			"permissions": "0600",
			"owner":       "root:root",
			"encoding":    "b64",
			"content":     base64.StdEncoding.EncodeToString(data),
		}},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("bundle: user-data: %w", err)
	}
	head := fmt.Sprintf("#cloud-config\n# ztwizard: node %s of site %s, bundle serial %d, CA %s, made %s.\n",
		p.Node, p.Site, p.Serial, fp, p.Created.UTC().Format(time.RFC3339))
	if p.PrivateKeys {
		head += "# It holds the node's private keys: hand it to the provider only over a channel you trust.\n"
	}
	return append([]byte(head), out...), nil
}

// firstBootScript is the shell (sh -c) that installs the packages dpkg
// lacks and ztwizard at bin: fetched with python3's urllib to bin.part
// (retried: the network may still be coming up), checked against the
// SHA-256, then moved into place; then bin applies the bundle in
// cloud-init's copy of the user-data, trusting the CA fingerprint fp.
// privsep is sshd's privilege separation folder: apply's check (sshd -t)
// needs it, and this early ssh.service has not made it yet.
// Each step says on stdout what it did; nothing secret is on its command
// lines.
func firstBootScript(bin, privsep string, packages []string, in Install, fp string) string {
	parts := []string{"set -eu", "umask 022", "export DEBIAN_FRONTEND=noninteractive"}
	if len(packages) > 0 {
		parts = append(parts,
			"missing=''",
			"for p in "+strings.Join(packages, " ")+"; do",
			"  case \"$(dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null || true)\" in *' installed') ;; *) missing=\"$missing $p\" ;; esac",
			"done",
			"if [ -n \"$missing\" ]; then",
			"  echo \"ztwizard first boot: installing$missing\"",
			"  apt-get update -qq",
			"  apt-get install -y -qq --no-install-recommends $missing",
			"else",
			"  echo 'ztwizard first boot: packages present: "+strings.Join(packages, " ")+"'",
			"fi")
	}
	return strings.Join(append(parts,
		"mkdir -p "+path.Dir(bin),
		"rm -f "+bin+".part",
		"i=0",
		"until python3 -c 'import shutil, sys, urllib.request as u; shutil.copyfileobj(u.urlopen(sys.argv[1], timeout=60), open(sys.argv[2], \"wb\"))' \\",
		"    '"+in.URL+"' "+bin+".part; do",
		"  i=$((i+1))",
		"  if [ $i -ge 10 ]; then echo 'ztwizard first boot: cannot fetch "+in.URL+"' >&2; exit 1; fi",
		"  sleep 3",
		"done",
		"echo '"+in.SHA256+"  "+bin+".part' | sha256sum -c --quiet",
		"chmod 0755 "+bin+".part",
		"mv -f "+bin+".part "+bin,
		"echo 'ztwizard first boot: fetched "+in.URL+" (SHA-256 "+in.SHA256+") to "+bin+"'",
		"mkdir -p -m 0755 "+privsep,
		"umask 077",
		fmt.Sprintf("%s apply --bundle %s --ca-fingerprint %s --no-confirm", bin, cloudInitUserData, fp),
	), "\n") + "\n"
}

// userDataFile is a write_files entry.
type userDataFile struct {
	Path     string `yaml:"path"`
	Encoding string `yaml:"encoding"`
	Content  string `yaml:"content"`
}

// FromUserData returns the bundle inside #cloud-config user-data made by
// UserData; ok is false when data is not user-data at all.
func FromUserData(data []byte) (bundle []byte, ok bool, err error) {
	if !bytes.HasPrefix(data, []byte("#cloud-config")) {
		return nil, false, nil
	}
	var doc struct {
		WriteFiles []userDataFile `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, true, refused("user-data: %v", err)
	}
	i := slices.IndexFunc(doc.WriteFiles, func(f userDataFile) bool { return f.Path == UserDataBundlePath })
	if i < 0 {
		return nil, true, refused("user-data: no write_files entry for %s", UserDataBundlePath)
	}
	f := doc.WriteFiles[i]
	if f.Encoding != "b64" && f.Encoding != "base64" {
		return nil, true, refused("user-data: %s is not base64", UserDataBundlePath)
	}
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(f.Content), ""))
	if err != nil {
		return nil, true, refused("user-data: %s: %v", UserDataBundlePath, err)
	}
	if len(b) == 0 {
		return nil, true, refused("user-data: an empty bundle")
	}
	return b, true, nil
}
