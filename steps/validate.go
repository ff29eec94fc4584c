package steps

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
)

// SSHPort is the port sshd listens on; it is reserved on every node.
const SSHPort = 22

// The patterns are compiled on first use, not at every process start.
var (
	countryRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Z]{2}$`) })
	rateRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([0-9]+)/(second|minute|hour|day)$`) })
)

// isLabel reports whether s is 1 to 63 letters, digits and hyphens that
// starts and ends with a letter or digit; upper allows upper-case letters.
// (As a regular expression, ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$, it cost
// every process 0.3 ms to compile.)
func isLabel(s string, upper bool) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		case upper && 'A' <= c && c <= 'Z':
		default:
			return false
		}
	}
	return true
}

// ValidName checks a name of a site, node, service, database or client:
// lower-case letters, digits and inner hyphens, at most 63 characters, so it
// is safe in file names, certificate names and unit names.
func ValidName(s string) error {
	if s == "" {
		return errors.New("missing name")
	}
	if !isLabel(s, false) {
		return fmt.Errorf("%q is not a valid name (lower-case letters, digits and inner hyphens, at most 63)", s)
	}
	return nil
}

// ValidPrincipal checks an SSH principal: a local account name.
func ValidPrincipal(s string) error { return sshca.ValidPrincipal(s) }

// ValidUserName checks the name of an SSH user entry; it follows the rules
// of account names, since it goes into certificate key ids.
func ValidUserName(s string) error {
	if s == "" {
		return errors.New("missing name")
	}
	if sshca.ValidPrincipal(s) != nil {
		return fmt.Errorf("%q is not a valid user name (lower-case letter or _ first, then lower-case letters, digits, _ or -, at most 32)", s)
	}
	return nil
}

// ValidDNSName checks a fully qualified or single-label DNS host name.
func ValidDNSName(s string) error {
	if s == "" {
		return errors.New("missing DNS name")
	}
	name := strings.TrimSuffix(s, ".")
	if len(name) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", s)
	}
	for _, label := range strings.Split(name, ".") {
		if !isLabel(label, true) {
			return fmt.Errorf("%q is not a valid DNS name", s)
		}
	}
	return nil
}

// ValidPort checks a TCP or UDP port number.
func ValidPort(p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("port %d is out of range 1-65535", p)
	}
	return nil
}

// ValidPrefix parses a network in CIDR form and insists it has no host bits.
func ValidPrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network in CIDR form (e.g. 10.100.0.0/24)", s)
	}
	if p.Addr().Is4In6() {
		if p.Bits() >= 96 {
			v4 := netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4 network written as IPv6, which IPv4 packets never match (write %q)", s, v4.String())
		}
		return netip.Prefix{}, fmt.Errorf("%q mixes IPv4-mapped and IPv6 addresses (write IPv4 networks in IPv4 form)", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q has an IPv6 zone, which a network may not", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %q?)", s, p.Masked().String())
	}
	return p, nil
}

// ValidEndpoint checks a WireGuard endpoint: host:port, the host an IP
// address (IPv6 in brackets, without a zone: the zone names an interface of
// the node itself, which its peers do not have) or a DNS name, the port
// digits only.
func ValidEndpoint(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if err := validPortText(port); err != nil {
		return fmt.Errorf("%q has a bad port (1-65535)", s)
	}
	bracketed := strings.HasPrefix(s, "[")
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is4() && bracketed {
			return fmt.Errorf("%q: an IPv4 address is written without brackets", s)
		}
		if !a.Is4() && !bracketed {
			return fmt.Errorf("%q: an IPv6 address goes in brackets ([addr]:port)", s)
		}
		if a.Zone() != "" {
			return fmt.Errorf("%q: an endpoint may not have an IPv6 zone (%%...): other nodes reach it by an address without one", s)
		}
		return nil
	}
	if strings.Contains(host, "%") {
		return fmt.Errorf("%q: host %q is not an IP address with a zone", s, host)
	}
	if bracketed {
		return fmt.Errorf("%q: only an IPv6 address goes in brackets", s)
	}
	if validHostName(host) != nil {
		return fmt.Errorf("%q: host %q is neither an IP address nor a DNS name", s, host)
	}
	return nil
}

// numberRE is a last label that resolvers read as a number (inet_aton
// takes "10.1" and "0x7f000001"), so it is no host name.
var numberRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([0-9]+|0[xX][0-9a-fA-F]*)$`) })

// validHostName checks a DNS name that is resolved (an endpoint's or an
// upstream's host): a DNS name whose last label is not a number.
func validHostName(s string) error {
	if err := ValidDNSName(s); err != nil {
		return err
	}
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	if numberRE().MatchString(labels[len(labels)-1]) {
		return fmt.Errorf("%q is neither an IP address nor a DNS name", s)
	}
	return nil
}

// validPortText checks a port written as text: digits only, no sign or
// leading zero, 1-65535.
func validPortText(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s {
		return fmt.Errorf("%q is not a port number", s)
	}
	return ValidPort(n)
}

// MaxRate bounds firewall.icmp_rate's count, well inside what nft and the
// kernel take.
const MaxRate = math.MaxUint32

// ValidRate checks a rate limit such as "10/second".
func ValidRate(s string) error {
	m := rateRE().FindStringSubmatch(s)
	if m == nil {
		return fmt.Errorf("%q is not a rate (e.g. 10/second, 600/minute)", s)
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	switch {
	case err != nil || n > MaxRate:
		return fmt.Errorf("%q is too large (at most %d per %s)", s, uint64(MaxRate), m[2])
	case n < 1:
		return fmt.Errorf("%q must allow at least 1", s)
	}
	return nil
}

// ValidUpstream checks a service's upstream URL: http or https with a host
// (an IP address or a DNS name) and an optional port and path; no user
// info, query or fragment, and none of the characters that could end an
// nginx directive or string (";", "{", "}", quotes, back-slash, white space).
func ValidUpstream(s string) error {
	if i := strings.IndexFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(";{}\"'\\`$<>|^", r)
	}); i >= 0 {
		return fmt.Errorf("%q contains %q, which an upstream URL may not", s, s[i:i+1])
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL with a host", s)
	}
	switch {
	case u.User != nil || strings.Contains(u.Host, "@"):
		return fmt.Errorf("%q has user info (user@ or user:password@), which an upstream URL may not", s)
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(s, "?"):
		return fmt.Errorf("%q has a query (?...), which an upstream URL may not", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("%q has a fragment (#...), which an upstream URL may not", s)
	case strings.HasSuffix(u.Host, ":"):
		return fmt.Errorf("%q has an empty port (leave out the ':' or give a port 1-65535)", s)
	}
	if u.Port() != "" {
		if validPortText(u.Port()) != nil {
			return fmt.Errorf("%q has a bad port (1-65535)", s)
		}
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" || strings.Contains(u.Host, "%") {
			return fmt.Errorf("%q: an upstream address may not have an IPv6 zone", s)
		}
		if a.Is4() && strings.HasPrefix(u.Host, "[") {
			return fmt.Errorf("%q: an IPv4 address is written without brackets", s)
		}
		return nil
	}
	if strings.HasPrefix(u.Host, "[") || validHostName(host) != nil {
		return fmt.Errorf("%q: host %q is neither an IP address nor a DNS name", s, host)
	}
	return nil
}

// ValidText checks free text that goes into certificates (a subject's
// organization or common name): printable, no control characters, at most
// 64 characters (the X.520 upper bound).
func ValidText(s string) error {
	if len(s) > 64 {
		return fmt.Errorf("%q is longer than 64 characters", s)
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%q contains a control character", s)
		}
	}
	return nil
}

// positive parses a duration that must be greater than zero.
func positive(d Duration) (time.Duration, error) {
	v, err := d.Parse()
	if err != nil {
		return 0, err
	}
	if v <= 0 {
		return 0, fmt.Errorf("%q must be positive", string(d))
	}
	return v, nil
}

// Validate reports every problem with the site at once, each with its field
// path and value. It does not change s: defaults are applied to a copy.
// The result is nil or Errors.
func (s *Site) Validate() error {
	site := s.Clone()
	site.SetDefaults()
	c := &errs{}
	c.checkLengths(reflect.ValueOf(site).Elem(), "")
	site.checkHeader(c)
	site.checkCA(c)
	site.checkSSH(c)
	site.checkMesh(c)
	site.checkServices(c)
	site.checkDatabases(c)
	site.checkClients(c)
	site.checkFirewall(c)
	site.checkPorts(c)
	site.checkNamespaces(c)
	return c.err()
}

func (s *Site) checkHeader(c *errs) {
	switch {
	case s.Version == 0:
		c.add("version", "missing (this ztwizard reads version %d)", Version)
	case s.Version != Version:
		c.add("version", "%d is not supported (this ztwizard reads version %d)", s.Version, Version)
	}
	if err := ValidName(s.Site); err != nil {
		c.add("site", "%v", err)
	}
}

func (s *Site) checkCA(c *errs) {
	if strings.TrimSpace(s.CA.Subject.CommonName) == "" {
		c.add("ca.subject.common_name", "missing")
	} else if err := ValidText(s.CA.Subject.CommonName); err != nil {
		c.add("ca.subject.common_name", "%v", err)
	}
	if err := ValidText(s.CA.Subject.Organization); err != nil {
		c.add("ca.subject.organization", "%v", err)
	}
	if s.CA.Subject.Country != "" && !countryRE().MatchString(s.CA.Subject.Country) {
		c.add("ca.subject.country", "%q is not a two-letter country code (e.g. \"NO\")", s.CA.Subject.Country)
	}
	if _, err := pki.ParseKeyType(s.CA.Key); err != nil {
		var names []string
		for _, k := range pki.KeyTypes() {
			names = append(names, string(k))
		}
		c.add("ca.key", "unknown key type %q (one of %s)%s", s.CA.Key, strings.Join(names, ", "), Suggest(s.CA.Key, names))
	}
	if s.CA.Host != "" {
		if _, ok := s.Node(s.CA.Host); !ok {
			c.add("ca.host", "unknown node %q%s", s.CA.Host, Suggest(s.CA.Host, s.nodeNames()))
		}
	}
	caV, errCA := positive(s.CA.Validity)
	if errCA != nil {
		c.add("ca.validity", "%v", errCA)
	}
	floorCRL, floorLeaf, why := realFloorCRL, realFloorLeaf, "; minutes only with "+testTimescaleField+", for tests"
	if s.CA.TestTimescale {
		floorCRL, floorLeaf, why = testFloorValidity, testFloorValidity, ""
	}
	if v, err := positive(s.CA.CertValidity); err != nil {
		c.add("ca.cert_validity", "%v", err)
	} else if v < floorLeaf {
		c.add("ca.cert_validity", "%q is too short to renew before it lapses (at least %s%s)", string(s.CA.CertValidity), fmtFloor(floorLeaf), why)
	} else if errCA == nil && v > caV {
		c.add("ca.cert_validity", "%q is longer than the CA's own validity %q", string(s.CA.CertValidity), string(s.CA.Validity))
	}
	if v, err := positive(s.CA.CRLValidity); err != nil {
		c.add("ca.crl_validity", "%v", err)
	} else if v < floorCRL {
		c.add("ca.crl_validity", "%q is too short to refresh before it lapses (at least %s%s)", string(s.CA.CRLValidity), fmtFloor(floorCRL), why)
	} else if errCA == nil && v > caV {
		c.add("ca.crl_validity", "%q is longer than the CA's own validity %q", string(s.CA.CRLValidity), string(s.CA.Validity))
	}
}

// fmtFloor writes a validity floor as the site file would: 2h, 1m.
func fmtFloor(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dm", int(d/time.Minute))
}

func (s *Site) checkSSH(c *errs) {
	if _, err := positive(s.SSH.CertValidity); err != nil {
		c.add("ssh.cert_validity", "%v", err)
	}
	seenCIDR := map[netip.Prefix]int{}
	for i, cidr := range s.SSH.AdminCIDRs {
		path := fmt.Sprintf("ssh.admin_cidrs[%d]", i)
		p, err := ValidPrefix(cidr)
		if err != nil {
			c.add(path, "%v", err)
			continue
		}
		if j, dup := seenCIDR[p]; dup {
			c.add(path, "%q repeats ssh.admin_cidrs[%d]", cidr, j)
		}
		seenCIDR[p] = i
	}
	s.checkMeshSSH(c)
	seen := map[string]int{}
	for i, u := range s.SSH.Users {
		path := fmt.Sprintf("ssh.users[%d]", i)
		if err := ValidUserName(u.Name); err != nil {
			c.add(path+".name", "%v", err)
		} else if j, dup := seen[u.Name]; dup {
			c.add(path+".name", "%q repeats ssh.users[%d]", u.Name, j)
		} else {
			seen[u.Name] = i
		}
		if len(u.Principals) == 0 {
			c.add(path+".principals", "empty: name at least one account this user may log in as")
		}
		seenP := map[string]bool{}
		for j, p := range u.Principals {
			pp := fmt.Sprintf("%s.principals[%d]", path, j)
			if err := ValidPrincipal(p); err != nil {
				c.add(pp, "%v", err)
			} else if seenP[p] {
				c.add(pp, "%q is listed twice", p)
			}
			seenP[p] = true
		}
		seenF := map[string]bool{}
		for j, f := range u.Forwarding {
			fp := fmt.Sprintf("%s.forwarding[%d]", path, j)
			if err := sshca.ValidForwarding(f); err != nil {
				c.add(fp, "%v", err)
			} else if seenF[f] {
				c.add(fp, "%q is listed twice", f)
			}
			seenF[f] = true
		}
	}
}

// checkMeshSSH checks ssh.mesh_access and ssh.admin_nodes.
func (s *Site) checkMeshSSH(c *errs) {
	switch s.SSH.MeshAccess {
	case "", MeshSSHAdminNodes:
	case MeshSSHAll:
		if len(s.SSH.AdminNodes) > 0 {
			c.add("ssh.admin_nodes", "%q: with ssh.mesh_access %q every node may reach SSH over the mesh; list admin nodes only with %q",
				s.SSH.AdminNodes, MeshSSHAll, MeshSSHAdminNodes)
		}
	default:
		c.add("ssh.mesh_access", "%q is not %q or %q", s.SSH.MeshAccess, MeshSSHAdminNodes, MeshSSHAll)
	}
	seen := map[string]int{}
	for i, n := range s.SSH.AdminNodes {
		path := fmt.Sprintf("ssh.admin_nodes[%d]", i)
		if _, ok := s.Node(n); !ok {
			c.add(path, "%q is not a node of the site", n)
		} else if j, dup := seen[n]; dup {
			c.add(path, "%q repeats ssh.admin_nodes[%d]", n, j)
		}
		seen[n] = i
	}
}

func (s *Site) checkMesh(c *errs) {
	network, netErr := ValidPrefix(s.WireGuard.Network)
	switch {
	case s.WireGuard.Network == "":
		c.add("wireguard.network", "missing (e.g. 10.100.0.0/24)")
	case netErr != nil:
		c.add("wireguard.network", "%v", netErr)
	case network.Bits() > network.Addr().BitLen()-2:
		c.add("wireguard.network", "%q is too small for a mesh", s.WireGuard.Network)
		netErr = errors.New("too small")
	}
	if err := ValidPort(s.WireGuard.ListenPort); err != nil {
		c.add("wireguard.listen_port", "%v", err)
	}
	if len(s.Nodes) == 0 {
		c.add("nodes", "empty: a site needs at least one node")
	}
	names := s.nodeNames()
	seen := map[string]int{}
	addrs := map[netip.Addr]int{}
	addrBad := false
	byName := make(map[string]*Node, len(s.Nodes))
	for i := range s.Nodes {
		if _, dup := byName[s.Nodes[i].Name]; !dup {
			byName[s.Nodes[i].Name] = &s.Nodes[i]
		}
	}
	for i, n := range s.Nodes {
		path := fmt.Sprintf("nodes[%d]", i)
		if err := ValidName(n.Name); err != nil {
			c.add(path+".name", "%v", err)
		} else if j, dup := seen[n.Name]; dup {
			c.add(path+".name", "%q repeats nodes[%d]", n.Name, j)
		} else {
			seen[n.Name] = i
		}
		if n.Endpoint != "" {
			if err := ValidEndpoint(n.Endpoint); err != nil {
				c.add(path+".endpoint", "%v", err)
			}
		}
		if n.Address != "" {
			a, err := netip.ParseAddr(n.Address)
			switch {
			case err != nil:
				c.add(path+".address", "%q is not an IP address", n.Address)
				addrBad = true
			case netErr == nil && !network.Contains(a):
				c.add(path+".address", "%s is outside wireguard.network %s", n.Address, network)
				addrBad = true
			case netErr == nil && !usable(network, a):
				c.add(path+".address", "%s is the network's own or broadcast address", n.Address)
				addrBad = true
			default:
				if j, dup := addrs[a]; dup {
					c.add(path+".address", "%s is already nodes[%d]'s address", n.Address, j)
				}
				addrs[a] = i
			}
		}
		if n.Keepalive < 0 || n.Keepalive > 65535 {
			c.add(path+".keepalive", "%d is out of range 0-65535 seconds", n.Keepalive)
		}
		seenPeer := map[string]bool{}
		for j, p := range n.Peers {
			other, ok := byName[p]
			pp := path + ".peers[" + strconv.Itoa(j) + "]"
			switch {
			case !ok:
				c.add(pp, "unknown node %q%s", p, Suggest(p, names))
			case p == n.Name:
				c.add(pp, "%q is the node itself", p)
			case seenPeer[p]:
				c.add(pp, "%q is listed twice", p)
			case n.Endpoint == "" && other.Endpoint == "":
				c.add(pp, "neither %q nor %q has an endpoint, so they can never reach each other", n.Name, p)
			}
			seenPeer[p] = true
		}
	}
	if netErr == nil && !addrBad && len(s.Nodes) > 0 {
		if _, err := s.Addresses(nil); err != nil {
			c.add("wireguard.network", "%v", err)
		}
	}
}

func (s *Site) checkServices(c *errs) {
	nodes := s.nodeNames()
	clients := s.clientNames()
	seen := map[string]int{}
	type vhost struct {
		node, name string
		port       int
	}
	vhosts := map[vhost]int{}
	for i, sv := range s.Services {
		path := fmt.Sprintf("services[%d]", i)
		if err := ValidName(sv.Name); err != nil {
			c.add(path+".name", "%v", err)
		} else if j, dup := seen[sv.Name]; dup {
			c.add(path+".name", "%q repeats services[%d]", sv.Name, j)
		} else {
			seen[sv.Name] = i
		}
		if _, ok := s.Node(sv.Node); !ok {
			c.add(path+".node", "unknown node %q%s", sv.Node, Suggest(sv.Node, nodes))
		}
		if err := ValidDNSName(sv.ServerName); err != nil {
			c.add(path+".server_name", "%v", err)
		}
		if err := ValidPort(sv.Listen); err != nil {
			c.add(path+".listen", "%v", err)
		}
		if err := ValidUpstream(sv.Upstream); err != nil {
			c.add(path+".upstream", "%v", err)
		}
		if ValidPort(sv.Listen) == nil && !slices.Contains(s.Firewall.PublicTCP, sv.Listen) {
			what := "the service"
			if sv.Name != "" {
				what = strconv.Quote(sv.Name)
			}
			c.add(path+".listen", "port %d is not in firewall.public_tcp, so no client could reach %s (add it there)", sv.Listen, what)
		}
		k := vhost{sv.Node, strings.ToLower(sv.ServerName), sv.Listen}
		if j, dup := vhosts[k]; dup {
			c.add(path+".server_name", "%q on port %d is already services[%d] on node %q", sv.ServerName, sv.Listen, j, sv.Node)
		}
		vhosts[k] = i
		if len(sv.Allow) == 0 {
			c.add(path+".allow", "empty: name the client identities that may use %q", sv.Name)
		}
		seenA := map[string]bool{}
		for j, a := range sv.Allow {
			ap := fmt.Sprintf("%s.allow[%d]", path, j)
			if _, ok := s.Client(a); !ok {
				c.add(ap, "unknown client %q%s", a, Suggest(a, clients))
			} else if seenA[a] {
				c.add(ap, "%q is listed twice", a)
			}
			seenA[a] = true
		}
	}
}

func (s *Site) checkDatabases(c *errs) {
	nodes := s.nodeNames()
	index, links := s.nodeIndex(), s.links()
	seen := map[string]int{}
	servers := map[[2]string]int{}
	for i, db := range s.Databases {
		path := fmt.Sprintf("databases[%d]", i)
		if err := ValidName(db.Name); err != nil {
			c.add(path+".name", "%v", err)
		} else if j, dup := seen[db.Name]; dup {
			c.add(path+".name", "%q repeats databases[%d]", db.Name, j)
		} else {
			seen[db.Name] = i
		}
		nodeOK := index[db.Node] != nil
		if !nodeOK {
			c.add(path+".node", "unknown node %q%s", db.Node, Suggest(db.Node, nodes))
		}
		if db.Engine != EngineMariaDB && db.Engine != EnginePostgreSQL {
			c.add(path+".engine", "unknown engine %q (one of %s, %s)%s", db.Engine, EngineMariaDB, EnginePostgreSQL,
				Suggest(db.Engine, []string{EngineMariaDB, EnginePostgreSQL}))
		}
		if err := ValidPort(db.Port); err != nil {
			c.add(path+".port", "%v", err)
		}
		if j, dup := servers[[2]string{db.Node, db.Engine}]; dup && nodeOK {
			c.add(path+".node", "node %q already has a %s server (databases[%d]); one server per engine per node", db.Node, db.Engine, j)
		} else {
			servers[[2]string{db.Node, db.Engine}] = i
		}
		if len(db.Clients) == 0 {
			c.add(path+".clients", "empty: name the nodes that may connect to %q", db.Name)
		}
		seenC := map[string]bool{}
		for j, cl := range db.Clients {
			cp := path + ".clients[" + strconv.Itoa(j) + "]"
			switch {
			case index[cl] == nil:
				c.add(cp, "unknown node %q%s", cl, Suggest(cl, nodes))
			case cl == db.Node:
				c.add(cp, "%q is the database's own node", cl)
			case seenC[cl]:
				c.add(cp, "%q is listed twice", cl)
			case nodeOK && !links.has(db.Node, cl):
				c.add(cp, "node %q is not a WireGuard peer of %q, so it cannot reach the database (add it to peers)", cl, db.Node)
			}
			seenC[cl] = true
		}
	}
}

func (s *Site) checkClients(c *errs) {
	seen := map[string]int{}
	for i, cl := range s.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		if err := ValidName(cl.Name); err != nil {
			c.add(path+".name", "%v", err)
		} else if j, dup := seen[cl.Name]; dup {
			c.add(path+".name", "%q repeats clients[%d]", cl.Name, j)
		} else {
			seen[cl.Name] = i
		}
		if err := ValidText(cl.Organization); err != nil {
			c.add(path+".organization", "%v", err)
		}
	}
}

func (s *Site) checkFirewall(c *errs) {
	seen := map[int]int{}
	for i, p := range s.Firewall.PublicTCP {
		path := fmt.Sprintf("firewall.public_tcp[%d]", i)
		if err := ValidPort(p); err != nil {
			c.add(path, "%v", err)
			continue
		}
		if j, dup := seen[p]; dup {
			c.add(path, "port %d repeats firewall.public_tcp[%d]", p, j)
		}
		seen[p] = i
		if p == SSHPort {
			c.add(path, "port 22 would open SSH to everyone; list the admin networks in ssh.admin_cidrs instead")
		}
		for _, db := range s.Databases {
			if db.Port == p {
				c.add(path, "port %d is database %q's port; databases are reachable only over the mesh", p, db.Name)
			}
		}
	}
	if err := ValidRate(s.Firewall.ICMPRate); err != nil {
		c.add("firewall.icmp_rate", "%v", err)
	}
}

// checkPorts finds two listeners on one TCP port of one node. Services may
// share a port (nginx tells them apart by server name); nothing may take
// sshd's port or a database's.
func (s *Site) checkPorts(c *errs) {
	type key struct {
		node string
		port int
	}
	owner := map[key]string{}
	for _, n := range s.Nodes {
		owner[key{n.Name, SSHPort}] = "sshd"
	}
	for i, db := range s.Databases {
		k := key{db.Node, db.Port}
		if o, taken := owner[k]; taken {
			c.add(fmt.Sprintf("databases[%d].port", i), "port %d on node %q is already used by %s", db.Port, db.Node, o)
			continue
		}
		owner[k] = fmt.Sprintf("database %q", db.Name)
	}
	for i, sv := range s.Services {
		k := key{sv.Node, sv.Listen}
		if o, taken := owner[k]; taken && !strings.HasPrefix(o, "service") {
			c.add(fmt.Sprintf("services[%d].listen", i), "port %d on node %q is already used by %s", sv.Listen, sv.Node, o)
			continue
		}
		owner[k] = fmt.Sprintf("service %q", sv.Name)
	}
}

// checkNamespaces finds one name used by two kinds of thing that the
// authority tells apart by name alone: `ca issue` and `ca revoke` take a
// client or a service name (a client named like a service would have its
// client certificate installed as nginx's server certificate), and `ssh
// revoke` takes an SSH user or a node name (revoking one would revoke the
// other). Databases and nodes have no X.509 certificates of their own, so
// they may share a name with a client or service.
func (s *Site) checkNamespaces(c *errs) {
	services := map[string]int{}
	for i, sv := range s.Services {
		if _, dup := services[sv.Name]; !dup && sv.Name != "" {
			services[sv.Name] = i
		}
	}
	for i, cl := range s.Clients {
		if j, dup := services[cl.Name]; dup {
			c.add(fmt.Sprintf("clients[%d].name", i), "%q is also services[%d]'s name; clients and services share the CA's certificate names, so each must differ", cl.Name, j)
		}
	}
	nodes := map[string]int{}
	for i, n := range s.Nodes {
		if _, dup := nodes[n.Name]; !dup && n.Name != "" {
			nodes[n.Name] = i
		}
	}
	for i, u := range s.SSH.Users {
		if j, dup := nodes[u.Name]; dup {
			c.add(fmt.Sprintf("ssh.users[%d].name", i), "%q is also nodes[%d]'s name; SSH users and nodes share the SSH CA's certificate names, so each must differ", u.Name, j)
		}
	}
}

// Linked tells whether nodes a and b are WireGuard peers: either names the
// other in its peers list.
func (s *Site) Linked(a, b string) bool {
	na, okA := s.Node(a)
	nb, okB := s.Node(b)
	if !okA || !okB || a == b {
		return false
	}
	return slices.Contains(na.Peers, b) || slices.Contains(nb.Peers, a)
}

func (s *Site) nodeNames() []string {
	out := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		out[i] = n.Name
	}
	return out
}

func (s *Site) clientNames() []string {
	out := make([]string, len(s.Clients))
	for i, c := range s.Clients {
		out[i] = c.Name
	}
	return out
}

// Clone returns a deep copy of the site.
func (s *Site) Clone() *Site {
	c := *s
	c.SSH.AdminCIDRs = slices.Clone(s.SSH.AdminCIDRs)
	c.SSH.AdminNodes = slices.Clone(s.SSH.AdminNodes)
	c.SSH.Users = slices.Clone(s.SSH.Users)
	for i := range c.SSH.Users {
		c.SSH.Users[i].Principals = slices.Clone(c.SSH.Users[i].Principals)
		c.SSH.Users[i].Forwarding = slices.Clone(c.SSH.Users[i].Forwarding)
	}
	c.Nodes = slices.Clone(s.Nodes)
	for i := range c.Nodes {
		c.Nodes[i].Peers = slices.Clone(c.Nodes[i].Peers)
	}
	c.Services = slices.Clone(s.Services)
	for i := range c.Services {
		c.Services[i].Allow = slices.Clone(c.Services[i].Allow)
	}
	c.Databases = slices.Clone(s.Databases)
	for i := range c.Databases {
		c.Databases[i].Clients = slices.Clone(c.Databases[i].Clients)
	}
	c.Clients = slices.Clone(s.Clients)
	c.Firewall.PublicTCP = slices.Clone(s.Firewall.PublicTCP)
	return &c
}
