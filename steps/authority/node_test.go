package authority

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/bundle"
	"ztwizard/steps/pki"
	"ztwizard/steps/state"
)

// fleetSite is the example with a service on each node and a third node,
// so that nodes whose keys are made here also carry TLS keys.
func fleetSite(t *testing.T, serverName string) *steps.Site {
	t.Helper()
	y := strings.Replace(string(steps.ExampleYAML), "services:                    # mTLS-only HTTP services, nginx in front\n",
		"services:\n  - {name: admin, node: db, server_name: "+serverName+", listen: 443, upstream: \"http://127.0.0.1:9090\", allow: [service-worker-01]}\n", 1)
	y = strings.Replace(y, "nodes:\n", "nodes:\n  - {name: log, endpoint: \"192.168.1.70:51820\", address: 10.100.0.3, peers: [db]}\n", 1)
	y = strings.Replace(y, "peers: [web]}", "peers: [web, log]}", 1)
	site, err := steps.Parse([]byte(y), "fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return site
}

func newFleetAuthority(t *testing.T, site *steps.Site) (*Authority, *clock) {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: t0}
	return &Authority{Store: store, Site: site, Now: c.Now}, c
}

// request makes node's request in a root of its own and imports it.
func request(t *testing.T, a *Authority, node string) (root string, req *bundle.Request) {
	t.Helper()
	root = t.TempDir()
	req, _, err := bundle.MakeRequest(root, a.Site, node, a.now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ImportRequest(req); err != nil {
		t.Fatal(err)
	}
	return root, req
}

// payloadText opens a bundle and returns its payload and every string in
// it, one after the other, as a scan reads them.
func payloadText(t *testing.T, data []byte, a *Authority) (*bundle.Payload, []byte) {
	t.Helper()
	ca, _, err := a.CA()
	if err != nil {
		t.Fatal(err)
	}
	p, err := bundle.Open(data, bundle.Trust{CACert: ca.Cert}, a.now())
	if err != nil {
		t.Fatal(err)
	}
	var env bundle.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(env.Payload, &v); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			buf.WriteString(x + "\n")
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return p, buf.Bytes()
}

// caPublics are the public keys of the site's three CAs.
func caPublics(t *testing.T, a *Authority) []crypto.PublicKey {
	t.Helper()
	ca, _, err := a.CA()
	if err != nil {
		t.Fatal(err)
	}
	out := []crypto.PublicKey{ca.Cert.PublicKey}
	for _, kind := range []string{KindSSHUserCA, KindSSHHostCA} {
		k, _, err := a.SSHCA(kind)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k.Public())
	}
	return out
}

func contains(keys []crypto.PublicKey, k crypto.PublicKey) bool {
	for _, x := range keys {
		if samePublicKey(x, k) {
			return true
		}
	}
	return false
}

// TestBundleScans proves what each bundle holds: never a CA private key
// (X.509 or SSH), never another node's private key (by public key), and
// for a node that made its own keys no private key at all.
func TestBundleScans(t *testing.T) {
	site := fleetSite(t, "admin.internal.example.com")
	a, _ := newFleetAuthority(t, site)
	webRoot, webReq := request(t, a, "web")
	cas := caPublics(t, a)

	// Every node's own public keys, to tell whose a private key is.
	own := map[string][]crypto.PublicKey{}
	wgPub := map[string]wgtypes.Key{}
	for _, n := range []string{"db", "log"} {
		sec, err := a.Secrets(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, kp := range sec.Servers {
			c, _ := pki.DecodeCertPEM(kp.Cert)
			own[n] = append(own[n], c.PublicKey)
		}
		wgPub[n] = sec.WireGuardKey.PublicKey()
	}
	for _, p := range []string{steps.TLSDir + "/api.key", steps.SSHHostKeyPath} {
		data, _ := os.ReadFile(filepath.Join(webRoot, p))
		keys, err := bundle.PrivateKeysIn(data)
		if err != nil || len(keys) != 1 {
			t.Fatalf("%s: %v %v", p, keys, err)
		}
		own["web"] = append(own["web"], keys[0])
	}
	wgPub["web"], _ = wgtypes.ParseKey(webReq.WireGuardPublicKey)

	for _, node := range []string{"db", "web", "log"} {
		data, _, err := a.Bundle(node)
		if err != nil {
			t.Fatal(err)
		}
		p, text := payloadText(t, data, a)
		keys, err := bundle.PrivateKeysIn(text)
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		for _, k := range keys {
			if contains(cas, k) {
				t.Fatalf("bundle of %s holds a CA private key", node)
			}
			if !contains(own[node], k) {
				t.Fatalf("bundle of %s holds a private key that is not its own", node)
			}
		}
		if bytes.Contains(text, []byte("PRIVATE KEY")) && len(keys) == 0 {
			t.Fatalf("bundle of %s holds a private key the scan cannot read", node)
		}
		if p.Secrets.WireGuardKey != "" {
			k, err := wgtypes.ParseKey(p.Secrets.WireGuardKey)
			if err != nil || k.PublicKey() != wgPub[node] {
				t.Fatalf("bundle of %s holds a WireGuard private key that is not its own", node)
			}
		}
		switch node {
		case "web":
			if p.PrivateKeys || len(keys) > 0 || p.Secrets.WireGuardKey != "" || p.Secrets.HostKey != "" || bytes.Contains(text, []byte("PRIVATE KEY")) {
				t.Fatalf("the bundle of web, which made its own keys, holds a private key")
			}
			// Its certificate is for the key it holds.
			c, _ := pki.DecodeCertPEM([]byte(p.Secrets.Servers["api"].Cert))
			if !contains(own["web"], c.PublicKey) {
				t.Fatal("web's certificate is not for its own key")
			}
			if p.Secrets.WireGuardPubs["web"] != webReq.WireGuardPublicKey {
				t.Fatal("web's bundle does not carry its requested WireGuard key")
			}
		default:
			if !p.PrivateKeys || len(keys) != len(own[node]) || p.Secrets.WireGuardKey == "" {
				t.Fatalf("bundle of %s: private %v, %d keys, want its %d TLS keys and its WireGuard key", node, p.PrivateKeys, len(keys), len(own[node]))
			}
		}
		// Only the public keys of itself and its peers.
		want := map[string]bool{node: true}
		for _, l := range site.Links(node) {
			want[l] = true
		}
		for n := range p.Secrets.WireGuardPubs {
			if !want[n] {
				t.Fatalf("bundle of %s carries the WireGuard key of %s, no peer of it", node, n)
			}
		}
	}
	// The db node's bundle knows web by the key web holds.
	data, _, err := a.Bundle("db")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := payloadText(t, data, a)
	if p.Secrets.WireGuardPubs["web"] != webReq.WireGuardPublicKey {
		t.Fatal("db's bundle does not know web by its own key")
	}
}

// TestBundleSerialsGrow: every bundle of a node has a new, greater serial,
// kept in the store, each bundle audited.
func TestBundleSerialsGrow(t *testing.T) {
	a, _ := newFleetAuthority(t, fleetSite(t, "admin.internal.example.com"))
	var last uint64
	for i := range 3 {
		_, p, err := a.Bundle("db")
		if err != nil {
			t.Fatal(err)
		}
		if p.Serial <= last {
			t.Fatalf("bundle %d: serial %d after %d", i, p.Serial, last)
		}
		last = p.Serial
	}
	if _, p, _ := a.Bundle("web"); p.Serial != 1 {
		t.Fatalf("web's first serial is %d, serials are per node", p.Serial)
	}
	got := map[string]uint64{}
	if err := a.BundleAll([]string{"db", "web", "log"}, func(_ []byte, p *bundle.Payload) error {
		got[p.Node] = p.Serial
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got["db"] != 4 || got["web"] != 2 || got["log"] != 1 {
		t.Fatalf("BundleAll serials %v, want db 4, web 2, log 1", got)
	}
	log, err := os.ReadFile(a.Store.Path("audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(log, []byte(`"kind":"bundle"`)); n != 7 {
		t.Fatalf("%d bundles audited, want 7", n)
	}
}

// serverRecords returns the index's records of a service.
func serverRecords(t *testing.T, a *Authority, name string) []state.Record {
	t.Helper()
	ix, err := a.Store.Index()
	if err != nil {
		t.Fatal(err)
	}
	return ix.Find(KindServer, name)
}

// TestReissueOnlyWhenDue: building twice issues nothing new; a certificate
// is re-issued when its renewal is due or its names changed (the old one
// superseded, not revoked: same key), and when the node's key changed (the
// old one superseded and revoked).
func TestReissueOnlyWhenDue(t *testing.T) {
	site := fleetSite(t, "admin.internal.example.com")
	a, clk := newFleetAuthority(t, site)
	request(t, a, "web")
	for range 2 {
		for _, n := range []string{"db", "web"} {
			if _, err := a.Secrets(n); err != nil {
				t.Fatal(err)
			}
			if _, _, err := a.Bundle(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	hostRecs := func() []state.Record {
		ix, _ := a.Store.Index()
		return ix.Find(KindSSHHost, "web")
	}
	if n := len(serverRecords(t, a, "admin")); n != 1 {
		t.Fatalf("rendering and bundling db twice issued %d certificates of admin", n)
	}
	if n := len(serverRecords(t, a, "api")); n != 1 {
		t.Fatalf("bundling web twice issued %d certificates of api", n)
	}
	if n := len(hostRecs()); n != 1 {
		t.Fatalf("bundling web twice signed %d host certificates", n)
	}

	// Renewal due: 70 of 90 days later, a new certificate for the same key.
	first := serverRecords(t, a, "admin")[0]
	firstKey := keyOf(t, a, first)
	clk.now = clk.now.Add(61 * 24 * time.Hour)
	sec, err := a.Secrets("db")
	if err != nil {
		t.Fatal(err)
	}
	recs := serverRecords(t, a, "admin")
	if len(recs) != 2 || recs[0].SupersededAt == nil || recs[0].SupersededBy != recs[1].Serial || recs[0].RevokedAt != nil {
		t.Fatalf("renewal: %+v", recs)
	}
	c, _ := pki.DecodeCertPEM(sec.Servers["admin"].Cert)
	if !samePublicKey(c.PublicKey, firstKey) {
		t.Fatal("renewal changed the key")
	}
	if _, err := a.Secrets("db"); err != nil || len(serverRecords(t, a, "admin")) != 2 {
		t.Fatalf("a renewed certificate was renewed again: %v", err)
	}

	// Names changed: re-issued, superseded, not revoked.
	a.Site = fleetSite(t, "admin2.internal.example.com")
	if _, err := a.Secrets("db"); err != nil {
		t.Fatal(err)
	}
	recs = serverRecords(t, a, "admin")
	if len(recs) != 3 || recs[1].SupersededAt == nil || recs[1].RevokedAt != nil {
		t.Fatalf("names changed: %+v", recs)
	}

	// The node's key changed (a new request with a new key): superseded
	// and revoked, and the CRL lists it.
	webBefore := serverRecords(t, a, "api")
	request(t, a, "web") // a fresh root: new keys
	if _, _, err := a.Bundle("web"); err != nil {
		t.Fatal(err)
	}
	recs = serverRecords(t, a, "api")
	if len(recs) != len(webBefore)+1 || recs[len(recs)-2].SupersededAt == nil || recs[len(recs)-2].RevokedAt == nil {
		t.Fatalf("key changed: %+v", recs)
	}
	crl, err := a.readFile(CRLFile)
	if err != nil {
		t.Fatal(err)
	}
	if !crlHas(t, crl, recs[len(recs)-2].Serial) {
		t.Fatal("the CRL does not list the certificate whose key changed")
	}
	hr := hostRecs()
	if len(hr) != 2 || hr[0].RevokedAt == nil || hr[0].SupersededAt == nil {
		t.Fatalf("host key changed: %+v", hr)
	}
}

func keyOf(t *testing.T, a *Authority, r state.Record) crypto.PublicKey {
	t.Helper()
	data, err := a.readFile(r.File)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.DecodeCertPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return c.PublicKey
}

func crlHas(t *testing.T, crlPEM []byte, serial string) bool {
	t.Helper()
	der, err := pemBody(crlPEM, "X509 CRL")
	if err != nil {
		t.Fatal(err)
	}
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.RevokedCertificateEntries {
		if hexSerial(e.SerialNumber) == serial {
			return true
		}
	}
	return false
}

// TestImportRefusesAndTouchesNothing: a request that does not fit the site
// is bad input and leaves the store as it was.
func TestImportRefusesAndTouchesNothing(t *testing.T) {
	a, _ := newFleetAuthority(t, fleetSite(t, "admin.internal.example.com"))
	_, req := request(t, a, "web")
	before, _ := a.Store.Index()
	other := *req
	other.Node = "db" // web's CSR is not for db's service, and db has one
	if _, err := a.ImportRequest(&other); !errors.Is(err, ErrInput) {
		t.Fatalf("import for the wrong node: %v", err)
	}
	dup := *req
	dup.Node = "log"
	dup.CSRs = nil
	if _, err := a.ImportRequest(&dup); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "already has this WireGuard key") {
		t.Fatalf("import of another node's WireGuard key: %v", err)
	}
	after, _ := a.Store.Index()
	if len(after.Records) != len(before.Records) {
		t.Fatal("a refused import changed the index")
	}
	if ok, _ := a.Store.Exists(requestFile("log")); ok {
		t.Fatal("a refused import was recorded")
	}
}

// TestHostKeyRecordedGetsCertificate: a recorded host key (ssh sign --host,
// or a request) makes every later Secrets carry its host certificate, the
// same one until it is due.
func TestHostKeyRecordedGetsCertificate(t *testing.T) {
	a, _ := newFleetAuthority(t, fleetSite(t, "admin.internal.example.com"))
	sec, err := a.Secrets("db")
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.HostCert) != 0 {
		t.Fatal("a host certificate without a recorded host key")
	}
	pub, _, err := bundle.NewHostKey("root@db")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RecordHostKey("db", pub); err != nil {
		t.Fatal(err)
	}
	s1, err := a.Secrets("db")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := a.Secrets("db")
	if err != nil {
		t.Fatal(err)
	}
	if len(s1.HostCert) == 0 || !bytes.Equal(s1.HostCert, s2.HostCert) {
		t.Fatal("no host certificate, or a new one each time")
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(s1.HostCert)
	if err != nil {
		t.Fatal(err)
	}
	c := k.(*ssh.Certificate)
	_, hostCA, _ := a.SSHCA(KindSSHHostCA)
	if c.CertType != ssh.HostCert || !bytes.Equal(c.SignatureKey.Marshal(), hostCA.Marshal()) || !bytes.Equal(c.Key.Marshal(), pub.Marshal()) {
		t.Fatal("not a host certificate of the recorded key by the host CA")
	}
}

// TestBundleCarriesTheNodesView: a bundle carries its node's view of the
// site, the nodes it deals with and their addresses only, so its size does
// not grow with the site: a ring node's bundle is the same size in a site
// of 40 nodes and of 400.
func TestBundleCarriesTheNodesView(t *testing.T) {
	ring := func(n int) *steps.Site {
		var b strings.Builder
		b.WriteString("version: 1\nsite: ring\nssh: {users: [{name: alice, principals: [root]}]}\nwireguard: {network: 10.100.0.0/16}\nnodes:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {name: n%d, endpoint: \"n%d.example.net:51820\", peers: [n%d]}\n", i, i, (i+1)%n)
		}
		b.WriteString("firewall: {public_tcp: [443]}\nclients: [{name: worker}]\nservices:\n")
		for i := 0; i < n; i += 10 {
			fmt.Fprintf(&b, "  - {name: s%d, node: n%d, server_name: s%d.example.com, upstream: \"http://127.0.0.1:8080\", allow: [worker]}\n", i, i, i)
		}
		s, err := steps.Parse([]byte(b.String()), "ring")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sizes := map[int]int{}
	for _, n := range []int{40, 400} {
		a, _ := newFleetAuthority(t, ring(n))
		data, p, err := a.Bundle("n20")
		if err != nil {
			t.Fatal(err)
		}
		sizes[n] = len(data)
		view, err := p.ParseSite()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, vn := range view.Nodes {
			names = append(names, vn.Name)
		}
		if !slices.Equal(names, []string{"n19", "n20", "n21"}) || len(view.Services) != 1 || view.Services[0].Name != "s20" {
			if len(names) > 5 {
				names = append(names[:5], "...")
			}
			t.Errorf("%d nodes: the bundle's site has %d nodes %v and %d services, want n19, n20, n21 and s20", n, len(view.Nodes), names, len(view.Services))
		}
		if len(p.Secrets.Addresses) != 3 {
			t.Errorf("%d nodes: the bundle has %d mesh addresses, want its view's 3", n, len(p.Secrets.Addresses))
		}
	}
	if d := sizes[400] - sizes[40]; d < -200 || d > 200 {
		t.Errorf("n20's bundle is %d bytes in a site of 40 nodes and %d in one of 400", sizes[40], sizes[400])
	}
}
