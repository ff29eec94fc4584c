// Command sitegen prints a valid site file of a given size for the
// whole-process benchmarks in bench/: a ring (each node a peer of the next,
// one mTLS service and one database per ten nodes) or a hub (node n0 a peer
// of every other node and their database server).
//
//	go run ./bench/sitegen -shape ring -nodes 1000 > site.yaml
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	shape := flag.String("shape", "ring", "ring or hub")
	n := flag.Int("nodes", 1000, "number of nodes (the hub adds n0 to them)")
	flag.Parse()
	w := bufio.NewWriter(os.Stdout)
	switch *shape {
	case "ring":
		ring(w, *n)
	case "hub":
		hub(w, *n)
	default:
		fmt.Fprintf(os.Stderr, "sitegen: -shape %q: want ring or hub\n", *shape)
		os.Exit(2)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "sitegen:", err)
		os.Exit(1)
	}
}

// ring is a site of n nodes in a ring, each a peer of the next, with one
// service and one database per ten nodes.
func ring(w *bufio.Writer, n int) {
	fmt.Fprintf(w, "version: 1\nsite: ring\nca: {subject: {common_name: Ring Root CA, organization: Ring}}\n")
	fmt.Fprintf(w, "ssh: {users: [{name: alice, principals: [root]}]}\nwireguard: {network: 10.64.0.0/12}\nnodes:\n")
	for i := range n {
		fmt.Fprintf(w, "  - {name: n%d, endpoint: \"10.200.%d.%d:51820\", peers: [n%d]}\n", i, i/250, i%250+1, (i+1)%n)
	}
	fmt.Fprintf(w, "firewall: {public_tcp: [443]}\nclients: [{name: worker}]\nservices:\n")
	for i := 0; i < n; i += 10 {
		fmt.Fprintf(w, "  - {name: s%d, node: n%d, server_name: s%d.example.com, upstream: \"http://127.0.0.1:8080\", allow: [worker]}\n", i, i, i)
	}
	fmt.Fprintf(w, "databases:\n")
	for i := 0; i < n; i += 10 {
		fmt.Fprintf(w, "  - {name: d%d, node: n%d, engine: postgresql, clients: [n%d]}\n", i, i, (i+1)%n)
	}
}

// hub is node n0 with n peers n1..nN, all clients of n0's database.
func hub(w *bufio.Writer, n int) {
	peers := make([]string, n)
	for i := range peers {
		peers[i] = fmt.Sprintf("n%d", i+1)
	}
	list := strings.Join(peers, ", ")
	fmt.Fprintf(w, "version: 1\nsite: hub\nca: {subject: {common_name: Hub Root CA, organization: Hub}}\n")
	fmt.Fprintf(w, "ssh: {admin_cidrs: [192.168.10.0/24], users: [{name: alice, principals: [root]}]}\n")
	fmt.Fprintf(w, "wireguard: {network: 10.64.0.0/12}\nnodes:\n  - {name: n0, endpoint: \"10.200.0.0:51820\", peers: [%s]}\n", list)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "  - {name: n%d, endpoint: \"10.200.%d.%d:51820\"}\n", i, i/256, i%256)
	}
	fmt.Fprintf(w, "databases:\n  - {name: main, node: n0, engine: mariadb, port: 3306, clients: [%s]}\n", list)
	fmt.Fprintf(w, "firewall: {public_tcp: [80, 443]}\n")
}
