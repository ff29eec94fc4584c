//go:build linux

package steps_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
)

// Bounds on every wait of the real-server tests.
const (
	dbCmdTimeout   = 30 * time.Second
	dbReadyTimeout = 15 * time.Second
)

// dbMesh is a mesh network and the addresses of the four nodes of dbSite.
type dbMesh struct {
	network, db, web, app, ops string
}

var (
	dbMeshV4 = dbMesh{"10.100.0.0/24", "10.100.0.1", "10.100.0.2", "10.100.0.3", "10.100.0.4"}
	dbMeshV6 = dbMesh{"fd00:100::/64", "fd00:100::1", "fd00:100::2", "fd00:100::3", "fd00:100::4"}
)

// dbSiteYAML is a site whose node db runs both engines: MariaDB for web,
// PostgreSQL for the clients given as the last argument. ops is a peer of
// db but a client of neither.
const dbSiteYAML = `version: 1
site: dbtest
ca:
  subject: {common_name: DB Test Root CA, organization: DBTest, country: "NO"}
  key: ecdsa-p256
ssh:
  admin_cidrs: [192.168.10.0/24]
  users:
    - {name: alice, principals: [root]}
wireguard:
  network: "%[1]s"
nodes:
  - {name: db,  endpoint: "192.168.1.100:51820", address: "%[2]s", peers: [web, app, ops]}
  - {name: web, endpoint: "192.168.1.50:51820",  address: "%[3]s", peers: [db]}
  - {name: app, endpoint: "192.168.1.51:51820",  address: "%[4]s", peers: [db]}
  - {name: ops, endpoint: "192.168.1.52:51820",  address: "%[5]s", peers: [db]}
databases:
  - {name: main, node: db, engine: mariadb, port: 13306, clients: [web]}
  - {name: ledger, node: db, engine: postgresql, port: 5433, clients: [%[6]s]}
`

// dbSite parses dbSiteYAML on mesh m, with pgClients as the PostgreSQL
// database's client list.
func dbSite(t testing.TB, m dbMesh, pgClients string) *steps.Site {
	t.Helper()
	s, err := steps.Parse(fmt.Appendf(nil, dbSiteYAML, m.network, m.db, m.web, m.app, m.ops, pgClients), "dbtest.yaml")
	if err != nil {
		t.Fatalf("parse the database test site: %v", err)
	}
	return s
}

// dbAddrs gives every node of s its mesh address.
func dbAddrs(t testing.TB, s *steps.Site) map[string]netip.Addr {
	t.Helper()
	addrs, err := s.Addresses(nil)
	if err != nil {
		t.Fatalf("mesh addresses: %v", err)
	}
	return addrs
}

// dbLines returns the lines of a configuration file that mean something:
// comments and blank lines dropped, runs of blanks squeezed to one space.
func dbLines(content []byte) []string {
	var out []string
	for line := range strings.Lines(string(content)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Join(strings.Fields(line), " "))
	}
	return out
}

// dbHBAHostsOnly returns an error unless every non-local rule of a
// pg_hba.conf admits one single address (a /32 or /128) with
// scram-sha-256: no 0.0.0.0/0, no `all`, no samenet, no wider network.
func dbHBAHostsOnly(content []byte) error {
	var errs []error
	for i, line := range dbLines(content) {
		f := strings.Fields(line)
		if f[0] == "local" {
			continue
		}
		if len(f) != 5 {
			errs = append(errs, fmt.Errorf("rule %d %q: want TYPE DATABASE USER ADDRESS METHOD", i+1, line))
			continue
		}
		if p, err := netip.ParsePrefix(f[3]); err != nil || !p.IsSingleIP() {
			errs = append(errs, fmt.Errorf("rule %d %q: address %q is not a single host", i+1, line, f[3]))
		}
		if f[4] != "scram-sha-256" {
			errs = append(errs, fmt.Errorf("rule %d %q: method %q, want scram-sha-256", i+1, line, f[4]))
		}
	}
	return errors.Join(errs...)
}

// dbExpect derives from the site alone the meaningful lines (as dbLines
// gives them) of every database file node must get.
func dbExpect(site *steps.Site, node string, addrs map[string]netip.Addr) map[string][]string {
	want := map[string][]string{}
	for _, db := range site.Databases {
		if db.Node != node {
			continue
		}
		bind, port := addrs[node].String(), strconv.Itoa(db.Port)
		switch db.Engine {
		case steps.EngineMariaDB:
			want[steps.MariaDBConfPath] = []string{"[mysqld]", "bind-address = " + bind, "port = " + port, "skip-name-resolve"}
		case steps.EnginePostgreSQL:
			want[steps.PostgreSQLConfPath] = []string{
				"listen_addresses = '" + bind + "'",
				"port = " + port,
				"hba_file = '" + steps.PostgreSQLHBAPath + "'",
			}
			hba := []string{"local all postgres peer", "local all all peer"}
			for _, c := range slices.Sorted(slices.Values(db.Clients)) {
				a := addrs[c]
				hba = append(hba, "host all all "+netip.PrefixFrom(a, a.BitLen()).String()+" scram-sha-256")
			}
			want[steps.PostgreSQLHBAPath] = hba
		}
	}
	return want
}

// dbFileWant is what one rendered database file must be.
type dbFileWant struct {
	path  string
	mode  fs.FileMode
	group string
	lines []string // as dbLines gives them
}

func TestDatabaseFiles(t *testing.T) {
	example := steps.Example()
	v4 := dbSite(t, dbMeshV4, "web, app")
	v6 := dbSite(t, dbMeshV6, "web, app")
	hbaLocal := []string{"local all postgres peer", "local all all peer"}
	tests := []struct {
		name    string
		site    *steps.Site
		node    string
		drop    string // a node left out of the mesh addresses
		want    []dbFileWant
		wantErr string
	}{
		{
			name: "example db node: MariaDB on its mesh address",
			site: example, node: "db",
			want: []dbFileWant{{steps.MariaDBConfPath, 0o644, "", []string{"[mysqld]", "bind-address = 10.100.0.1", "port = 3306", "skip-name-resolve"}}},
		},
		{name: "example web node: no database, no files", site: example, node: "web"},
		{
			name: "both engines, PostgreSQL with two clients",
			site: v4, node: "db",
			want: []dbFileWant{
				{steps.MariaDBConfPath, 0o644, "", []string{"[mysqld]", "bind-address = 10.100.0.1", "port = 13306", "skip-name-resolve"}},
				{steps.PostgreSQLConfPath, 0o644, "", []string{
					"listen_addresses = '10.100.0.1'",
					"port = 5433",
					"hba_file = '" + steps.PostgreSQLHBAPath + "'",
				}},
				{steps.PostgreSQLHBAPath, 0o640, "postgres", append(slices.Clone(hbaLocal),
					"host all all 10.100.0.3/32 scram-sha-256",
					"host all all 10.100.0.2/32 scram-sha-256",
				)},
			},
		},
		{
			name: "IPv6 mesh: /128 client lines",
			site: v6, node: "db",
			want: []dbFileWant{
				{steps.MariaDBConfPath, 0o644, "", []string{"[mysqld]", "bind-address = fd00:100::1", "port = 13306", "skip-name-resolve"}},
				{steps.PostgreSQLConfPath, 0o644, "", []string{
					"listen_addresses = 'fd00:100::1'",
					"port = 5433",
					"hba_file = '" + steps.PostgreSQLHBAPath + "'",
				}},
				{steps.PostgreSQLHBAPath, 0o640, "postgres", append(slices.Clone(hbaLocal),
					"host all all fd00:100::3/128 scram-sha-256",
					"host all all fd00:100::2/128 scram-sha-256",
				)},
			},
		},
		{name: "client node: no files", site: v4, node: "web"},
		{name: "peer that is no client: no files", site: v4, node: "ops"},
		{name: "client without a mesh address", site: v4, node: "db", drop: "app", wantErr: `client "app" has no mesh address`},
		{name: "database node without a mesh address", site: v4, node: "db", drop: "db", wantErr: `node "db" has no mesh address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addrs := dbAddrs(t, tc.site)
			delete(addrs, tc.drop)
			files, err := steps.DatabaseFiles(tc.site, tc.node, addrs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DatabaseFiles: error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DatabaseFiles: %v", err)
			}
			if len(files) != len(tc.want) {
				t.Fatalf("DatabaseFiles: %d files %v, want %d", len(files), dbPaths(files), len(tc.want))
			}
			for i, w := range tc.want {
				f := files[i]
				if f.Path != w.path || f.Mode != w.mode || f.Owner != "" || f.Group != w.group {
					t.Errorf("file %d: %s %v owner %q group %q, want %s %v owner root group %q",
						i, f.Path, f.Mode, f.Owner, f.Group, w.path, w.mode, w.group)
				}
				if got := dbLines(f.Content); !slices.Equal(got, w.lines) {
					t.Errorf("%s: lines\n%s\nwant\n%s\nfile:\n%s", f.Path, strings.Join(got, "\n"), strings.Join(w.lines, "\n"), f.Content)
				}
				if f.Path == steps.PostgreSQLHBAPath {
					if err := dbHBAHostsOnly(f.Content); err != nil {
						t.Errorf("%s: %v", f.Path, err)
					}
				}
			}
		})
	}
}

// dbPaths lists the paths of files.
func dbPaths(files []steps.File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Path
	}
	return out
}

func TestDatabaseFilesDeterministic(t *testing.T) {
	for _, m := range []dbMesh{dbMeshV4, dbMeshV6} {
		t.Run(m.network, func(t *testing.T) {
			site := dbSite(t, m, "web, app")
			addrs := dbAddrs(t, site)
			first, err := steps.DatabaseFiles(site, "db", addrs)
			if err != nil {
				t.Fatalf("DatabaseFiles: %v", err)
			}
			again, err := steps.DatabaseFiles(site, "db", addrs)
			if err != nil {
				t.Fatalf("DatabaseFiles again: %v", err)
			}
			if !reflect.DeepEqual(first, again) {
				t.Errorf("two renderings differ:\n%v\n%v", first, again)
			}
			swapped := dbSite(t, m, "app, web")
			other, err := steps.DatabaseFiles(swapped, "db", dbAddrs(t, swapped))
			if err != nil {
				t.Fatalf("DatabaseFiles with the clients swapped: %v", err)
			}
			if !reflect.DeepEqual(first, other) {
				t.Errorf("the order of clients in the site changed the files:\n%v\n%v", first, other)
			}
		})
	}
}

func TestDatabaseFilesFifty(t *testing.T) {
	site, err := steps.Load("../testdata/sites/fifty.yaml")
	if err != nil {
		t.Fatalf("load fifty: %v", err)
	}
	addrs := dbAddrs(t, site)
	engines := map[string]int{}
	for _, n := range site.Nodes {
		files, err := steps.DatabaseFiles(site, n.Name, addrs)
		if err != nil {
			t.Fatalf("node %s: DatabaseFiles: %v", n.Name, err)
		}
		want := dbExpect(site, n.Name, addrs)
		if len(files) != len(want) {
			t.Errorf("node %s: files %v, want %d", n.Name, dbPaths(files), len(want))
		}
		for _, f := range files {
			if got := dbLines(f.Content); !slices.Equal(got, want[f.Path]) {
				t.Errorf("node %s: %s: lines %q, want %q", n.Name, f.Path, got, want[f.Path])
			}
			if f.Path == steps.PostgreSQLHBAPath {
				if err := dbHBAHostsOnly(f.Content); err != nil {
					t.Errorf("node %s: %s: %v", n.Name, f.Path, err)
				}
			}
		}
	}
	for _, db := range site.Databases {
		engines[db.Engine]++
	}
	if engines[steps.EngineMariaDB] == 0 || engines[steps.EnginePostgreSQL] == 0 {
		t.Errorf("fifty has databases %v; want both engines covered", engines)
	}
}

// TestDatabaseHBAGuard proves dbHBAHostsOnly rejects the rules it exists
// to keep out.
func TestDatabaseHBAGuard(t *testing.T) {
	for _, line := range []string{
		"host all all 0.0.0.0/0 scram-sha-256",
		"host all all ::/0 scram-sha-256",
		"host all all all scram-sha-256",
		"host all all samenet scram-sha-256",
		"hostssl all all 10.100.0.0/24 scram-sha-256",
		"host all all 10.100.0.2/32 trust",
		"host all all 10.100.0.2 255.255.255.255 scram-sha-256",
	} {
		content := "local all all peer\nhost all all 10.100.0.2/32 scram-sha-256\n" + line + "\n"
		if err := dbHBAHostsOnly([]byte(content)); err == nil {
			t.Errorf("dbHBAHostsOnly accepted %q", line)
		}
	}
}

// dbRun runs a program, bounded in time, as cred (nil: as this process)
// in dir, and returns its standard output, or an error holding its
// standard error.
func dbRun(cred *syscall.Credential, dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, _, err := testenv.RunCmd(context.Background(), dbCmdTimeout, cmd)
	return out, err
}

// dbNetns creates a network namespace for t (see testenv.NewNetns) whose
// loopback link holds addr in mesh, as the WireGuard link would hold it,
// and returns its name.
func dbNetns(t testing.TB, mesh netip.Prefix, addr netip.Addr) string {
	t.Helper()
	ns := testenv.NewNetns(t, "ztdb-")
	add := []string{"-n", ns, "addr", "add", netip.PrefixFrom(addr, mesh.Bits()).String(), "dev", "lo"}
	if addr.Is6() {
		add = append(add, "nodad")
	}
	testenv.MustRun(t, "ip", add...)
	return ns
}

// dbStart runs a server in namespace ns, as cred (nil: as this process),
// in dir, and stops it with stopSig when t ends, failing t unless it
// exits cleanly in time (see testenv.Start).
func dbStart(t testing.TB, ns string, cred *syscall.Credential, dir string, stopSig syscall.Signal, name string, args ...string) *testenv.Proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return testenv.Start(t, cmd, testenv.ProcOptions{Netns: ns, StopSignal: stopSig})
}

// dbDebianMariaDBServer stands in for the bind-address line of Debian's
// /etc/mysql/mariadb.conf.d/50-server.cnf, which ztwizard's 90- snippet
// must override.
const dbDebianMariaDBServer = "[mysqld]\nbind-address = 127.0.0.1\n"

// dbWriteMariaDB writes conf into dir and returns the path of a my.cnf that
// includes it: as Debian's my.cnf does, from an included directory after
// 50-server.cnf, or else with a bare !include. conf is written unchanged.
func dbWriteMariaDB(dir string, conf []byte, debian bool) (string, error) {
	confDir := filepath.Join(dir, "mariadb.conf.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return "", fmt.Errorf("mariadb.conf.d: %w", err)
	}
	snippet := filepath.Join(confDir, path.Base(steps.MariaDBConfPath))
	if err := os.WriteFile(snippet, conf, 0o644); err != nil {
		return "", fmt.Errorf("write snippet: %w", err)
	}
	myCnf := "!include " + snippet + "\n"
	if debian {
		if err := os.WriteFile(filepath.Join(confDir, "50-server.cnf"), []byte(dbDebianMariaDBServer), 0o644); err != nil {
			return "", fmt.Errorf("write 50-server.cnf: %w", err)
		}
		myCnf = "[client-server]\nsocket = " + filepath.Join(dir, "mysqld.sock") + "\n\n!includedir " + confDir + "/\n"
	}
	p := filepath.Join(dir, "my.cnf")
	if err := os.WriteFile(p, []byte(myCnf), 0o644); err != nil {
		return "", fmt.Errorf("write my.cnf: %w", err)
	}
	return p, nil
}

// dbMariaDBEffective asks mariadbd (--verbose --help) which variables it
// would run with under defaultsFile and no other option file. mariadbd
// fails on an option it does not know, and so does this.
func dbMariaDBEffective(defaultsFile string) (map[string]string, error) {
	out, err := dbRun(nil, "", "mariadbd", "--defaults-file="+defaultsFile, "--verbose", "--help")
	if err != nil {
		return nil, fmt.Errorf("mariadbd rejects the configuration: %w", err)
	}
	vars := map[string]string{}
	in := false
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "Variables (--variable-name=value)") {
			in = true
			continue
		}
		if f := strings.Fields(line); in && len(f) == 2 {
			vars[f[0]] = f[1]
		}
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("mariadbd --verbose --help printed no variables:\n%s", out)
	}
	return vars, nil
}

// dbCheckMariaDB writes conf as dbWriteMariaDB does and returns an error
// unless mariadbd accepts it and would listen on addr:port only, with
// networking on.
func dbCheckMariaDB(dir string, conf []byte, debian bool, addr netip.Addr, port int) error {
	myCnf, err := dbWriteMariaDB(dir, conf, debian)
	if err != nil {
		return err
	}
	vars, err := dbMariaDBEffective(myCnf)
	if err != nil {
		return err
	}
	var errs []error
	for k, want := range map[string]string{"bind-address": addr.String(), "port": strconv.Itoa(port), "skip-networking": "FALSE"} {
		if vars[k] != want {
			errs = append(errs, fmt.Errorf("effective %s is %q, want %q", k, vars[k], want))
		}
	}
	return errors.Join(errs...)
}

func TestMariaDBConfig(t *testing.T) {
	testenv.Need(t, "mariadbd")
	example := steps.Example()
	v6 := dbSite(t, dbMeshV6, "web, app")
	render := func(t *testing.T, site *steps.Site) []byte {
		files, err := steps.DatabaseFiles(site, "db", dbAddrs(t, site))
		if err != nil {
			t.Fatalf("DatabaseFiles: %v", err)
		}
		return fileAt(t, files, steps.MariaDBConfPath).Content
	}
	replace := func(t *testing.T, b []byte, old, repl string) []byte {
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("rendered snippet has no %q:\n%s", old, b)
		}
		return bytes.ReplaceAll(b, []byte(old), []byte(repl))
	}
	tests := []struct {
		name    string
		site    *steps.Site
		debian  bool
		corrupt func(t *testing.T, conf []byte) []byte
		addr    string
		port    int
		wantErr string
	}{
		{name: "bare include", site: example, addr: "10.100.0.1", port: 3306},
		{name: "after Debian's 50-server.cnf", site: example, debian: true, addr: "10.100.0.1", port: 3306},
		{name: "IPv6 mesh, own port", site: v6, debian: true, addr: "fd00:100::1", port: 13306},
		{
			name: "unknown option", site: example, debian: true, addr: "10.100.0.1", port: 3306,
			corrupt: func(_ *testing.T, conf []byte) []byte { return append(conf, "bind-adress = 0.0.0.0\n"...) },
			wantErr: "unknown variable",
		},
		{
			name: "bound to every address", site: example, debian: true, addr: "10.100.0.1", port: 3306,
			corrupt: func(t *testing.T, conf []byte) []byte { return replace(t, conf, "10.100.0.1", "0.0.0.0") },
			wantErr: "bind-address",
		},
		{
			name: "networking off", site: example, debian: true, addr: "10.100.0.1", port: 3306,
			corrupt: func(_ *testing.T, conf []byte) []byte { return append(conf, "skip-networking\n"...) },
			wantErr: "skip-networking",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conf := render(t, tc.site)
			if tc.corrupt != nil {
				conf = tc.corrupt(t, conf)
			}
			err := dbCheckMariaDB(t.TempDir(), conf, tc.debian, netip.MustParseAddr(tc.addr), tc.port)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("check of the rendered snippet failed: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("check passed a corrupted snippet:\n%s", conf)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("check failed with %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestMariaDBListensOnMeshOnly(t *testing.T) {
	testenv.Need(t, "mariadbd", "ip", "ss")
	tests := []struct {
		name string
		site *steps.Site
	}{
		{"example, IPv4", steps.Example()},
		{"IPv6 mesh", dbSite(t, dbMeshV6, "web, app")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addrs := dbAddrs(t, tc.site)
			files, err := steps.DatabaseFiles(tc.site, "db", addrs)
			if err != nil {
				t.Fatalf("DatabaseFiles: %v", err)
			}
			conf := fileAt(t, files, steps.MariaDBConfPath)
			mesh, err := netip.ParsePrefix(tc.site.WireGuard.Network)
			if err != nil {
				t.Fatalf("mesh network: %v", err)
			}
			port := tc.site.Databases[0].Port
			ns := dbNetns(t, mesh, addrs["db"])

			dir := t.TempDir()
			myCnf, err := dbWriteMariaDB(dir, conf.Content, true)
			if err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, "data")
			if err := os.Mkdir(data, 0o700); err != nil {
				t.Fatal(err)
			}
			// An empty data directory and no grant tables: enough for the
			// server to bind, which is all this test looks at.
			d := dbStart(t, ns, nil, dir, syscall.SIGTERM, "mariadbd",
				"--defaults-file="+myCnf, "--user=root",
				"--datadir="+data, "--socket="+filepath.Join(dir, "mysqld.sock"),
				"--pid-file="+filepath.Join(dir, "mysqld.pid"), "--tmpdir="+dir,
				"--skip-grant-tables", "--innodb-buffer-pool-size=8M", "--innodb-use-native-aio=0")
			if err := d.WaitReady(dbReadyTimeout, func() error {
				if !strings.Contains(d.Output(), "ready for connections") {
					return errors.New("not yet ready for connections")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			got, err := testenv.TCPListeners(ns)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{netip.AddrPortFrom(addrs["db"], uint16(port)).String()}; !slices.Equal(got, want) {
				t.Errorf("mariadbd listens on %v, want %v only", got, want)
			}
		})
	}
}

// dbPGBin is where Debian installs the PostgreSQL server's programs.
var dbPGBin = "/usr/lib/postgresql/" + steps.PostgreSQLVersion + "/bin"

// dbPostgres is a throwaway PostgreSQL cluster run for one test.
type dbPostgres struct {
	dir     string // the cluster's folder; holds the unix socket
	hbaPath string // the copy of the rendered pg_hba.conf the server reads
	port    int
	cred    *syscall.Credential // the postgres user
	daemon  *testenv.Proc
}

// dbPostgresUser returns the credentials of the postgres user and the id
// of the postgres group.
func dbPostgresUser(t testing.TB) (*syscall.Credential, int) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("the postgres user is required (./scripts/deps.sh installs postgresql-%s): %v", steps.PostgreSQLVersion, err)
	}
	g, err := user.LookupGroup("postgres")
	if err != nil {
		t.Fatalf("the postgres group is required: %v", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	group, err3 := strconv.Atoi(g.Gid)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatalf("postgres ids: %v", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, group
}

// dbStartPostgres creates a cluster with initdb, makes its postgresql.conf
// end as Debian's does (a loopback listen_addresses and initdb's hba_file,
// then include_dir = 'conf.d'), puts the rendered conf.d snippet there with
// its hba_file pointing at a copy of the rendered hba file (root-owned,
// group and mode as planned), and starts postgres in namespace ns, its unix
// socket in the cluster's folder. It returns once psql can connect.
func dbStartPostgres(t testing.TB, ns string, conf, hba steps.File, port int) *dbPostgres {
	t.Helper()
	testenv.Need(t, filepath.Join(dbPGBin, "initdb"), filepath.Join(dbPGBin, "postgres"), filepath.Join(dbPGBin, "psql"))
	cred, group := dbPostgresUser(t)
	if hba.Group != "postgres" {
		t.Fatalf("%s: group %q, want postgres", hba.Path, hba.Group)
	}

	// Not t.TempDir: its parent is private to root, and postgres must
	// reach the cluster.
	dir, err := os.MkdirTemp("", "ztdb-pg-")
	if err != nil {
		t.Fatalf("cluster folder: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatalf("cluster folder: %v", err)
	}
	data := filepath.Join(dir, "data")
	if _, err := dbRun(cred, dir, filepath.Join(dbPGBin, "initdb"), "-D", data, "-U", "postgres",
		"--auth-local=peer", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions", "-E", "UTF8"); err != nil {
		t.Fatalf("initdb: %v", err)
	}

	pg := &dbPostgres{dir: dir, hbaPath: filepath.Join(dir, path.Base(hba.Path)), port: port, cred: cred}
	if err := os.WriteFile(pg.hbaPath, hba.Content, hba.Mode); err != nil {
		t.Fatalf("write hba file: %v", err)
	}
	if err := errors.Join(os.Chown(pg.hbaPath, 0, group), os.Chmod(pg.hbaPath, hba.Mode)); err != nil {
		t.Fatalf("hba file: %v", err)
	}
	planned := "hba_file = '" + steps.PostgreSQLHBAPath + "'"
	if n := bytes.Count(conf.Content, []byte(planned)); n != 1 {
		t.Fatalf("%s: %d lines %q, want 1:\n%s", conf.Path, n, planned, conf.Content)
	}
	snippet := bytes.Replace(conf.Content, []byte(planned), []byte("hba_file = '"+pg.hbaPath+"'"), 1)
	confDir := filepath.Join(data, "conf.d")
	if err := os.Mkdir(confDir, 0o755); err != nil {
		t.Fatalf("conf.d: %v", err)
	}
	if err := os.WriteFile(filepath.Join(confDir, path.Base(conf.Path)), snippet, conf.Mode); err != nil {
		t.Fatalf("write conf.d snippet: %v", err)
	}
	tail := fmt.Sprintf("\n# As Debian's postgresql.conf: its own settings first, conf.d last.\n"+
		"hba_file = '%s'\nlisten_addresses = 'localhost'\nport = 5432\nunix_socket_directories = '%s'\ninclude_dir = 'conf.d'\n",
		filepath.Join(data, "pg_hba.conf"), dir)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("postgresql.conf: %v", err)
	}
	_, err = f.WriteString(tail)
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatalf("postgresql.conf: %v", err)
	}

	pg.daemon = dbStart(t, ns, cred, dir, syscall.SIGINT, filepath.Join(dbPGBin, "postgres"), "-D", data)
	if err := pg.daemon.WaitReady(dbReadyTimeout, func() error { _, err := pg.query("SELECT 1"); return err }); err != nil {
		t.Fatal(err)
	}
	return pg
}

// query runs one SQL statement with psql over the unix socket, as the
// postgres user, and returns its rows unaligned, fields separated by |.
func (pg *dbPostgres) query(sql string) (string, error) {
	out, err := dbRun(pg.cred, pg.dir, filepath.Join(dbPGBin, "psql"), "-X", "-A", "-t", "-q", "-F", "|",
		"-h", pg.dir, "-p", strconv.Itoa(pg.port), "-U", "postgres", "-d", "postgres", "-c", sql)
	if err != nil {
		return "", fmt.Errorf("psql: %w", err)
	}
	return strings.TrimSpace(out), nil
}

// dbPGWant is what a running server must report.
type dbPGWant struct {
	listen  netip.Addr
	port    int
	hbaFile string
	clients []netip.Addr // in hba file order
}

// dbCheckPostgres returns an error unless the server reports want: its
// listen_addresses, port and hba_file, and an hba file without errors
// whose rules are Debian's local ones and one host rule per client
// address, nothing else.
func dbCheckPostgres(pg *dbPostgres, want dbPGWant) error {
	var errs []error
	for _, s := range []struct{ setting, want string }{
		{"listen_addresses", want.listen.String()},
		{"port", strconv.Itoa(want.port)},
		{"hba_file", want.hbaFile},
	} {
		got, err := pg.query("SHOW " + s.setting)
		if err != nil {
			return fmt.Errorf("show %s: %w", s.setting, err)
		}
		if got != s.want {
			errs = append(errs, fmt.Errorf("%s is %q, want %q", s.setting, got, s.want))
		}
	}
	bad, err := pg.query("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL")
	if err != nil {
		return fmt.Errorf("count hba errors: %w", err)
	}
	if bad != "0" {
		msgs, _ := pg.query("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number")
		errs = append(errs, fmt.Errorf("%s hba rules in error:\n%s", bad, msgs))
	}
	rules, err := pg.query("SELECT type, array_to_string(database, ','), array_to_string(user_name, ','), " +
		"coalesce(address, ''), coalesce(netmask, ''), coalesce(auth_method, '') " +
		"FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number")
	if err != nil {
		return fmt.Errorf("read hba rules: %w", err)
	}
	wantRules := []string{"local|all|postgres|||peer", "local|all|all|||peer"}
	for _, a := range want.clients {
		mask := net.IP(net.CIDRMask(a.BitLen(), a.BitLen())).String()
		wantRules = append(wantRules, "host|all|all|"+a.String()+"|"+mask+"|scram-sha-256")
	}
	if got := strings.Split(rules, "\n"); !slices.Equal(got, wantRules) {
		errs = append(errs, fmt.Errorf("hba rules\n%s\nwant\n%s", rules, strings.Join(wantRules, "\n")))
	}
	return errors.Join(errs...)
}

func TestPostgreSQLListensOnMeshOnly(t *testing.T) {
	testenv.Need(t, "ip", "ss")
	for _, m := range []dbMesh{dbMeshV4, dbMeshV6} {
		t.Run(m.network, func(t *testing.T) {
			t.Parallel()
			site := dbSite(t, m, "web, app")
			addrs := dbAddrs(t, site)
			files, err := steps.DatabaseFiles(site, "db", addrs)
			if err != nil {
				t.Fatalf("DatabaseFiles: %v", err)
			}
			conf := fileAt(t, files, steps.PostgreSQLConfPath)
			hba := fileAt(t, files, steps.PostgreSQLHBAPath)
			port := 0
			for _, db := range site.Databases {
				if db.Engine == steps.EnginePostgreSQL {
					port = db.Port
				}
			}
			ns := dbNetns(t, netip.MustParsePrefix(m.network), addrs["db"])
			pg := dbStartPostgres(t, ns, conf, hba, port)

			want := dbPGWant{listen: addrs["db"], port: port, hbaFile: pg.hbaPath, clients: []netip.Addr{addrs["app"], addrs["web"]}}
			if err := dbCheckPostgres(pg, want); err != nil {
				t.Errorf("server with the rendered files: %v", err)
			}
			got, err := testenv.TCPListeners(ns)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{netip.AddrPortFrom(addrs["db"], uint16(port)).String()}; !slices.Equal(got, want) {
				t.Errorf("postgres listens on %v, want %v only", got, want)
			}

			// pg_hba_file_rules reads the file on disk, so the check sees a
			// corrupted copy without a reload, and must fail on it.
			corrupt := append(slices.Clone(hba.Content), "host all all 0.0.0.0/0 trust\nhost all all 10.100.0.2/99 scram-sha-256\n"...)
			if err := os.WriteFile(pg.hbaPath, corrupt, hba.Mode); err != nil {
				t.Fatalf("corrupt hba file: %v", err)
			}
			err = dbCheckPostgres(pg, want)
			if err == nil {
				t.Fatalf("check passed a corrupted hba file:\n%s", corrupt)
			}
			for _, s := range []string{"rules in error", "0.0.0.0"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("check of a corrupted hba file: %v; want it to mention %q", err, s)
				}
			}
		})
	}
}
