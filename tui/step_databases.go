package tui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"ztwizard/steps"
)

// databasesPage describes the database servers bound to the mesh.
func databasesPage(*model) *formPage {
	return newFormPage(stepDatabases,
		"Each database listens only on its node's mesh address, for client nodes that are WireGuard "+
			"peers of its node.",
		newList("Databases", "Database servers of the site. Enter edits, a adds, x removes.", databaseItems()),
	)
}

// databaseItems are the site's databases.
func databaseItems() itemKind {
	return &items[steps.Database]{
		nounS: "database", pathS: "databases",
		intro: "A database server on the mesh, reachable only by its client nodes.",
		list:  func(s *steps.Site) *[]steps.Database { return &s.Databases },
		clone: func(d steps.Database) steps.Database { d.Clients = slices.Clone(d.Clients); return d },
		fresh: func(e *env) steps.Database {
			d := steps.Database{Engine: steps.EngineMariaDB, Port: steps.DefaultPort(steps.EngineMariaDB)}
			if n := nodeNames(e.site); len(n) > 0 {
				d.Node = n[0]
			}
			return d
		},
		nameOf: func(d steps.Database) string { return d.Name },
		cols: func(_ *env, _ int, d steps.Database) []string {
			port := d.Port
			if port == 0 {
				port = steps.DefaultPort(d.Engine)
			}
			return []string{orNew(d.Name), d.Engine, "on " + d.Node + ":" + strconv.Itoa(port), "from " + strings.Join(d.Clients, " ")}
		},
		editor: func(i int) []field {
			db := func(s *steps.Site) *steps.Database { return &s.Databases[i] }
			p := func(f string) string { return fmt.Sprintf("databases[%d].%s", i, f) }
			engine := newSelect("Engine", "MariaDB or PostgreSQL (Debian 12's).",
				p("engine"), func(s *steps.Site) *string { return &db(s).Engine },
				fixed(steps.EngineMariaDB, steps.EnginePostgreSQL))
			port := newText("Port", "The TCP port it listens on, on the mesh address.",
				p("port"), number(func(s *steps.Site) *int { return &db(s).Port })).
				withHint(func(e *env) string { return fmt.Sprintf("%d (default)", steps.DefaultPort(db(e.site).Engine)) })
			engine.onSet = func(e *env) {
				d := db(e.site)
				for _, other := range []string{steps.EngineMariaDB, steps.EnginePostgreSQL} {
					if d.Port == steps.DefaultPort(other) && other != d.Engine {
						d.Port = steps.DefaultPort(d.Engine)
						port.reload(e)
						break
					}
				}
			}
			return []field{
				newText("Name", "A short name: lower-case letters, digits and hyphens.",
					p("name"), text(func(s *steps.Site) *string { return &db(s).Name })),
				newSelect("Node", "The node it runs on.",
					p("node"), func(s *steps.Site) *string { return &db(s).Node }, nodeOptions),
				engine, port,
				newMulti("Client nodes", "The nodes that may connect: space ticks, ←/→ move.",
					p("clients"), func(s *steps.Site) *[]string { return &db(s).Clients },
					func(e *env) []string { return otherNodes(e.site, db(e.site).Node) }, "no other nodes yet"),
			}
		},
	}
}
