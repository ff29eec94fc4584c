package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
)

// Marker lines on the console.
const (
	SelfCheckMarker = "ZTWIZARD-SELFCHECK" // starts the self-check's line
	ProbeMarker     = "ZTWIZARD-PROBE"     // starts a probe's line
	ListenMarker    = "ZTWIZARD-LISTEN"    // starts a listener's lines
)

// SelfCheck checks a booted node against what its image promises.
type SelfCheck struct {
	Root string      // "/" on the node
	Site *steps.Site // the node's site.yaml
	Node string      // the node; "" for a golden image without a seed
	// Run runs a command and returns its standard output; exec when nil.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
	// Device reads a WireGuard device; wgctrl when nil.
	Device func(name string) (*wgtypes.Device, error)
	// Dial connects to a database; net.Dialer when nil.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Report is a self-check's outcome: named results in order, and problems.
type Report struct {
	Node     string
	Fields   [][2]string
	Problems []string
}

// OK tells whether every check passed.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Line is the marker line: "ZTWIZARD-SELFCHECK ok node=db firewall=..."
// or "ZTWIZARD-SELFCHECK FAIL ... problems=...".
func (r Report) Line() string {
	var b strings.Builder
	b.WriteString(SelfCheckMarker)
	if r.OK() {
		b.WriteString(" ok")
	} else {
		b.WriteString(" FAIL")
	}
	node := r.Node
	if node == "" {
		node = "-"
	}
	fmt.Fprintf(&b, " node=%s", node)
	for _, f := range r.Fields {
		fmt.Fprintf(&b, " %s=%s", f[0], f[1])
	}
	if !r.OK() {
		fmt.Fprintf(&b, " problems=%q", strings.Join(r.Problems, "; "))
	}
	return b.String()
}

// Check runs every check once.
func (c SelfCheck) Check(ctx context.Context) Report {
	r := Report{Node: c.Node}
	add := func(name string, value string, err error) {
		if err != nil {
			r.Problems = append(r.Problems, name+": "+err.Error())
			value = "FAIL"
		}
		r.Fields = append(r.Fields, [2]string{name, value})
	}
	v, err := c.firewall(ctx)
	add("firewall", v, err)
	conf, confErr := c.wgConf()
	if c.Node != "" {
		if confErr != nil {
			add("wireguard", "", confErr)
		} else {
			v, err = c.wireguard(conf)
			add("wireguard", v, err)
		}
	}
	v, err = c.sshd(ctx)
	add("sshd", v, err)
	if c.Node != "" && c.hasDatabases() {
		if confErr != nil {
			add("db", "", confErr)
		} else {
			v, err = c.databases(ctx, conf)
			add("db", v, err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(c.root(), &st); err == nil {
		r.Fields = append(r.Fields, [2]string{"root", fmt.Sprintf("%dMiB", int64(st.Blocks)*st.Bsize/mib)})
	}
	return r
}

// Wait checks until every check passes or wait is over, and returns the
// last report.
func (c SelfCheck) Wait(ctx context.Context, wait time.Duration) Report {
	deadline := time.Now().Add(wait)
	for {
		r := c.Check(ctx)
		if r.OK() || time.Now().After(deadline) || ctx.Err() != nil {
			return r
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

func (c SelfCheck) root() string {
	if c.Root == "" {
		return "/"
	}
	return c.Root
}

func (c SelfCheck) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if c.Run != nil {
		return c.Run(ctx, name, args...)
	}
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(ee.Stderr))
		}
		return out, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// firewall: the inet ztwizard table's input chain drops by default, and
// its unit finished before the network began (systemd-networkd started,
// or network-pre.target was reached).
func (c SelfCheck) firewall(ctx context.Context) (string, error) {
	out, err := c.run(ctx, "nft", "list", "chain", "inet", "ztwizard", "input")
	if err != nil {
		return "", err
	}
	if !bytes.Contains(out, []byte("policy drop;")) {
		return "", errors.New("the input chain of inet ztwizard does not drop by default")
	}
	fw, err := c.monotonic(ctx, steps.FirewallUnit, "ActiveEnterTimestampMonotonic")
	if err != nil {
		return "", err
	}
	if fw == 0 {
		return "", fmt.Errorf("%s never became active", steps.FirewallUnit)
	}
	net, err := c.monotonic(ctx, "systemd-networkd.service", "InactiveExitTimestampMonotonic")
	if err != nil {
		return "", err
	}
	what := "networkd"
	if net == 0 {
		if net, err = c.monotonic(ctx, "network-pre.target", "ActiveEnterTimestampMonotonic"); err != nil {
			return "", err
		}
		what = "network-pre"
	}
	if net == 0 {
		return "", errors.New("the network has not started")
	}
	if fw > net {
		return "", fmt.Errorf("the firewall was loaded at %.2fs, after the network (%s) at %.2fs", float64(fw)/1e6, what, float64(net)/1e6)
	}
	return fmt.Sprintf("drop,loaded@%.2fs<%s@%.2fs", float64(fw)/1e6, what, float64(net)/1e6), nil
}

// monotonic reads a unit's monotonic time stamp property (microseconds).
func (c SelfCheck) monotonic(ctx context.Context, unit, prop string) (uint64, error) {
	out, err := c.run(ctx, "systemctl", "show", "-p", prop, "--value", unit)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(out))
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %q", unit, prop, s)
	}
	return n, nil
}

// wgPeer is a [Peer] of a wg-quick file.
type wgPeer struct {
	name      string
	publicKey string
	allowed   []netip.Prefix
}

// wgQuick is what the self-check reads from the node's wg-quick file.
type wgQuick struct {
	address netip.Prefix
	port    int
	peers   []wgPeer
}

func (c SelfCheck) wgConf() (*wgQuick, error) {
	p := filepath.Join(c.root(), steps.WireGuardConfDir, steps.WireGuardName+".conf")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return parseWGQuick(data, func(path string) ([]byte, error) { return os.ReadFile(filepath.Join(c.root(), path)) })
}

// parseWGQuick reads the node's wg-quick file with the one parser the
// userspace device uses too (steps.ParseWGQuick: a line it does not
// understand is an error, never skipped), the private key through readKey.
func parseWGQuick(data []byte, readKey func(string) ([]byte, error)) (*wgQuick, error) {
	iface, err := steps.ParseWGQuick(steps.WireGuardName, data, readKey)
	if err != nil {
		return nil, err
	}
	if len(iface.Addresses) == 0 {
		return nil, errors.New("wg-quick file has no Address")
	}
	q := &wgQuick{address: iface.Addresses[0]}
	if iface.Config.ListenPort != nil {
		q.port = *iface.Config.ListenPort
	}
	for _, p := range iface.Config.Peers {
		wp := wgPeer{name: iface.PeerNames[p.PublicKey], publicKey: p.PublicKey.String()}
		for _, a := range p.AllowedIPs {
			ap, ok := netip.AddrFromSlice(a.IP)
			ones, _ := a.Mask.Size()
			if !ok {
				return nil, fmt.Errorf("wg-quick AllowedIPs %s", a.String())
			}
			wp.allowed = append(wp.allowed, netip.PrefixFrom(ap.Unmap(), ones))
		}
		q.peers = append(q.peers, wp)
	}
	return q, nil
}

func (c SelfCheck) device(name string) (*wgtypes.Device, error) {
	if c.Device != nil {
		return c.Device(name)
	}
	cl, err := wgctrl.New()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.Device(name)
}

// wireguard: the interface is up with the key set and one peer per link
// of the node, with the peer's mesh address allowed.
func (c SelfCheck) wireguard(q *wgQuick) (string, error) {
	d, err := c.device(steps.WireGuardName)
	if err != nil {
		return "", fmt.Errorf("interface %s: %w", steps.WireGuardName, err)
	}
	if d.PrivateKey == (wgtypes.Key{}) {
		return "", fmt.Errorf("interface %s has no private key", d.Name)
	}
	if q.port != 0 && d.ListenPort != q.port {
		return "", fmt.Errorf("interface %s listens on %d, not %d", d.Name, d.ListenPort, q.port)
	}
	want := c.Site.Links(c.Node)
	var names []string
	for _, p := range q.peers {
		if !slices.Contains(want, p.name) {
			return "", fmt.Errorf("peer %q of %s is not linked to node %s in the site", p.name, steps.WireGuardName, c.Node)
		}
		i := slices.IndexFunc(d.Peers, func(dp wgtypes.Peer) bool { return dp.PublicKey.String() == p.publicKey })
		if i < 0 {
			return "", fmt.Errorf("peer %s is not on %s", p.name, d.Name)
		}
		for _, a := range p.allowed {
			if !slices.ContainsFunc(d.Peers[i].AllowedIPs, func(n net.IPNet) bool { return n.String() == a.String() }) {
				return "", fmt.Errorf("peer %s: %s is not allowed on %s", p.name, a, d.Name)
			}
		}
		names = append(names, p.name)
	}
	if len(names) != len(want) || len(d.Peers) != len(want) {
		return "", fmt.Errorf("%s has %d peers, the site links node %s to %s", d.Name, len(d.Peers), c.Node, strings.Join(want, ","))
	}
	return fmt.Sprintf("%s@%s:%s", d.Name, q.address.Addr(), strings.Join(names, ",")), nil
}

// sshd: sshd's effective configuration trusts the site's user CA, whose
// key file holds an SSH public key, and sshd runs.
func (c SelfCheck) sshd(ctx context.Context) (string, error) {
	out, err := c.run(ctx, "sshd", "-T")
	if err != nil {
		return "", err
	}
	if !bytes.Contains(out, []byte("\ntrustedusercakeys "+steps.SSHUserCAPath+"\n")) {
		return "", fmt.Errorf("sshd does not trust %s", steps.SSHUserCAPath)
	}
	ca, err := os.ReadFile(filepath.Join(c.root(), steps.SSHUserCAPath))
	if err != nil {
		return "", err
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey(ca); err != nil {
		return "", fmt.Errorf("%s: %w", steps.SSHUserCAPath, err)
	}
	state, _ := c.run(ctx, "systemctl", "is-active", "ssh.service")
	if s := strings.TrimSpace(string(state)); s != "active" {
		return "", fmt.Errorf("ssh.service is %s", s)
	}
	v := "user-ca"
	if bytes.Contains(out, []byte("\nhostcertificate ")) {
		v += ",host-cert"
	}
	return v, nil
}

func (c SelfCheck) hasDatabases() bool {
	for _, db := range c.Site.Databases {
		if db.Node == c.Node {
			return true
		}
	}
	return false
}

// databases: each database file of the node is on disk as the plan has
// it, bound to the node's mesh address.
func (c SelfCheck) databases(ctx context.Context, q *wgQuick) (string, error) {
	prev := map[string]netip.Addr{c.Node: q.address.Addr()}
	for _, p := range q.peers {
		if len(p.allowed) > 0 {
			prev[p.name] = p.allowed[0].Addr()
		}
	}
	addrs, err := c.Site.Addresses(prev)
	if err != nil {
		return "", err
	}
	files, err := steps.DatabaseFiles(c.Site, c.Node, addrs)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(c.root(), f.Path))
		if err != nil {
			return "", err
		}
		if !bytes.Equal(got, f.Content) {
			return "", fmt.Errorf("%s differs from the plan", f.Path)
		}
	}
	var out []string
	for _, db := range c.Site.Databases {
		if db.Node != c.Node {
			continue
		}
		addr := netip.AddrPortFrom(addrs[c.Node], uint16(db.Port)).String()
		if c.engineInstalled(db.Engine) {
			if err := c.speaks(ctx, db.Engine, addr); err != nil {
				return "", fmt.Errorf("database %s (%s) on %s: %w", db.Name, db.Engine, addr, err)
			}
		}
		out = append(out, fmt.Sprintf("%s:%s@%s", db.Name, db.Engine, addr))
	}
	return strings.Join(out, ","), nil
}

// engineInstalled tells whether the image carries the database engine (its
// unit file): then the self-check talks to it, else it checks the files.
func (c SelfCheck) engineInstalled(engine string) bool {
	unit := "mariadb.service"
	if engine == steps.EnginePostgreSQL {
		unit = "postgresql.service"
	}
	for _, dir := range unitDirs {
		if _, err := os.Stat(filepath.Join(c.root(), dir, unit)); err == nil {
			return true
		}
	}
	return false
}

// speaks connects to the database on addr and checks that the engine
// answers in its own protocol: MariaDB's greeting (a handshake, or an
// error packet for a host it refuses), PostgreSQL's answer to an SSL
// request ('S' or 'N').
func (c SelfCheck) speaks(ctx context.Context, engine, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dial := c.Dial
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	conn, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if engine == steps.EnginePostgreSQL {
		// SSLRequest: length 8, code 80877103.
		if _, err := conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
			return err
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(conn, b); err != nil {
			return fmt.Errorf("no answer to an SSL request: %w", err)
		}
		if b[0] != 'S' && b[0] != 'N' {
			return fmt.Errorf("answers %q to an SSL request, not PostgreSQL's S or N", b[0])
		}
		return nil
	}
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(conn, hdr); err != nil {
		return fmt.Errorf("no greeting: %w", err)
	}
	if hdr[4] != 0x0a && hdr[4] != 0xff {
		return fmt.Errorf("greets with %#x, not MariaDB's protocol 10 handshake", hdr[4])
	}
	return nil
}

// Listen accepts TCP connections on addr until ctx ends, greeting each
// with one line and logging where it came from:
// "ZTWIZARD-LISTEN accepted 10.100.0.1:3306 from 10.100.0.2:41234".
func Listen(ctx context.Context, addr, greeting string, log io.Writer) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("image: listen %s: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	fmt.Fprintf(log, "%s listening on %s\n", ListenMarker, addr)
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("image: listen %s: %w", addr, err)
		}
		fmt.Fprintf(log, "%s accepted %s from %s\n", ListenMarker, conn.LocalAddr(), conn.RemoteAddr())
		fmt.Fprintln(conn, greeting)
		conn.Close()
	}
}

// Probe connects to addresses that must answer and to addresses that
// must not, and reads the WireGuard handshakes.
type Probe struct {
	Root    string        // "/" on the node
	Open    []string      // host:port that must accept, retried until Timeout
	Closed  []string      // host:port that must not accept (dropped or refused)
	Timeout time.Duration // how long Open addresses are retried
	// Device reads a WireGuard device; wgctrl when nil.
	Device func(name string) (*wgtypes.Device, error)
}

// Do runs the probe and returns its marker line:
// "ZTWIZARD-PROBE ok open=10.100.0.1:3306[ztwizard db] closed=... handshake=db".
func (p Probe) Do(ctx context.Context) (string, bool) {
	var fields, problems []string
	deadline := time.Now().Add(p.Timeout)
	for _, a := range p.Open {
		greeting, err := dialRead(ctx, a, deadline)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", a, err))
			fields = append(fields, "open="+a+"[FAIL]")
			continue
		}
		fields = append(fields, fmt.Sprintf("open=%s[%s]", a, greeting))
	}
	for _, a := range p.Closed {
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", a)
		if err == nil {
			conn.Close()
			problems = append(problems, a+" accepted a connection")
			fields = append(fields, "closed="+a+"[FAIL]")
			continue
		}
		how := "dropped"
		if errors.Is(err, unix.ECONNREFUSED) {
			how = "refused"
		}
		fields = append(fields, fmt.Sprintf("closed=%s[%s]", a, how))
	}
	sc := SelfCheck{Root: p.Root, Device: p.Device}
	if q, err := sc.wgConf(); err == nil {
		if d, err := sc.device(steps.WireGuardName); err == nil {
			var hs []string
			for _, dp := range d.Peers {
				if dp.LastHandshakeTime.IsZero() {
					continue
				}
				for _, qp := range q.peers {
					if qp.publicKey == dp.PublicKey.String() {
						hs = append(hs, qp.name)
					}
				}
			}
			if len(hs) == 0 {
				hs = []string{"none"}
			}
			fields = append(fields, "handshake="+strings.Join(hs, ","))
		}
	}
	line := ProbeMarker + " ok " + strings.Join(fields, " ")
	if len(problems) > 0 {
		line = ProbeMarker + " FAIL " + strings.Join(fields, " ") + fmt.Sprintf(" problems=%q", strings.Join(problems, "; "))
	}
	return line, len(problems) == 0
}

// dialRead connects to addr, retrying until deadline, and returns the
// first line the other end sends.
func dialRead(ctx context.Context, addr string, deadline time.Time) (string, error) {
	var last error
	for {
		d := net.Dialer{Timeout: 3 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if rerr == nil || line != "" {
				return strings.TrimSpace(line), nil
			}
			err = rerr
		}
		last = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", last
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
