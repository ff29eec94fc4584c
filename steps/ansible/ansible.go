// Package ansible writes what pushes a site to its live nodes with Ansible:
// a plain inventory (one host per node, reached at its endpoint's host,
// with the admin's account, key and SSH certificate), a playbook and a
// known_hosts file holding the site's @cert-authority line. Keys pinned at
// first contact go to a file of their own (pinned_hosts): Ansible's
// known_hosts module, like ssh-keygen -R, drops @cert-authority lines that
// match the host it edits.
//
// The playbook gathers each node's request (the node makes its own keys,
// which never leave it), imports the requests and builds the bundles on the
// CA host (the machine running ansible-playbook), then, batch by batch,
// copies each node its bundle, applies it with a confirm window, and runs
// `ztwizard confirm` over a new SSH connection. A bundle that locks the
// admin out cannot be confirmed: the node rolls itself back at the
// deadline, Ansible reports it failed, and no later batch starts.
//
// Generate is pure: it reads the site and the options and returns the
// files; Write writes them, for the command and the wizard alike.
package ansible

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/sshca"
)

// Names of the files Generate writes, relative to the output folder.
const (
	InventoryFile  = "inventory.yml"
	PlaybookFile   = "push.yml"
	KnownHostsFile = "known_hosts"
)

// DefaultConfirm is the confirm window the inventory gives each apply.
const DefaultConfirm = 120 * time.Second

// Options are what the generated files need besides the site: how the
// admin connects, where ztwizard and the CA's state live on the CA host,
// and what the admin confirmed about hosts not certified yet.
type Options struct {
	// User is the account the admin logs in as on every node; its name
	// must be a principal of the admin's SSH certificate.
	User string
	// Identity is the admin's private key file; Certificate its SSH user
	// certificate ("" for Identity + "-cert.pub").
	Identity, Certificate string
	// Binary is ztwizard on the CA host; the playbook runs it there and
	// copies it to every node.
	Binary string
	// Site is the site file, State the CA host's state folder and
	// PassphraseFile ("" for none) the file that unlocks its CA keys.
	Site, State, PassphraseFile string
	// HostCA is the site's SSH host CA: known_hosts trusts the host
	// certificates it signs.
	HostCA ssh.PublicKey
	// HostKeys maps a node to the SHA256 fingerprint of its SSH host key
	// as the admin confirmed it (on the console, from the provider): the
	// key the playbook trusts before the node has a host certificate.
	HostKeys map[string]string
	// Confirm is the confirm window of each apply; 0 for DefaultConfirm.
	Confirm time.Duration
}

// File is one file Generate writes: its name in the output folder, its
// mode and content.
type File struct {
	Name    string
	Mode    uint32
	Content []byte
}

//go:embed push.yml
var playbook string

// host is one inventory entry.
type host struct {
	Name, Address, Fingerprint string
}

// Generate returns the inventory, the playbook and the known_hosts file for
// site; it refuses what Check refuses.
func Generate(site *steps.Site, o Options) ([]File, error) {
	if err := o.Check(site); err != nil {
		return nil, err
	}
	if o.Certificate == "" {
		o.Certificate = o.Identity + "-cert.pub"
	}
	if o.Confirm == 0 {
		o.Confirm = DefaultConfirm
	}
	var hosts []host
	var patterns []string
	for _, n := range site.Nodes {
		addr, _, _ := net.SplitHostPort(n.Endpoint) // checked by Check
		hosts = append(hosts, host{Name: n.Name, Address: addr, Fingerprint: o.HostKeys[n.Name]})
		for _, p := range []string{n.Name, addr} {
			if !slices.Contains(patterns, p) {
				patterns = append(patterns, p)
			}
		}
	}
	known := sshca.KnownHostsLine(o.HostCA, patterns)
	if known == "" {
		return nil, errors.New("ansible: no SSH host CA, or no node names it could trust")
	}
	inv, err := render(inventory(), map[string]any{"Site": site.Site, "O": o, "Hosts": hosts, "Confirm": duration(o.Confirm)})
	if err != nil {
		return nil, err
	}
	push := strings.Replace(playbook, "SITE", site.Site, 1)
	kh := fmt.Sprintf("# The SSH host CA of site %s: it signs every node's host key. Written by\n"+
		"# `ztwizard ansible`; the keys pinned at first contact go to pinned_hosts.\n%s", site.Site, known)
	return []File{
		{Name: InventoryFile, Mode: 0o644, Content: inv},
		{Name: PlaybookFile, Mode: 0o644, Content: []byte(push)},
		{Name: KnownHostsFile, Mode: 0o644, Content: []byte(kh)},
	}, nil
}

// Check refuses options the files could not carry safely (a path with
// quotes or template markers, a fingerprint that is not SHA256:..., a host
// key for a node not in the site) and a site the inventory cannot describe
// (a node without an endpoint). Its errors name the option or field and
// the value.
func (o Options) Check(site *steps.Site) error {
	for i, n := range site.Nodes {
		if err := steps.ValidName(n.Name); err != nil {
			return fmt.Errorf("nodes[%d].name: %w", i, err)
		}
		if n.Endpoint == "" {
			return fmt.Errorf("nodes[%d] (%s): no endpoint: the inventory reaches a node at its endpoint's host", i, n.Name)
		}
		addr, _, err := net.SplitHostPort(n.Endpoint)
		if err != nil {
			return fmt.Errorf("nodes[%d].endpoint: %q: %w", i, n.Endpoint, err)
		}
		if err := sshca.ValidHostPattern(addr); err != nil || strings.ContainsAny(addr, "*?!") {
			return fmt.Errorf("nodes[%d].endpoint: %q: not a host name or address", i, n.Endpoint)
		}
	}
	if o.User == "" || !validAccount(o.User) {
		return fmt.Errorf("--user %q: not an account name (letters, digits, '.', '_', '-')", o.User)
	}
	for _, p := range []struct{ flag, value string }{
		{"--identity", o.Identity}, {"--certificate", o.Certificate}, {"--binary", o.Binary},
		{"-c", o.Site}, {"--state", o.State}, {"--passphrase-file", o.PassphraseFile},
	} {
		if p.value == "" && (p.flag == "--certificate" || p.flag == "--passphrase-file") {
			continue
		}
		if err := checkPath(p.value); err != nil {
			return fmt.Errorf("%s %q: %w", p.flag, p.value, err)
		}
	}
	if o.Confirm < 0 {
		return fmt.Errorf("--confirm %s: must be positive", o.Confirm)
	}
	names := make([]string, 0, len(o.HostKeys))
	for n := range o.HostKeys {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fp := o.HostKeys[n]
		if _, ok := site.Node(n); !ok {
			return fmt.Errorf("--host-key %s=%s: no node %q in the site", n, fp, n)
		}
		if !ValidFingerprint(fp) {
			return fmt.Errorf("--host-key %s=%q: not a SHA256 fingerprint (SHA256:... as ssh-keygen -lf prints it)", n, fp)
		}
	}
	return nil
}

// ValidFingerprint reports whether fp is an OpenSSH SHA256 key fingerprint:
// "SHA256:" and 43 characters of unpadded base64 (32 bytes).
func ValidFingerprint(fp string) bool {
	b64, ok := strings.CutPrefix(fp, "SHA256:")
	if !ok {
		return false
	}
	sum, err := base64.RawStdEncoding.DecodeString(b64)
	return err == nil && len(sum) == 32
}

// validAccount reports whether s is a plausible local account name.
func validAccount(s string) bool {
	if len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// checkPath refuses a path the inventory cannot carry as it is: one that
// is not absolute, or holds quotes, backslashes, control characters or
// Jinja's markers (Ansible would template it).
func checkPath(p string) error {
	if !filepath.IsAbs(p) {
		return errors.New("must be an absolute path")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\'' || r == '\\' {
			return fmt.Errorf("holds %q, which the inventory cannot quote for ssh", r)
		}
	}
	for _, m := range []string{"{{", "{%", "{#"} {
		if strings.Contains(p, m) {
			return fmt.Errorf("holds %q, which Ansible would read as a template", m)
		}
	}
	return nil
}

// duration is d as ztwizard's --confirm reads it, in whole seconds when it
// is a whole number of them ("120s").
func duration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

// quote is s as a YAML double-quoted scalar.
func quote(s string) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func render(t *template.Template, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("ansible: %s: %w", t.Name(), err)
	}
	return b.Bytes(), nil
}

// inventory is parsed on first use, not at every process start.
var inventory = sync.OnceValue(func() *template.Template {
	return template.Must(template.New(InventoryFile).Funcs(template.FuncMap{"q": quote}).Parse(inventoryText))
})

const inventoryText = `# The nodes of site {{.Site}}, for push.yml. Written by ` + "`ztwizard ansible`" + `.
#
#   ansible-playbook -i inventory.yml push.yml
#
# One host per node, reached at its endpoint's host. Host keys are checked
# strictly, against two files beside this one only: known_hosts, the site's
# @cert-authority line, and pinned_hosts, the keys pinned at first contact.
# A node whose host key is not certified yet is trusted only through
# host_key_fingerprint, the SHA256 fingerprint you confirmed on its console
# (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) or from its provider.
# Leave it empty once the node has its host certificate.
all:
  vars:
    # How you connect to every node: this account, your key and the SSH
    # certificate the site's user CA signed for it.
    ansible_user: {{q .O.User}}
    ansible_ssh_private_key_file: {{q .O.Identity}}
    ztwizard_ssh_certificate: {{q .O.Certificate}}
    ztwizard_known_hosts: "{{"{{"}} inventory_dir {{"}}"}}/known_hosts"
    ztwizard_pinned_hosts: "{{"{{"}} inventory_dir {{"}}"}}/pinned_hosts"
    ansible_ssh_common_args: >-
      -o StrictHostKeyChecking=yes
      -o "GlobalKnownHostsFile={{"{{"}} ztwizard_known_hosts {{"}}"}}"
      -o "UserKnownHostsFile={{"{{"}} ztwizard_pinned_hosts {{"}}"}}"
      -o IdentitiesOnly=yes
      -o "CertificateFile={{"{{"}} ztwizard_ssh_certificate {{"}}"}}"
    ansible_pipelining: true
    # The CA host, where ansible-playbook runs: ztwizard, the site file, the
    # state folder with the CA, and where requests and bundles go.
    ztwizard_local_binary: {{q .O.Binary}}
    ztwizard_site: {{q .O.Site}}
    ztwizard_state: {{q .O.State}}
    ztwizard_passphrase_file: {{q .O.PassphraseFile}}
    ztwizard_work: "{{"{{"}} inventory_dir {{"}}"}}"
    # On the nodes: where ztwizard goes, its working folder, and how long an
    # apply waits for the confirm before it rolls back by itself.
    ztwizard_binary: /usr/local/bin/ztwizard
    ztwizard_remote_dir: /var/lib/ztwizard-push
    ztwizard_confirm: {{q .Confirm}}
  children:
    ztwizard_nodes:
      hosts:
{{- range .Hosts}}
        {{.Name}}:
          ansible_host: {{q .Address}}
          ztwizard_node: {{q .Name}}
          host_key_fingerprint: {{q .Fingerprint}}
{{- end}}
`

// Resolve fills what o leaves out as `ztwizard ansible` does (Binary: this
// program; Identity: ~/.ssh/id_ed25519) and makes every path absolute: the
// playbook runs from its own folder. Its errors name the option.
func (o *Options) Resolve() error {
	var err error
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return fmt.Errorf("ansible: this program's path: %w", err)
		}
	}
	if o.Identity == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("no --identity given and no home folder: %w", err)
		}
		o.Identity = filepath.Join(home, ".ssh", "id_ed25519")
	}
	for _, p := range []struct {
		flag string
		v    *string
	}{{"--binary", &o.Binary}, {"-c", &o.Site}, {"--state", &o.State},
		{"--passphrase-file", &o.PassphraseFile}, {"--identity", &o.Identity}, {"--certificate", &o.Certificate}} {
		if *p.v == "" {
			continue
		}
		abs, err := filepath.Abs(*p.v)
		if err != nil {
			return fmt.Errorf("%s %s: %w", p.flag, *p.v, err)
		}
		*p.v = abs
	}
	return nil
}

// Write generates the files for site and writes them into dir (made 0700),
// each atomically; it returns the paths it wrote, in Generate's order.
// Nothing is written when Generate refuses.
func Write(dir string, site *steps.Site, o Options) ([]string, error) {
	files, err := Generate(site, o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ansible: %w", err)
	}
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := atomicfile.WriteFile(p, f.Content, os.FileMode(f.Mode)); err != nil {
			return paths, fmt.Errorf("ansible: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
