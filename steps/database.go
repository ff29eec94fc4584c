package steps

import (
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"slices"

	"ztwizard/templates"
)

// Where database snippets go. PostgreSQL's path carries the major version
// of Debian 12's server.
const (
	MariaDBConfPath    = "/etc/mysql/mariadb.conf.d/90-ztwizard.cnf"
	PostgreSQLVersion  = "15"
	PostgreSQLConfPath = "/etc/postgresql/" + PostgreSQLVersion + "/main/conf.d/90-ztwizard.conf"
	PostgreSQLHBAPath  = EtcDir + "/postgresql/pg_hba.conf"
)

// dbView is what the database templates see.
type dbView struct {
	Name    string
	Port    int
	Bind    netip.Addr
	Clients []dbClient
	HBAPath string
}

type dbClient struct {
	Node   string
	Prefix netip.Prefix
}

// DatabaseFiles binds each database on the node to its mesh address: for
// MariaDB a bind-address snippet, for PostgreSQL listen_addresses and a
// pg_hba.conf that admits only the client nodes' mesh addresses.
func DatabaseFiles(site *Site, node string, addrs map[string]netip.Addr) ([]File, error) {
	var files []File
	for _, db := range site.Databases {
		if db.Node != node {
			continue
		}
		bind, ok := addrs[node]
		if !ok {
			return nil, fmt.Errorf("database %q: node %q has no mesh address", db.Name, node)
		}
		v := dbView{Name: db.Name, Port: db.Port, Bind: bind, HBAPath: PostgreSQLHBAPath}
		clients := slices.Clone(db.Clients)
		slices.Sort(clients)
		for _, c := range clients {
			a, ok := addrs[c]
			if !ok {
				return nil, fmt.Errorf("database %q: client %q has no mesh address", db.Name, c)
			}
			v.Clients = append(v.Clients, dbClient{Node: c, Prefix: netip.PrefixFrom(a, a.BitLen())})
		}
		switch db.Engine {
		case EngineMariaDB:
			f, err := renderFile(MariaDBConfPath, 0o644, "mariadb.tmpl", v)
			if err != nil {
				return nil, err
			}
			files = append(files, f)
		case EnginePostgreSQL:
			conf, err := renderFile(PostgreSQLConfPath, 0o644, "postgresql.tmpl", v)
			if err != nil {
				return nil, err
			}
			hba, err := renderFile(PostgreSQLHBAPath, 0o640, "pg_hba.tmpl", v)
			if err != nil {
				return nil, err
			}
			hba.Group = "postgres"
			files = append(files, conf, hba)
		default:
			return nil, fmt.Errorf("database %q: unknown engine %q", db.Name, db.Engine)
		}
	}
	return files, nil
}

// renderFile renders a template into a File.
func renderFile(p string, mode fs.FileMode, tmpl string, data any) (File, error) {
	content, err := templates.Render(tmpl, data)
	if err != nil {
		return File{}, fmt.Errorf("render %s: %w", path.Base(p), err)
	}
	return File{Path: p, Mode: mode, Content: content}, nil
}
