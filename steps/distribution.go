package steps

import (
	"fmt"
	"net/netip"
	"path"
	"strconv"
)

// Distribution of the CRL and KRL over the mesh: the node in ca.host
// publishes them with nginx on its mesh address, every node pulls them.
const (
	// PublishPort is the TCP port, on the CA host's mesh address, that
	// serves the published files.
	PublishPort = 8440
	// PublishDir is where `ca crl --publish` writes them on the CA host.
	PublishDir = "/var/lib/ztwizard-publish"
	// PublishConfPath is the CA host's nginx server for them.
	PublishConfPath = NginxConfDir + "/ztwizard-publish.conf"
	// The published files.
	PublishedCRL    = "crl.pem"
	PublishedKRL    = "revoked.krl"
	PublishedKRLSig = "revoked.krl.sig"
	// PublishedLeaves is the folder of every node's renewed certificates:
	// nodes/NODE/SERVICE.crt and nodes/NODE/ssh_host_ed25519_key-cert.pub.
	PublishedLeaves = "nodes"

	PullUnit  = "ztwizard-pull.service"
	PullTimer = "ztwizard-pull.timer"
	// PullEvery is how often nodes of a real site pull (Timing's Pull):
	// a few small files over the mesh, often enough that a revocation
	// reaches every node within minutes.
	PullEvery = "5min"
)

// PublishURL is where the nodes of site pull from, given every node's mesh
// address; "" when the site names no ca.host.
func PublishURL(site *Site, addrs map[string]netip.Addr) (string, error) {
	if site.CA.Host == "" {
		return "", nil
	}
	a, ok := addrs[site.CA.Host]
	if !ok {
		return "", fmt.Errorf("ca.host %q has no mesh address", site.CA.Host)
	}
	return "http://" + netip.AddrPortFrom(a, PublishPort).String(), nil
}

// DistributionFiles returns, for a site with ca.host, every node's pull
// service and timer (enabled), and on the CA host the nginx server that
// publishes the files on its mesh address to the mesh only.
func DistributionFiles(site *Site, node string, addrs map[string]netip.Addr) ([]File, []Unit, error) {
	from, err := PublishURL(site, addrs)
	if err != nil || from == "" {
		return nil, nil, err
	}
	t := site.Timing()
	v := struct{ Binary, From, Node, Every, Jitter, Boot, CACert, Accuracy string }{BinaryPath, from, node, systemdSpan(t.Pull),
		systemdSpan(t.PullJitter), bootDelay(site, "1min"), CACertPath, timerAccuracy(site)}
	var files []File
	for _, u := range []struct{ name, tmpl string }{{PullUnit, "unit-pull-service.tmpl"}, {PullTimer, "unit-pull-timer.tmpl"}} {
		f, err := renderFile(path.Join(SystemdDir, u.name), 0o644, u.tmpl, v)
		if err != nil {
			return nil, nil, fmt.Errorf("unit %s: %w", u.name, err)
		}
		files = append(files, f)
	}
	units := []Unit{{Name: PullTimer, Enable: true}}
	if node != site.CA.Host {
		return files, units, nil
	}
	mesh, err := ValidPrefix(site.WireGuard.Network)
	if err != nil {
		return nil, nil, fmt.Errorf("wireguard.network: %w", err)
	}
	// Every address of the mesh's family, not the mesh address alone:
	// nginx binds it at `nginx -t` (apply's check) and at its start, both
	// before WireGuard has brought the mesh address up on a first apply.
	// The firewall opens the port only on the mesh interface from the
	// mesh, and nginx's allow admits only the mesh.
	listen := strconv.Itoa(PublishPort)
	if addrs[node].Is6() {
		listen = "[::]:" + listen
	}
	f, err := renderFile(PublishConfPath, 0o644, "nginx-publish.tmpl", struct{ Listen, Dir, Mesh, CRL, KRL, Sig, Leaves string }{
		listen, PublishDir, mesh.Masked().String(), PublishedCRL, PublishedKRL, PublishedKRLSig, PublishedLeaves})
	if err != nil {
		return nil, nil, err
	}
	files = append(files, f)
	units = append(units, Unit{Name: "nginx.service", Enable: true, Reload: true, Package: "nginx"})
	return files, units, nil
}
