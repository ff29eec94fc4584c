package steps

import (
	"bytes"
	"cmp"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"time"

	"ztwizard/steps/pki"
)

// BuildPlan builds a node's plan from a validated site, the secrets from the
// state store and the clock. It is pure: the same inputs give a
// byte-identical plan. It refuses secrets that would break the node: a
// server certificate or CRL already expired at now.
func BuildPlan(site *Site, node string, sec *Secrets, now time.Time) (*Plan, error) {
	b, err := NewBuilder(site)
	if err != nil {
		return nil, err
	}
	return b.Plan(node, sec, now)
}

// Builder builds the plans of one site's nodes, doing the work they share
// (the site file every node carries) once.
type Builder struct {
	site     *Site
	siteYAML []byte
}

// NewBuilder prepares plans for a validated site.
func NewBuilder(site *Site) (*Builder, error) {
	y, err := site.Marshal()
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return &Builder{site: site, siteYAML: y}, nil
}

// NewBuilderYAML is NewBuilder given the site's canonical form, what
// site.Marshal returns, which the caller vouches for (a cache whose key is
// the site's source and this program: see authority.SiteYAML).
func NewBuilderYAML(site *Site, canonical []byte) *Builder {
	return &Builder{site: site, siteYAML: canonical}
}

// Plan builds one node's plan; see BuildPlan.
func (b *Builder) Plan(node string, sec *Secrets, now time.Time) (*Plan, error) {
	site := b.site
	if _, ok := site.Node(node); !ok {
		return nil, fmt.Errorf("plan: unknown node %q%s", node, Suggest(node, site.nodeNames()))
	}
	if err := checkSecrets(site, node, sec, now); err != nil {
		return nil, fmt.Errorf("plan: node %q: %w", node, err)
	}
	p := &Plan{Site: site.Site, Node: node}
	p.Files = append(p.Files, File{Path: SiteFilePath, Mode: 0o644, Content: b.siteYAML})
	// The node's name: what it is, for the commands run on it later
	// (selfcheck, status) and whoever logs in.
	p.Files = append(p.Files, File{Path: NodeFilePath, Mode: 0o644, Content: []byte(node + "\n")})

	nginx, err := NginxFiles(site, node, sec)
	if err != nil {
		return nil, fmt.Errorf("plan: node %q: %w", node, err)
	}
	if site.CA.Host != "" && len(nginx) == 0 {
		// Every node of a site with ca.host pulls the CRL and the KRL and
		// checks them against the CA certificate (its pull unit needs it):
		// a node without an mTLS service gets both too, or sshd's KRL
		// would never be refreshed there.
		nginx = []File{
			{Path: CACertPath, Mode: 0o644, Content: bytes.Clone(sec.CACert)},
			{Path: CRLPath, Mode: 0o644, Content: bytes.Clone(sec.CRL)},
		}
	}
	sshFiles, err := SSHFiles(site, node, sec)
	if err != nil {
		return nil, fmt.Errorf("plan: node %q: %w", node, err)
	}
	iface, wgFiles, err := WireGuardFor(site, node, sec)
	if err != nil {
		return nil, fmt.Errorf("plan: node %q: %w", node, err)
	}
	dbFiles, err := DatabaseFiles(site, node, sec.Addresses)
	if err != nil {
		return nil, fmt.Errorf("plan: node %q: %w", node, err)
	}
	unitFiles, units, err := UnitFiles(site, node)
	if err != nil {
		return nil, fmt.Errorf("plan: node %q: %w", node, err)
	}
	distFiles, distUnits, err := DistributionFiles(site, node, sec.Addresses)
	if err != nil {
		return nil, fmt.Errorf("plan: node %q: %w", node, err)
	}
	for _, u := range distUnits {
		if !slices.ContainsFunc(units, func(x Unit) bool { return x.Name == u.Name }) {
			units = append(units, u)
		}
	}
	unitFiles = append(unitFiles, distFiles...)
	fw, err := FirewallFor(site, node, sec.Addresses, iface.Name)
	if err != nil {
		return nil, fmt.Errorf("plan: node %q: %w", node, err)
	}
	p.Firewall = fw
	p.WireGuard = iface
	p.Units = units
	p.Files = append(p.Files, File{Path: NftablesPath, Mode: 0o644, Content: []byte(fw.Script())})
	for _, fs := range [][]File{nginx, sshFiles, wgFiles, dbFiles, unitFiles} {
		p.Files = append(p.Files, fs...)
	}
	slices.SortFunc(p.Files, func(a, b File) int { return cmp.Compare(a.Path, b.Path) })
	for i := 1; i < len(p.Files); i++ {
		if p.Files[i].Path == p.Files[i-1].Path {
			return nil, fmt.Errorf("plan: node %q: two files at %s", node, p.Files[i].Path)
		}
	}
	return p, nil
}

// checkSecrets refuses a plan that would install something already dead:
// nginx refuses every client once the CRL is past nextUpdate, and an
// expired CA or server certificate fails every handshake.
func checkSecrets(site *Site, node string, sec *Secrets, now time.Time) error {
	if sec == nil {
		return fmt.Errorf("no secrets")
	}
	for _, n := range site.Nodes {
		if _, ok := sec.Addresses[n.Name]; !ok {
			return fmt.Errorf("no mesh address for node %q", n.Name)
		}
	}
	hasServices := false
	for _, s := range site.Services {
		if s.Node != node {
			continue
		}
		hasServices = true
		kp, ok := sec.Servers[s.Name]
		if !ok {
			continue // NginxFiles names the missing certificate
		}
		cert, err := pki.DecodeCertPEM(kp.Cert)
		if err != nil {
			return fmt.Errorf("service %q: %w", s.Name, err)
		}
		if !now.Before(cert.NotAfter) {
			return fmt.Errorf("service %q: its certificate expired at %s; issue a new one with `ztwizard ca issue --name %s`", s.Name, cert.NotAfter.Format(time.RFC3339), s.Name)
		}
	}
	if !hasServices {
		return nil
	}
	ca, err := pki.DecodeCertPEM(sec.CACert)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	if !now.Before(ca.NotAfter) {
		return fmt.Errorf("the CA expired at %s", ca.NotAfter.Format(time.RFC3339))
	}
	block, _ := pem.Decode(sec.CRL)
	if block == nil {
		return fmt.Errorf("no CRL")
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return fmt.Errorf("CRL: %w", err)
	}
	if !now.Before(crl.NextUpdate) {
		return fmt.Errorf("the CRL lapsed at %s; sign a new one with `ztwizard ca crl`", crl.NextUpdate.Format(time.RFC3339))
	}
	return nil
}
