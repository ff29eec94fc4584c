package steps

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps/sshca"
	"ztwizard/templates"
)

// sshKRLMagic starts every OpenSSH binary KRL ("SSHKRL\n\0").
const sshKRLMagic = "SSHKRL\n\x00"

// sshDropIn is what templates/sshd.tmpl needs.
type sshDropIn struct {
	Site          string
	Node          string
	UserCA        string
	PrincipalsDir string
	KRL           string
	HostKey       string
	HostCert      string // "" without a host certificate
	Forwarding    []sshForward
}

// sshForward is what the drop-in's Match block allows one local account.
type sshForward struct {
	Account     string
	Users       string // the site users granted it, comma separated
	Agent, Port bool
}

// SSHFiles returns the files that make sshd on node accept only SSH
// certificates from the site's user CA, and let clients trust the site's
// hosts through its host CA, sorted by path:
//
//   - the sshd drop-in (SSHDropInPath),
//   - the user CA public key (SSHUserCAPath),
//   - the KRL (SSHKRLPath), an empty one when sec.KRL is nil,
//   - the host certificate (SSHHostCertPath) when sec.HostCert is set,
//   - one principals file per local account named by a user's principals
//     (SSHPrincipalsDir/ACCOUNT), listing the account's own name,
//   - a known_hosts file (SSHKnownHostsPath) whose one @cert-authority line
//     trusts the host CA for every node's name, mesh address and endpoint
//     host.
//
// It is pure: the same inputs give the same files.
func SSHFiles(site *Site, node string, sec *Secrets) ([]File, error) {
	files, err := sshFiles(site, node, sec)
	if err != nil {
		return nil, fmt.Errorf("ssh: node %q: %w", node, err)
	}
	return files, nil
}

func sshFiles(site *Site, node string, sec *Secrets) ([]File, error) {
	if site == nil {
		return nil, errors.New("no site")
	}
	if sec == nil {
		return nil, errors.New("no secrets")
	}
	// Both names go into the rendered files: keep them to the site
	// file's rules even when the site was not validated.
	if err := ValidName(site.Site); err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	if err := ValidName(node); err != nil {
		return nil, err
	}
	if _, ok := site.Node(node); !ok {
		return nil, errors.New("not a node of the site")
	}
	if _, err := sshCAKeys(sec.SSHUserCA); err != nil {
		return nil, fmt.Errorf("user CA: %w", err)
	}
	hostCAs, err := sshCAKeys(sec.SSHHostCA)
	if err != nil {
		return nil, fmt.Errorf("host CA: %w", err)
	}

	krl := sec.KRL
	if len(krl) == 0 {
		krl = (&sshca.KRL{}).Marshal()
	} else if !bytes.HasPrefix(krl, []byte(sshKRLMagic)) {
		// sshd refuses every key when it cannot read RevokedKeys.
		return nil, errors.New("KRL: not an OpenSSH binary KRL")
	}

	data := sshDropIn{
		Site:          site.Site,
		Node:          node,
		UserCA:        SSHUserCAPath,
		PrincipalsDir: SSHPrincipalsDir,
		KRL:           SSHKRLPath,
		HostKey:       SSHHostKeyPath,
	}
	if data.Forwarding, err = sshForwarding(site); err != nil {
		return nil, err
	}
	files := []File{
		{Path: SSHUserCAPath, Mode: 0o644, Content: sshLine(sec.SSHUserCA)},
		{Path: SSHKRLPath, Mode: 0o644, Content: krl},
	}
	if len(sec.HostCert) > 0 {
		if err := sshCheckHostCert(sec.HostCert, hostCAs, node); err != nil {
			return nil, fmt.Errorf("host certificate: %w", err)
		}
		data.HostCert = SSHHostCertPath
		files = append(files, File{Path: SSHHostCertPath, Mode: 0o644, Content: sshLine(sec.HostCert)})
	}
	dropIn, err := templates.Render("sshd.tmpl", data)
	if err != nil {
		return nil, err
	}
	files = append(files, File{Path: SSHDropInPath, Mode: 0o644, Content: dropIn})

	accounts, err := sshAccounts(site)
	if err != nil {
		return nil, err
	}
	for _, a := range accounts {
		content := fmt.Sprintf("# Written by ztwizard: certificates naming principal %s may log in as %s.\n"+
			"# Site users given this account: %s.\n%s\n", a.name, a.name, strings.Join(a.users, ", "), a.name)
		files = append(files, File{Path: path.Join(SSHPrincipalsDir, a.name), Mode: 0o644, Content: []byte(content)})
	}

	patterns, err := sshHostPatterns(site, sec)
	if err != nil {
		return nil, err
	}
	// One @cert-authority line per host CA: two during a CA rotation.
	var line string
	for _, ca := range hostCAs {
		l := sshca.KnownHostsLine(ca, patterns)
		if l == "" {
			return nil, errors.New("known_hosts: no host patterns")
		}
		line += l
	}
	known := fmt.Sprintf("# Written by ztwizard: the nodes of site %q present host certificates\n"+
		"# signed by this CA.\n%s", site.Site, line)
	files = append(files, File{Path: SSHKnownHostsPath, Mode: 0o644, Content: []byte(known)})

	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// sshCAKeys parses a CA's public key line, or two during a CA rotation
// (the old CA's and the new one's); a certificate is not a CA key.
func sshCAKeys(lines []byte) ([]ssh.PublicKey, error) {
	if len(bytes.TrimSpace(lines)) == 0 {
		return nil, errors.New("missing public key")
	}
	var out []ssh.PublicKey
	for rest := lines; len(bytes.TrimSpace(rest)) > 0; {
		if len(out) == 2 {
			return nil, errors.New("more than two key lines (an old and a new CA during a rotation)")
		}
		pub, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			return nil, fmt.Errorf("not an SSH public key line: %w", err)
		}
		if _, ok := pub.(*ssh.Certificate); ok {
			return nil, errors.New("is a certificate, not a CA public key")
		}
		out, rest = append(out, pub), r
	}
	return out, nil
}

// sshCheckHostCert checks that line is a host certificate signed by one of
// hostCAs that names node, so clients trusting the site's host CA accept it.
func sshCheckHostCert(line []byte, hostCAs []ssh.PublicKey, node string) error {
	pub, _, _, rest, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return fmt.Errorf("not an SSH certificate line: %w", err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return errors.New("more than one line")
	}
	cert, ok := pub.(*ssh.Certificate)
	switch {
	case !ok:
		return errors.New("a plain public key, not a certificate")
	case cert.CertType != ssh.HostCert:
		return errors.New("a user certificate, not a host certificate")
	case !slices.ContainsFunc(hostCAs, func(ca ssh.PublicKey) bool { return bytes.Equal(cert.SignatureKey.Marshal(), ca.Marshal()) }):
		return fmt.Errorf("signed by %s, not by the site's host CA %s",
			ssh.FingerprintSHA256(cert.SignatureKey), ssh.FingerprintSHA256(hostCAs[0]))
	case !slices.Contains(cert.ValidPrincipals, node):
		return fmt.Errorf("names %q, not the node", cert.ValidPrincipals)
	}
	return nil
}

// sshAccount is a local account some site user may log in as.
type sshAccount struct {
	name  string
	users []string // site users whose principals name it, sorted
}

// sshAccounts returns every local account named in a user's principals,
// sorted by name.
func sshAccounts(site *Site) ([]sshAccount, error) {
	byName := map[string][]string{}
	for i, u := range site.SSH.Users {
		for j, p := range u.Principals {
			// The principal becomes a file name: check it here too, the
			// site may not have been validated.
			if err := sshca.ValidPrincipal(p); err != nil {
				return nil, fmt.Errorf("ssh.users[%d].principals[%d]: %w", i, j, err)
			}
			if !slices.Contains(byName[p], u.Name) {
				byName[p] = append(byName[p], u.Name)
			}
		}
	}
	out := make([]sshAccount, 0, len(byName))
	for name, users := range byName {
		slices.Sort(users)
		out = append(out, sshAccount{name: name, users: users})
	}
	slices.SortFunc(out, func(a, b sshAccount) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// sshHostPatterns returns the known_hosts patterns of every node, in site
// order: its name, its mesh address and its endpoint's host, without
// repeats.
func sshHostPatterns(site *Site, sec *Secrets) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(n, p string) error {
		if err := sshca.ValidHostPattern(p); err != nil {
			return fmt.Errorf("known_hosts: node %q: %w", n, err)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
		return nil
	}
	for _, n := range site.Nodes {
		if err := add(n.Name, n.Name); err != nil {
			return nil, err
		}
		if a, ok := sec.Addresses[n.Name]; ok && a.IsValid() {
			if err := add(n.Name, a.String()); err != nil {
				return nil, err
			}
		} else if n.Address != "" {
			a, err := netip.ParseAddr(n.Address)
			if err != nil {
				return nil, fmt.Errorf("known_hosts: node %q: address %q: %w", n.Name, n.Address, err)
			}
			if err := add(n.Name, a.String()); err != nil {
				return nil, err
			}
		}
		if n.Endpoint != "" {
			host, _, err := net.SplitHostPort(n.Endpoint)
			if err != nil {
				return nil, fmt.Errorf("known_hosts: node %q: endpoint %q: %w", n.Name, n.Endpoint, err)
			}
			if err := add(n.Name, host); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// sshForwarding returns, per local account sorted by name, the forwarding
// the site grants to users who may log in as it. sshd can match only the
// account, not the person: the certificate extensions of users not granted
// forwarding keep them from using what the account allows.
func sshForwarding(site *Site) ([]sshForward, error) {
	byAccount := map[string]*sshForward{}
	for i, u := range site.SSH.Users {
		if len(u.Forwarding) == 0 {
			continue
		}
		// Both names go into the drop-in: check them here too, the site
		// may not have been validated.
		if err := ValidUserName(u.Name); err != nil {
			return nil, fmt.Errorf("ssh.users[%d].name: %w", i, err)
		}
		for j, p := range u.Principals {
			if err := sshca.ValidPrincipal(p); err != nil {
				return nil, fmt.Errorf("ssh.users[%d].principals[%d]: %w", i, j, err)
			}
			f := byAccount[p]
			if f == nil {
				f = &sshForward{Account: p}
				byAccount[p] = f
			}
			if f.Users != "" {
				f.Users += ", "
			}
			f.Users += u.Name
			for k, kind := range u.Forwarding {
				switch kind {
				case sshca.ForwardAgent:
					f.Agent = true
				case sshca.ForwardPort:
					f.Port = true
				default:
					return nil, fmt.Errorf("ssh.users[%d].forwarding[%d]: %w", i, k, sshca.ValidForwarding(kind))
				}
			}
		}
	}
	out := make([]sshForward, 0, len(byAccount))
	for _, f := range byAccount {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b sshForward) int { return strings.Compare(a.Account, b.Account) })
	return out, nil
}

// sshLine returns a copy of b ending in exactly one newline.
func sshLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\r\n")
	return append(slices.Clip(b), '\n')
}
