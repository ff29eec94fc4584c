package steps

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files and the expected errors of testdata/bad")

func example(t testing.TB) *Site {
	t.Helper()
	s, err := Parse(ExampleYAML, "example.yaml")
	if err != nil {
		t.Fatalf("example site: %v", err)
	}
	return s
}

func messages(err error) []string {
	var list Errors
	if !errors.As(err, &list) {
		if err == nil {
			return nil
		}
		return []string{"not Errors: " + err.Error()}
	}
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = e.Path + ": " + e.Msg
	}
	return out
}

func TestExampleIsValid(t *testing.T) {
	s := example(t)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Site != "oslo-prod" || len(s.Nodes) != 2 || s.Nodes[1].Keepalive != 25 {
		t.Fatalf("example decoded wrongly: %+v", s)
	}
}

// TestValidateRules has one case per semantic rule: a change to the valid
// example site and the exact error it must produce.
func TestValidateRules(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Site)
		want   string
	}{
		{"version missing", func(s *Site) { s.Version = 0 }, `version: missing (this ztwizard reads version 1)`},
		{"version unsupported", func(s *Site) { s.Version = 2 }, `version: 2 is not supported (this ztwizard reads version 1)`},
		{"site name missing", func(s *Site) { s.Site = "" }, `site: missing name`},
		{"site name unsafe", func(s *Site) { s.Site = "../etc" }, `site: "../etc" is not a valid name (lower-case letters, digits and inner hyphens, at most 63)`},
		{"ca common name", func(s *Site) { s.Site = ""; s.CA.Subject.CommonName = "" }, `ca.subject.common_name: missing`},
		{"ca country", func(s *Site) { s.CA.Subject.Country = "Norway" }, `ca.subject.country: "Norway" is not a two-letter country code (e.g. "NO")`},
		{"ca key", func(s *Site) { s.CA.Key = "rsa-1024" }, `ca.key: unknown key type "rsa-1024" (one of ecdsa-p256, ecdsa-p384, ed25519, rsa-3072, rsa-4096)`},
		{"ca validity bad", func(s *Site) { s.CA.Validity = "ten years" }, `ca.validity: "ten years" is not a duration (use e.g. 90d, 2160h, 4h)`},
		{"ca validity negative", func(s *Site) { s.CA.Validity = "-1h" }, `ca.validity: "-1h" must be positive`},
		{"leaf past ca", func(s *Site) { s.CA.CertValidity = "87601h" }, `ca.cert_validity: "87601h" is longer than the CA's own validity "87600h"`},
		{"leaf zero", func(s *Site) { s.CA.CertValidity = "0s" }, `ca.cert_validity: "0s" must be positive`},
		{"crl too short", func(s *Site) { s.CA.CRLValidity = "30m" }, `ca.crl_validity: "30m" is too short to refresh before it lapses (at least 2h; minutes only with ca.test_timescale, for tests)`},
		{"crl past ca", func(s *Site) { s.CA.Validity = "24h"; s.CA.CertValidity = "24h"; s.CA.CRLValidity = "48h" }, `ca.crl_validity: "48h" is longer than the CA's own validity "24h"`},
		{"ssh validity", func(s *Site) { s.SSH.CertValidity = "4 hours" }, `ssh.cert_validity: "4 hours" is not a duration (use e.g. 90d, 2160h, 4h)`},
		{"admin cidr bad", func(s *Site) { s.SSH.AdminCIDRs = []string{"192.168.10.0/33"} }, `ssh.admin_cidrs[0]: "192.168.10.0/33" is not a network in CIDR form (e.g. 10.100.0.0/24)`},
		{"admin cidr host bits", func(s *Site) { s.SSH.AdminCIDRs = []string{"192.168.10.7/24"} }, `ssh.admin_cidrs[0]: "192.168.10.7/24" has host bits set (did you mean "192.168.10.0/24"?)`},
		{"admin cidr twice", func(s *Site) { s.SSH.AdminCIDRs = append(s.SSH.AdminCIDRs, "192.168.10.0/24") }, `ssh.admin_cidrs[1]: "192.168.10.0/24" repeats ssh.admin_cidrs[0]`},
		{"user name", func(s *Site) { s.SSH.Users[0].Name = "Alice" }, `ssh.users[0].name: "Alice" is not a valid user name (lower-case letter or _ first, then lower-case letters, digits, _ or -, at most 32)`},
		{"user twice", func(s *Site) { s.SSH.Users = append(s.SSH.Users, s.SSH.Users[0]) }, `ssh.users[1].name: "alice" repeats ssh.users[0]`},
		{"no principals", func(s *Site) { s.SSH.Users[0].Principals = nil }, `ssh.users[0].principals: empty: name at least one account this user may log in as`},
		{"principal comma", func(s *Site) { s.SSH.Users[0].Principals[1] = "devops,root" }, `ssh.users[0].principals[1]: principal "devops,root" contains a comma (ssh-keygen splits principals on commas)`},
		{"principal twice", func(s *Site) { s.SSH.Users[0].Principals[1] = "root" }, `ssh.users[0].principals[1]: "root" is listed twice`},
		{"network missing", func(s *Site) { s.WireGuard.Network = "" }, `wireguard.network: missing (e.g. 10.100.0.0/24)`},
		{"network bad", func(s *Site) { s.WireGuard.Network = "10.100.0.0" }, `wireguard.network: "10.100.0.0" is not a network in CIDR form (e.g. 10.100.0.0/24)`},
		{"network tiny", func(s *Site) { s.WireGuard.Network = "10.100.0.0/31"; s.Nodes[0].Address = ""; s.Nodes[1].Address = "" }, `wireguard.network: "10.100.0.0/31" is too small for a mesh`},
		{"network full", func(s *Site) {
			s.WireGuard.Network = "10.100.0.0/30"
			s.Nodes[0].Address = ""
			s.Nodes[1].Address = ""
			s.Nodes = append(s.Nodes, Node{Name: "third", Endpoint: "192.168.1.9:51820"})
		}, `wireguard.network: 10.100.0.0/30 has no free address left for node "third" (3 nodes)`},
		{"listen port", func(s *Site) { s.WireGuard.ListenPort = 70000 }, `wireguard.listen_port: port 70000 is out of range 1-65535`},
		{"no nodes", func(s *Site) { s.Nodes = nil; s.Services = nil; s.Databases = nil }, `nodes: empty: a site needs at least one node`},
		{"node name", func(s *Site) { s.Nodes[0].Name = "DB_1"; s.Databases = nil; s.Nodes[1].Peers = nil },
			`nodes[0].name: "DB_1" is not a valid name (lower-case letters, digits and inner hyphens, at most 63)`},
		{"node twice", func(s *Site) {
			s.Nodes[1].Name = "db"
			s.Nodes[1].Peers = nil
			s.Nodes[0].Peers = nil
			s.Services[0].Node = "db"
			s.Databases = nil
		},
			`nodes[1].name: "db" repeats nodes[0]`},
		{"endpoint no port", func(s *Site) { s.Nodes[0].Endpoint = "192.168.1.100" }, `nodes[0].endpoint: "192.168.1.100" is not host:port`},
		{"endpoint bad port", func(s *Site) { s.Nodes[0].Endpoint = "192.168.1.100:0" }, `nodes[0].endpoint: "192.168.1.100:0" has a bad port (1-65535)`},
		{"endpoint bad host", func(s *Site) { s.Nodes[0].Endpoint = "db_host!:51820" }, `nodes[0].endpoint: "db_host!:51820": host "db_host!" is neither an IP address nor a DNS name`},
		{"address bad", func(s *Site) { s.Nodes[0].Address = "10.100.0.300" }, `nodes[0].address: "10.100.0.300" is not an IP address`},
		{"address outside", func(s *Site) { s.Nodes[0].Address = "10.200.0.1" }, `nodes[0].address: 10.200.0.1 is outside wireguard.network 10.100.0.0/24`},
		{"address network", func(s *Site) { s.Nodes[0].Address = "10.100.0.0" }, `nodes[0].address: 10.100.0.0 is the network's own or broadcast address`},
		{"address broadcast", func(s *Site) { s.Nodes[0].Address = "10.100.0.255" }, `nodes[0].address: 10.100.0.255 is the network's own or broadcast address`},
		{"address twice", func(s *Site) { s.Nodes[1].Address = "10.100.0.1" }, `nodes[1].address: 10.100.0.1 is already nodes[0]'s address`},
		{"keepalive", func(s *Site) { s.Nodes[1].Keepalive = -5 }, `nodes[1].keepalive: -5 is out of range 0-65535 seconds`},
		{"peer unknown", func(s *Site) { s.Nodes[1].Peers = []string{"bd"} }, `nodes[1].peers[0]: unknown node "bd" (did you mean "db"?)`},
		{"peer self", func(s *Site) { s.Nodes[0].Peers = []string{"web", "db"} }, `nodes[0].peers[1]: "db" is the node itself`},
		{"peer twice", func(s *Site) { s.Nodes[0].Peers = []string{"web", "web"} }, `nodes[0].peers[1]: "web" is listed twice`},
		{"peers unreachable", func(s *Site) { s.Nodes[0].Endpoint = ""; s.Nodes[1].Endpoint = ""; s.Nodes[1].Peers = nil },
			`nodes[0].peers[0]: neither "db" nor "web" has an endpoint, so they can never reach each other`},
		{"service name", func(s *Site) { s.Services[0].Name = "API" }, `services[0].name: "API" is not a valid name (lower-case letters, digits and inner hyphens, at most 63)`},
		{"service twice", func(s *Site) {
			sv := s.Services[0]
			sv.ServerName = "other.example.com"
			s.Services = append(s.Services, sv)
		}, `services[1].name: "api" repeats services[0]`},
		{"service node", func(s *Site) { s.Services[0].Node = "webb" }, `services[0].node: unknown node "webb" (did you mean "web"?)`},
		{"server name", func(s *Site) { s.Services[0].ServerName = "api_internal.example.com" }, `services[0].server_name: "api_internal.example.com" is not a valid DNS name`},
		{"server name twice", func(s *Site) {
			sv := s.Services[0]
			sv.Name = "api2"
			s.Services = append(s.Services, sv)
		}, `services[1].server_name: "api.internal.example.com" on port 443 is already services[0] on node "web"`},
		{"listen range", func(s *Site) { s.Services[0].Listen = 70000 }, `services[0].listen: port 70000 is out of range 1-65535`},
		{"upstream injection", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1:8080; }" }, `services[0].upstream: "http://127.0.0.1:8080; }" contains ";", which an upstream URL may not`},
		{"upstream semicolon", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1:8080/;return" }, `services[0].upstream: "http://127.0.0.1:8080/;return" contains ";", which an upstream URL may not`},
		{"upstream quote", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1/\"x" }, `services[0].upstream: "http://127.0.0.1/\"x" contains "\"", which an upstream URL may not`},
		{"organization newline", func(s *Site) { s.Clients[0].Organization = "MyOrg\nCN=admin" }, `clients[0].organization: "MyOrg\nCN=admin" contains a control character`},
		{"ca organization long", func(s *Site) { s.CA.Subject.Organization = strings.Repeat("o", 65) }, `ca.subject.organization: "` + strings.Repeat("o", 65) + `" is longer than 64 characters`},
		{"ca common name control", func(s *Site) { s.CA.Subject.CommonName = "Root\x00CA" }, `ca.subject.common_name: "Root\x00CA" contains a control character`},
		{"server name braces", func(s *Site) { s.Services[0].ServerName = "api.example.com;}" }, `services[0].server_name: "api.example.com;}" is not a valid DNS name`},
		{"name with dots", func(s *Site) { s.Clients[0].Name = "../x"; s.Services[0].Allow = []string{"../x"} }, `clients[0].name: "../x" is not a valid name (lower-case letters, digits and inner hyphens, at most 63)`},
		{"two mariadb on a node", func(s *Site) {
			s.Databases = append(s.Databases, Database{Name: "second", Node: "db", Engine: "mariadb", Port: 3307, Clients: []string{"web"}})
		}, `databases[1].node: node "db" already has a mariadb server (databases[0]); one server per engine per node`},
		{"upstream", func(s *Site) { s.Services[0].Upstream = "127.0.0.1:8080" }, `services[0].upstream: "127.0.0.1:8080" is not an http:// or https:// URL with a host`},
		{"allow empty", func(s *Site) { s.Services[0].Allow = nil }, `services[0].allow: empty: name the client identities that may use "api"`},
		{"allow unknown", func(s *Site) { s.Services[0].Allow = []string{"service-worker-1"} }, `services[0].allow[0]: unknown client "service-worker-1" (did you mean "service-worker-01"?)`},
		{"allow twice", func(s *Site) { s.Services[0].Allow = []string{"service-worker-01", "service-worker-01"} }, `services[0].allow[1]: "service-worker-01" is listed twice`},
		{"service port closed", func(s *Site) { s.Firewall.PublicTCP = []int{80} }, `services[0].listen: port 443 is not in firewall.public_tcp, so no client could reach "api" (add it there)`},
		{"service on ssh port", func(s *Site) { s.Services[0].Listen = 22 }, `services[0].listen: port 22 on node "web" is already used by sshd`},
		{"database name", func(s *Site) { s.Databases[0].Name = "" }, `databases[0].name: missing name`},
		{"database node", func(s *Site) { s.Databases[0].Node = "dbb" }, `databases[0].node: unknown node "dbb" (did you mean "db"?)`},
		{"database engine", func(s *Site) { s.Databases[0].Engine = "mysql" }, `databases[0].engine: unknown engine "mysql" (one of mariadb, postgresql)`},
		{"database port", func(s *Site) { s.Databases[0].Port = -1 }, `databases[0].port: port -1 is out of range 1-65535`},
		{"database clients empty", func(s *Site) { s.Databases[0].Clients = nil }, `databases[0].clients: empty: name the nodes that may connect to "main"`},
		{"database client unknown", func(s *Site) { s.Databases[0].Clients = []string{"wbe"} }, `databases[0].clients[0]: unknown node "wbe" (did you mean "web"?)`},
		{"database client self", func(s *Site) { s.Databases[0].Clients = []string{"db"} }, `databases[0].clients[0]: "db" is the database's own node`},
		{"database client twice", func(s *Site) { s.Databases[0].Clients = []string{"web", "web"} }, `databases[0].clients[1]: "web" is listed twice`},
		{"database client not linked", func(s *Site) {
			s.Nodes = append(s.Nodes, Node{Name: "batch", Endpoint: "192.168.1.7:51820"})
			s.Databases[0].Clients = []string{"web", "batch"}
		}, `databases[0].clients[1]: node "batch" is not a WireGuard peer of "db", so it cannot reach the database (add it to peers)`},
		{"database port twice", func(s *Site) {
			s.Databases = append(s.Databases, Database{Name: "second", Node: "db", Engine: "postgresql", Port: 3306, Clients: []string{"web"}})
		}, `databases[1].port: port 3306 on node "db" is already used by database "main"`},
		{"database on service port", func(s *Site) {
			s.Databases[0].Node = "web"
			s.Databases[0].Port = 443
			s.Databases[0].Clients = []string{"db"}
		},
			`services[0].listen: port 443 on node "web" is already used by database "main"`},
		{"client name", func(s *Site) { s.Clients[0].Name = "worker 1"; s.Services[0].Allow = []string{"worker 1"} },
			`clients[0].name: "worker 1" is not a valid name (lower-case letters, digits and inner hyphens, at most 63)`},
		{"client twice", func(s *Site) { s.Clients = append(s.Clients, s.Clients[0]) }, `clients[1].name: "service-worker-01" repeats clients[0]`},
		{"public port range", func(s *Site) { s.Firewall.PublicTCP = []int{0} }, `firewall.public_tcp[0]: port 0 is out of range 1-65535`},
		{"public port twice", func(s *Site) { s.Firewall.PublicTCP = []int{443, 443} }, `firewall.public_tcp[1]: port 443 repeats firewall.public_tcp[0]`},
		{"public ssh", func(s *Site) { s.Firewall.PublicTCP = []int{22} }, `firewall.public_tcp[0]: port 22 would open SSH to everyone; list the admin networks in ssh.admin_cidrs instead`},
		{"public database", func(s *Site) { s.Firewall.PublicTCP = []int{3306} }, `firewall.public_tcp[0]: port 3306 is database "main"'s port; databases are reachable only over the mesh`},
		{"icmp rate", func(s *Site) { s.Firewall.ICMPRate = "10 per second" }, `firewall.icmp_rate: "10 per second" is not a rate (e.g. 10/second, 600/minute)`},
		{"icmp rate zero", func(s *Site) { s.Firewall.ICMPRate = "0/second" }, `firewall.icmp_rate: "0/second" must allow at least 1`},
		{"icmp rate overflow", func(s *Site) { s.Firewall.ICMPRate = "99999999999999999999/second" }, `firewall.icmp_rate: "99999999999999999999/second" is too large (at most 4294967295 per second)`},
		{"icmp rate above uint32", func(s *Site) { s.Firewall.ICMPRate = "4294967296/day" }, `firewall.icmp_rate: "4294967296/day" is too large (at most 4294967295 per day)`},
		{"ca validity days overflow", func(s *Site) { s.CA.Validity = "217154d" }, `ca.validity: "217154d" is too long (at most 106751d)`},
		{"ssh validity days overflow", func(s *Site) { s.SSH.CertValidity = "213504d" }, `ssh.cert_validity: "213504d" is too long (at most 106751d)`},
		{"leaf validity days overflow", func(s *Site) { s.CA.CertValidity = "9223372036854775807d" }, `ca.cert_validity: "9223372036854775807d" is too long (at most 106751d)`},
		{"crl validity days past int64", func(s *Site) { s.CA.CRLValidity = "99999999999999999999d" }, `ca.crl_validity: "99999999999999999999d" is too long (at most 106751d)`},
		{"ssh validity hours overflow", func(s *Site) { s.SSH.CertValidity = "2562048h" }, `ssh.cert_validity: "2562048h" is too long (at most 106751d)`},
		{"admin cidr v4-mapped", func(s *Site) { s.SSH.AdminCIDRs = []string{"::ffff:192.168.10.0/120"} },
			`ssh.admin_cidrs[0]: "::ffff:192.168.10.0/120" is an IPv4 network written as IPv6, which IPv4 packets never match (write "192.168.10.0/24")`},
		{"admin cidr v4-mapped short", func(s *Site) { s.SSH.AdminCIDRs = []string{"::ffff:0.0.0.0/80"} },
			`ssh.admin_cidrs[0]: "::ffff:0.0.0.0/80" mixes IPv4-mapped and IPv6 addresses (write IPv4 networks in IPv4 form)`},
		{"network v4-mapped", func(s *Site) { s.WireGuard.Network = "::ffff:10.100.0.0/120" },
			`wireguard.network: "::ffff:10.100.0.0/120" is an IPv4 network written as IPv6, which IPv4 packets never match (write "10.100.0.0/24")`},
		{"endpoint zone injection", func(s *Site) { s.Nodes[1].Endpoint = "[fe80::1%x\nPreUp = id]:51820" },
			`nodes[1].endpoint: "[fe80::1%x\nPreUp = id]:51820": an endpoint may not have an IPv6 zone (%...): other nodes reach it by an address without one`},
		{"endpoint zone", func(s *Site) { s.Nodes[1].Endpoint = "[fe80::1%eth0]:51820" },
			`nodes[1].endpoint: "[fe80::1%eth0]:51820": an endpoint may not have an IPv6 zone (%...): other nodes reach it by an address without one`},
		{"endpoint zone on a name", func(s *Site) { s.Nodes[1].Endpoint = "[web%eth0]:51820" }, `nodes[1].endpoint: "[web%eth0]:51820": host "web%eth0" is not an IP address with a zone`},
		{"endpoint ipv6 bare", func(s *Site) { s.Nodes[1].Endpoint = "[2001:db8::1]:51820x" }, `nodes[1].endpoint: "[2001:db8::1]:51820x" has a bad port (1-65535)`},
		{"endpoint ipv4 in brackets", func(s *Site) { s.Nodes[1].Endpoint = "[192.168.1.50]:51820" }, `nodes[1].endpoint: "[192.168.1.50]:51820": an IPv4 address is written without brackets`},
		{"endpoint name in brackets", func(s *Site) { s.Nodes[1].Endpoint = "[web.example]:51820" }, `nodes[1].endpoint: "[web.example]:51820": only an IPv6 address goes in brackets`},
		{"endpoint port sign", func(s *Site) { s.Nodes[1].Endpoint = "192.168.1.50:+51820" }, `nodes[1].endpoint: "192.168.1.50:+51820" has a bad port (1-65535)`},
		{"endpoint port zeros", func(s *Site) { s.Nodes[1].Endpoint = "192.168.1.50:051820" }, `nodes[1].endpoint: "192.168.1.50:051820" has a bad port (1-65535)`},
		{"endpoint numeric name", func(s *Site) { s.Nodes[1].Endpoint = "0x7f000001:51820" }, `nodes[1].endpoint: "0x7f000001:51820": host "0x7f000001" is neither an IP address nor a DNS name`},
		{"upstream empty port", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1:" }, `services[0].upstream: "http://127.0.0.1:" has an empty port (leave out the ':' or give a port 1-65535)`},
		{"upstream user info", func(s *Site) { s.Services[0].Upstream = "http://user:pw@127.0.0.1:8080" }, `services[0].upstream: "http://user:pw@127.0.0.1:8080" has user info (user@ or user:password@), which an upstream URL may not`},
		{"upstream user only", func(s *Site) { s.Services[0].Upstream = "https://u@backend.internal" }, `services[0].upstream: "https://u@backend.internal" has user info (user@ or user:password@), which an upstream URL may not`},
		{"upstream query", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1:8080/?a=b" }, `services[0].upstream: "http://127.0.0.1:8080/?a=b" has a query (?...), which an upstream URL may not`},
		{"upstream empty query", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1:8080/?" }, `services[0].upstream: "http://127.0.0.1:8080/?" has a query (?...), which an upstream URL may not`},
		{"upstream fragment", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1:8080/#x" }, `services[0].upstream: "http://127.0.0.1:8080/#x" has a fragment (#...), which an upstream URL may not`},
		{"upstream zone", func(s *Site) { s.Services[0].Upstream = "http://[fe80::1%25eth0]:8080" }, `services[0].upstream: "http://[fe80::1%25eth0]:8080": an upstream address may not have an IPv6 zone`},
		{"upstream port sign", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1:08080" }, `services[0].upstream: "http://127.0.0.1:08080" has a bad port (1-65535)`},
		{"upstream bad host", func(s *Site) { s.Services[0].Upstream = "http://back_end:8080" }, `services[0].upstream: "http://back_end:8080": host "back_end" is neither an IP address nor a DNS name`},
		{"value too long", func(s *Site) { s.Services[0].Upstream = "http://x/" + strings.Repeat("a", 300) }, `services[0].upstream: 309 bytes is too long (at most 260)`},
		{"long name quoted nowhere", func(s *Site) { s.Nodes[0].Name = strings.Repeat("n", 300); s.Services[0].Node = s.Nodes[0].Name }, `nodes[0].name: 300 bytes is too long (at most 260)`},
		{"client named like a service", func(s *Site) { s.Clients = append(s.Clients, Client{Name: "api"}) },
			`clients[1].name: "api" is also services[0]'s name; clients and services share the CA's certificate names, so each must differ`},
		{"user named like a node", func(s *Site) { s.SSH.Users = append(s.SSH.Users, SSHUser{Name: "db", Principals: []string{"dba"}}) },
			`ssh.users[1].name: "db" is also nodes[0]'s name; SSH users and nodes share the SSH CA's certificate names, so each must differ`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := example(t)
			tt.mutate(s)
			got := messages(s.Validate())
			if !slices.Contains(got, tt.want) {
				t.Fatalf("want error\n  %s\ngot\n  %s", tt.want, strings.Join(got, "\n  "))
			}
		})
	}
}

func TestValidateReportsEverythingAtOnce(t *testing.T) {
	s := example(t)
	s.Version = 3
	s.Nodes[1].Peers = []string{"wbe"}
	s.Services[0].Listen = -5
	s.Firewall.ICMPRate = "fast"
	got := messages(s.Validate())
	if len(got) != 4 {
		t.Fatalf("want 4 errors, got %d:\n%s", len(got), strings.Join(got, "\n"))
	}
}

func TestValidateDoesNotChangeSite(t *testing.T) {
	s := &Site{Version: 1, Site: "x", WireGuard: WireGuard{Network: "10.0.0.0/24"}, Nodes: []Node{{Name: "a"}}}
	before := s.Clone()
	_ = s.Validate()
	if !reflect.DeepEqual(s, before) {
		t.Fatalf("Validate changed the site")
	}
}

func TestDefaults(t *testing.T) {
	s, err := Parse([]byte("version: 1\nsite: tiny\nwireguard: {network: 10.9.0.0/24}\nnodes: [{name: a}]\n"+
		"databases: []\nclients: [{name: c1}]\n"), "tiny.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := struct{ key, ca, leaf, crl, ssh, rate, cn string }{"ecdsa-p256", "87600h", "2160h", "168h", "4h", "10/second", "tiny Root CA"}
	got := struct{ key, ca, leaf, crl, ssh, rate, cn string }{s.CA.Key, string(s.CA.Validity), string(s.CA.CertValidity),
		string(s.CA.CRLValidity), string(s.SSH.CertValidity), s.Firewall.ICMPRate, s.CA.Subject.CommonName}
	if got != want {
		t.Fatalf("defaults: got %+v, want %+v", got, want)
	}
	if s.WireGuard.ListenPort != 51820 {
		t.Fatalf("listen port default %d", s.WireGuard.ListenPort)
	}
}

func TestDurationDays(t *testing.T) {
	for in, want := range map[Duration]string{"90d": "2160h0m0s", "4h": "4h0m0s", "1h30m": "1h30m0s", "106751d": "2562024h0m0s"} {
		v, err := in.Parse()
		if err != nil || v.String() != want {
			t.Errorf("%q: got %v, %v; want %s", in, v, err, want)
		}
	}
	// Too long never wraps around to a short or negative duration.
	for _, in := range []Duration{"106752d", "217154d", "213504d", "2147483648d", "99999999999999999999d", "-106752d", "2562048h", "9999999999999999999ns"} {
		if v, err := in.Parse(); err == nil || !strings.Contains(err.Error(), "is too long (at most 106751d)") {
			t.Errorf("%q: got %v, %v; want too long", in, v, err)
		}
	}
}

// TestValidEndpointAccepts keeps the endpoint rules from refusing what
// WireGuard takes.
func TestValidEndpointAccepts(t *testing.T) {
	for _, e := range []string{"192.168.1.50:51820", "[2001:db8::1]:51820", "[fe80::1]:1",
		"vpn.example.com:51820", "db1:65535", "[::ffff:192.0.2.1]:51820"} {
		if err := ValidEndpoint(e); err != nil {
			t.Errorf("%s: %v", e, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080", "https://backend.internal", "http://[2001:db8::5]:8080/app/", "http://localhost:1/a%20b"} {
		if err := ValidUpstream(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestAddressesStable(t *testing.T) {
	s := &Site{WireGuard: WireGuard{Network: "10.100.0.0/24"}, Nodes: []Node{
		{Name: "a"}, {Name: "b", Address: "10.100.0.2"}, {Name: "c"},
	}}
	got, err := s.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "10.100.0.1", "b": "10.100.0.2", "c": "10.100.0.3"}
	for n, a := range want {
		if got[n].String() != a {
			t.Errorf("%s: got %s, want %s", n, got[n], a)
		}
	}
	// Appending a node never renumbers the others, even without history.
	s.Nodes = append(s.Nodes, Node{Name: "d"})
	again, _ := s.Addresses(nil)
	for n := range want {
		if again[n] != got[n] {
			t.Errorf("appending d moved %s from %s to %s", n, got[n], again[n])
		}
	}
	// Inserting a node in front renumbers nothing when the earlier
	// allocation is passed in, as the state store does.
	s.Nodes = append([]Node{{Name: "first"}}, s.Nodes...)
	moved, _ := s.Addresses(again)
	for n, a := range again {
		if moved[n] != a {
			t.Errorf("inserting first moved %s from %s to %s", n, a, moved[n])
		}
	}
	if moved["first"].String() != "10.100.0.5" {
		t.Errorf("first got %s, want the lowest free 10.100.0.5", moved["first"])
	}
	// An explicit address wins over history.
	prev := map[string]netip.Addr{"a": netip.MustParseAddr("10.100.0.9")}
	s.Nodes[1].Address = "10.100.0.7"
	ex, _ := s.Addresses(prev)
	if ex["a"].String() != "10.100.0.7" {
		t.Errorf("explicit address lost: %s", ex["a"])
	}
}

func TestAddressesIPv6(t *testing.T) {
	s := &Site{WireGuard: WireGuard{Network: "fd00:100::/64"}, Nodes: []Node{{Name: "a"}, {Name: "b"}}}
	got, err := s.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got["a"].String() != "fd00:100::1" || got["b"].String() != "fd00:100::2" {
		t.Fatalf("got %v", got)
	}
}

// TestBadSites loads every file in testdata/bad and compares the errors
// with the "# want:" lines at the end of the file (-update rewrites them).
func TestBadSites(t *testing.T) {
	files, err := filepath.Glob("../testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 40 {
		t.Fatalf("want at least 40 bad site files, have %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			body, want := splitWant(string(data))
			_, err = Parse([]byte(body), filepath.Base(f))
			if err == nil {
				t.Fatalf("accepted a bad site")
			}
			var got []string
			var list Errors
			if !errors.As(err, &list) {
				t.Fatalf("error is not Errors: %v", err)
			}
			for _, e := range list {
				got = append(got, e.Error())
			}
			if *update {
				var b strings.Builder
				b.WriteString(body)
				for _, g := range got {
					fmt.Fprintf(&b, "# want: %s\n", g)
				}
				if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if len(want) == 0 {
				t.Fatalf("no '# want:' lines; run go test ./steps -run TestBadSites -update")
			}
			if !slices.Equal(got, want) {
				t.Fatalf("errors differ\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
			}
		})
	}
}

func splitWant(s string) (body string, want []string) {
	lines := strings.SplitAfter(s, "\n")
	end := len(lines)
	for end > 0 && (strings.HasPrefix(lines[end-1], "# want: ") || lines[end-1] == "") {
		end--
	}
	for _, l := range lines[end:] {
		if w, ok := strings.CutPrefix(l, "# want: "); ok {
			want = append(want, strings.TrimSuffix(w, "\n"))
		}
	}
	return strings.Join(lines[:end], ""), want
}

func TestRoundTrip(t *testing.T) {
	s := example(t)
	out, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, "roundtrip.yaml")
	if err != nil {
		t.Fatalf("re-read: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(s, back) {
		t.Fatalf("round trip changed the site:\n%s", out)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(ExampleYAML)
	seeds, _ := filepath.Glob("../testdata/bad/*.yaml")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		out, err := s.Marshal()
		if err != nil {
			t.Fatalf("marshal an accepted site: %v", err)
		}
		back, err := Parse(out, "fuzz-roundtrip.yaml")
		if err != nil {
			t.Fatalf("an accepted site does not re-validate after a round trip: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(s, back) {
			t.Fatalf("round trip changed the site:\n%s", out)
		}
	})
}
