package steps

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Version is the site-file format this ztwizard reads and writes.
const Version = 1

// Site is the declarative description of a site: everything ztwizard needs
// to secure its nodes. It is what site.yaml holds and what the wizard fills.
// Scalars that need parsing (durations, addresses, networks) are kept as the
// text the admin wrote, so every error can quote it; Validate parses them.
type Site struct {
	Version   int        `yaml:"version"`
	Site      string     `yaml:"site"`
	CA        CA         `yaml:"ca"`
	SSH       SSH        `yaml:"ssh"`
	WireGuard WireGuard  `yaml:"wireguard"`
	Nodes     []Node     `yaml:"nodes"`
	Services  []Service  `yaml:"services,omitempty"`
	Databases []Database `yaml:"databases,omitempty"`
	Clients   []Client   `yaml:"clients,omitempty"`
	Firewall  Firewall   `yaml:"firewall"`
}

// CA describes the site's private X.509 certificate authority.
type CA struct {
	Subject      Subject  `yaml:"subject"`
	Key          string   `yaml:"key,omitempty"`
	Validity     Duration `yaml:"validity,omitempty"`
	CertValidity Duration `yaml:"cert_validity,omitempty"`
	CRLValidity  Duration `yaml:"crl_validity,omitempty"`
	// Host is the node that holds the CA: it publishes the CRL and KRL on
	// its mesh address and every node pulls them from there. Empty: no
	// distribution over the mesh (bundles carry them).
	Host string `yaml:"host,omitempty"`
	// TestTimescale, for tests only, allows validities of minutes and
	// scales the timers and renewal windows down with them (see Timing).
	TestTimescale bool `yaml:"test_timescale,omitempty"`
}

// Subject is the distinguished name of the CA.
type Subject struct {
	CommonName   string `yaml:"common_name"`
	Organization string `yaml:"organization,omitempty"`
	Country      string `yaml:"country,omitempty"`
}

// SSH describes SSH certificates and who may reach sshd: hosts in
// AdminCIDRs, and over the mesh the nodes in AdminNodes (MeshAccess
// MeshSSHAdminNodes, the default) or every node (MeshSSHAll).
type SSH struct {
	CertValidity Duration  `yaml:"cert_validity,omitempty"`
	AdminCIDRs   []string  `yaml:"admin_cidrs,omitempty,flow"`
	MeshAccess   string    `yaml:"mesh_access,omitempty"`
	AdminNodes   []string  `yaml:"admin_nodes,omitempty,flow"`
	Users        []SSHUser `yaml:"users,omitempty"`
}

// Values of ssh.mesh_access: who may reach sshd over the mesh.
const (
	MeshSSHAdminNodes = "admin_nodes" // only the nodes in ssh.admin_nodes (the default; "" means it too)
	MeshSSHAll        = "all"         // every node of the mesh
)

// SSHUser is a person allowed to log in, and the local accounts
// (principals) their certificates name. Forwarding is off unless the entry
// grants it: "agent" and "port" put the certificate extensions
// permit-agent-forwarding and permit-port-forwarding into the user's
// certificates and allow them in sshd for the user's accounts.
type SSHUser struct {
	Name       string   `yaml:"name"`
	Principals []string `yaml:"principals,flow"`
	Forwarding []string `yaml:"forwarding,omitempty,flow"`
}

// WireGuard describes the mesh network.
type WireGuard struct {
	Network    string `yaml:"network"`
	ListenPort int    `yaml:"listen_port,omitempty" site:"nonzero"`
}

// Node is one host of the mesh.
type Node struct {
	Name      string   `yaml:"name"`
	Endpoint  string   `yaml:"endpoint,omitempty"`
	Address   string   `yaml:"address,omitempty"`
	Peers     []string `yaml:"peers,omitempty,flow"`
	Keepalive int      `yaml:"keepalive,omitempty"`
}

// Service is an HTTP service reachable only with a client certificate,
// behind nginx on its node.
type Service struct {
	Name       string   `yaml:"name"`
	Node       string   `yaml:"node"`
	ServerName string   `yaml:"server_name"`
	Listen     int      `yaml:"listen,omitempty" site:"nonzero"`
	Upstream   string   `yaml:"upstream"`
	Allow      []string `yaml:"allow,omitempty,flow"`
	// HSTS adds Strict-Transport-Security (two years) to every answer.
	HSTS bool `yaml:"hsts,omitempty"`
}

// Database is a database server bound to its node's mesh address and
// reachable only from its client nodes.
type Database struct {
	Name    string   `yaml:"name"`
	Node    string   `yaml:"node"`
	Engine  string   `yaml:"engine"`
	Port    int      `yaml:"port,omitempty" site:"nonzero"`
	Clients []string `yaml:"clients,omitempty,flow"`
}

// Client is an mTLS client identity (a certificate with CN = Name).
type Client struct {
	Name         string `yaml:"name"`
	Organization string `yaml:"organization,omitempty"`
}

// Firewall holds the host firewall's site-wide settings.
type Firewall struct {
	PublicTCP []int  `yaml:"public_tcp,omitempty,flow"`
	ICMPRate  string `yaml:"icmp_rate,omitempty"`
}

// Database engines ztwizard knows how to bind to the mesh.
const (
	EngineMariaDB    = "mariadb"
	EnginePostgreSQL = "postgresql"
)

// Defaults used when the site leaves a field out.
const (
	DefaultCAKey           = "ecdsa-p256"
	DefaultCAValidity      = Duration("87600h")
	DefaultCertValidity    = Duration("2160h")
	DefaultCRLValidity     = Duration("168h")
	DefaultSSHCertValidity = Duration("4h")
	DefaultListenPort      = 51820
	DefaultHTTPSPort       = 443
	DefaultICMPRate        = "10/second"
)

// DefaultPort is the port an engine listens on when the site gives none.
func DefaultPort(engine string) int {
	switch engine {
	case EngineMariaDB:
		return 3306
	case EnginePostgreSQL:
		return 5432
	}
	return 0
}

// SetDefaults fills every field the admin may leave out. It never
// overwrites a value that is set, so it is safe to call more than once.
func (s *Site) SetDefaults() {
	s.normalize()
	if s.CA.Key == "" {
		s.CA.Key = DefaultCAKey
	}
	if s.CA.Subject.CommonName == "" && s.Site != "" {
		s.CA.Subject.CommonName = s.Site + " Root CA"
	}
	if s.CA.Validity == "" {
		s.CA.Validity = DefaultCAValidity
	}
	if s.CA.CertValidity == "" {
		s.CA.CertValidity = DefaultCertValidity
	}
	if s.CA.CRLValidity == "" {
		s.CA.CRLValidity = DefaultCRLValidity
	}
	if s.SSH.CertValidity == "" {
		s.SSH.CertValidity = DefaultSSHCertValidity
	}
	if s.WireGuard.ListenPort == 0 {
		s.WireGuard.ListenPort = DefaultListenPort
	}
	for i := range s.Services {
		if s.Services[i].Listen == 0 {
			s.Services[i].Listen = DefaultHTTPSPort
		}
	}
	for i := range s.Databases {
		if s.Databases[i].Port == 0 {
			s.Databases[i].Port = DefaultPort(s.Databases[i].Engine)
		}
	}
	for i := range s.Clients {
		if s.Clients[i].Organization == "" {
			s.Clients[i].Organization = s.CA.Subject.Organization
		}
	}
	if s.Firewall.ICMPRate == "" {
		s.Firewall.ICMPRate = DefaultICMPRate
	}
}

// Node returns the node with that name.
func (s *Site) Node(name string) (*Node, bool) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i], true
		}
	}
	return nil, false
}

// Client returns the client identity with that name.
func (s *Site) Client(name string) (*Client, bool) {
	for i := range s.Clients {
		if s.Clients[i].Name == name {
			return &s.Clients[i], true
		}
	}
	return nil, false
}

// Service returns the mTLS service with that name.
func (s *Site) Service(name string) (*Service, bool) {
	for i := range s.Services {
		if s.Services[i].Name == name {
			return &s.Services[i], true
		}
	}
	return nil, false
}

// User returns the SSH user with that name.
func (s *Site) User(name string) (*SSHUser, bool) {
	for i := range s.SSH.Users {
		if s.SSH.Users[i].Name == name {
			return &s.SSH.Users[i], true
		}
	}
	return nil, false
}

// Duration is a length of time as written in the site file: a Go duration
// ("4h", "2160h", "90m") or a whole number of days ("90d").
type Duration string

// MaxDays is the longest duration in days a site may give: more does not
// fit a time.Duration (about 292 years).
const MaxDays = int64(math.MaxInt64 / int64(24*time.Hour))

// goDurationRE is the shape time.ParseDuration accepts, to tell a number
// too large from text that is no duration.
var goDurationRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+$`)
})

// Parse returns the duration, or an error that quotes the text. A duration
// too long for a time.Duration is an error, never a wrapped-around value.
func (d Duration) Parse() (time.Duration, error) {
	s := strings.TrimSpace(string(d))
	if s == "" {
		return 0, fmt.Errorf("missing duration")
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%q is not a duration (use e.g. 90d, 2160h, 4h)", string(d))
		}
		if err != nil || n > MaxDays || n < -MaxDays {
			return 0, fmt.Errorf("%q is too long (at most %dd)", string(d), MaxDays)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		if goDurationRE().MatchString(s) {
			return 0, fmt.Errorf("%q is too long (at most %dd)", string(d), MaxDays)
		}
		return 0, fmt.Errorf("%q is not a duration (use e.g. 90d, 2160h, 4h)", string(d))
	}
	return v, nil
}

// D returns the parsed duration, or zero when it does not parse. Use it only
// on a validated site.
func (d Duration) D() time.Duration {
	v, _ := d.Parse()
	return v
}

// normalize makes every empty list nil, so a site reads back the same after
// a write (an empty list is not written).
func (s *Site) normalize() {
	s.SSH.AdminCIDRs = nilIfEmpty(s.SSH.AdminCIDRs)
	s.SSH.AdminNodes = nilIfEmpty(s.SSH.AdminNodes)
	s.SSH.Users = nilIfEmpty(s.SSH.Users)
	for i := range s.SSH.Users {
		s.SSH.Users[i].Principals = nilIfEmpty(s.SSH.Users[i].Principals)
		s.SSH.Users[i].Forwarding = nilIfEmpty(s.SSH.Users[i].Forwarding)
	}
	s.Nodes = nilIfEmpty(s.Nodes)
	for i := range s.Nodes {
		s.Nodes[i].Peers = nilIfEmpty(s.Nodes[i].Peers)
	}
	s.Services = nilIfEmpty(s.Services)
	for i := range s.Services {
		s.Services[i].Allow = nilIfEmpty(s.Services[i].Allow)
	}
	s.Databases = nilIfEmpty(s.Databases)
	for i := range s.Databases {
		s.Databases[i].Clients = nilIfEmpty(s.Databases[i].Clients)
	}
	s.Clients = nilIfEmpty(s.Clients)
	s.Firewall.PublicTCP = nilIfEmpty(s.Firewall.PublicTCP)
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
