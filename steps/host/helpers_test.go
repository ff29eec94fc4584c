package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/nft"
	"ztwizard/steps/state"
	"ztwizard/steps/testenv"
)

// siteYAML is the example site with each old string replaced by the next
// one; a replacement that matches nothing fails the test.
func siteYAML(t testing.TB, pairs ...string) []byte {
	t.Helper()
	return testenv.Substitute(t, steps.ExampleYAML, pairs...)
}

// Site variants of the example used across the tests.
const exampleService = `  - {name: api, node: web, server_name: api.internal.example.com, listen: 443,
     upstream: "http://127.0.0.1:8080", allow: [service-worker-01]}`

// noService is the example without its mTLS service.
func noService(t testing.TB) []byte {
	return siteYAML(t, exampleService, "", "services:                    # mTLS-only HTTP services, nginx in front", "services: []")
}

// planner builds plans from one state store, so that every variant of a
// site shares the CA, the certificates and the WireGuard keys.
type planner struct {
	t     testing.TB
	store *state.Store
}

func newPlanner(t testing.TB) *planner {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return &planner{t: t, store: store}
}

// plan builds node's plan of the site in yaml.
func (p *planner) plan(yaml []byte, node string) *steps.Plan {
	p.t.Helper()
	site, err := steps.Parse(yaml, "site.yaml")
	if err != nil {
		p.t.Fatalf("site: %v", err)
	}
	auth := &authority.Authority{Store: p.store, Site: site}
	sec, err := auth.Secrets(node)
	if err != nil {
		p.t.Fatalf("secrets of %s: %v", node, err)
	}
	plan, err := steps.BuildPlan(site, node, sec, time.Now())
	if err != nil {
		p.t.Fatalf("plan of %s: %v", node, err)
	}
	return plan
}

// fileOf returns the plan's file at path.
func fileOf(t testing.TB, p *steps.Plan, path string) steps.File {
	t.Helper()
	for _, f := range p.Files {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("plan of %s has no %s", p.Node, path)
	return steps.File{}
}

// withFile returns a copy of p whose file at path has content.
func withFile(t testing.TB, p *steps.Plan, path string, content []byte) *steps.Plan {
	t.Helper()
	q := *p
	q.Files = slices.Clone(p.Files)
	for i := range q.Files {
		if q.Files[i].Path == path {
			q.Files[i].Content = content
			return &q
		}
	}
	t.Fatalf("plan of %s has no %s", p.Node, path)
	return nil
}

// fsImmutableFL is the inode flag behind `chattr +i` (linux/fs.h).
const fsImmutableFL = 0x00000010

// setImmutable sets or clears a file's or folder's immutable flag, which
// stops even root from changing it (or, for a folder, its entries).
func setImmutable(t testing.TB, path string, on bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Fatalf("get flags of %s: %v", path, err)
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags)); err != nil {
		t.Fatalf("set flags of %s: %v", path, err)
	}
}

// immutable makes path immutable until the test ends.
func immutable(t testing.TB, path string) {
	t.Helper()
	setImmutable(t, path, true)
	t.Cleanup(func() { setImmutable(t, path, false) })
}

// enterNetns moves the test's goroutine, locked to its thread for good,
// into a fresh network namespace: netlink calls, nftables connections and
// the programs it starts all land there, and the namespace goes with the
// thread when the test ends. Subtests run on goroutines of their own and
// call it themselves.
func enterNetns(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.Need(t, "nft")
	runtime.LockOSThread() // never unlocked: the thread ends with the test
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare the network namespace: %v", err)
	}
}

// fakeRunner runs nft for real (in the test's namespace) and records every
// other program instead of running it, failing the ones it is told to.
type fakeRunner struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]int  // command line prefix -> how many more runs fail
	real  map[string]bool // programs run for real besides nft
	// onRun, when set, sees each faked command line before it returns.
	onRun func(cmdline string, args []string)
	// answers are the outputs of faked command lines, by exact line.
	answers map[string]string
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{fail: map[string]int{}, real: map[string]bool{"nft": true}}
}

// failNext makes the next n runs of commands starting with prefix fail.
func (f *fakeRunner) failNext(prefix string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[prefix] = n
}

// Run implements runner.
func (f *fakeRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	f.mu.Lock()
	f.calls = append(f.calls, line)
	var failing bool
	for prefix, n := range f.fail {
		if n > 0 && strings.HasPrefix(line, prefix) {
			f.fail[prefix] = n - 1
			failing = true
		}
	}
	real, onRun, answer := f.real[name], f.onRun, f.answers[line]
	f.mu.Unlock()
	if failing {
		return []byte("fake failure of " + line), errors.New("exit status 1")
	}
	if real {
		return execRunner{}.Run(ctx, stdin, name, args...)
	}
	if onRun != nil {
		onRun(line, args)
	}
	if answer != "" {
		return []byte(answer), nil
	}
	return nil, nil
}

// answer makes the faked command line print out.
func (f *fakeRunner) answer(line, out string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answers == nil {
		f.answers = map[string]string{}
	}
	f.answers[line] = out
}

// ran lists the command lines run so far that start with prefix.
func (f *fakeRunner) ran(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// faultyFirewall is the kernel's firewall whose next Replace can fail, and
// which counts the batches it sends.
type faultyFirewall struct {
	firewall
	mu         sync.Mutex
	failNext   error
	replaced   int
	restored   int
	restoreErr error
}

func (f *faultyFirewall) Replace(ctx context.Context, t *nft.Table) error {
	f.mu.Lock()
	err := f.failNext
	f.failNext = nil
	f.replaced++
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("firewall: netlink: %w", err)
	}
	return f.firewall.Replace(ctx, t)
}

func (f *faultyFirewall) Restore(ctx context.Context, text string, existed bool) error {
	f.mu.Lock()
	f.restored++
	err := f.restoreErr
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.firewall.Restore(ctx, text, existed)
}

// fakeWG is a WireGuard client whose devices live in memory, each tied to
// a link of its name in the test's namespace: no link, no device.
type fakeWG struct {
	mu            sync.Mutex
	devs          map[string]*wgtypes.Device
	failConfigure int // how many more ConfigureDevice calls fail
	configured    int
}

func newFakeWG() *fakeWG { return &fakeWG{devs: map[string]*wgtypes.Device{}} }

func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// Device implements wgClient.
func (f *fakeWG) Device(name string) (*wgtypes.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !linkExists(name) {
		delete(f.devs, name)
		return nil, os.ErrNotExist
	}
	d, ok := f.devs[name]
	if !ok {
		d = &wgtypes.Device{Name: name, Type: wgtypes.Userspace}
		f.devs[name] = d
	}
	c := *d
	c.Peers = slices.Clone(d.Peers)
	return &c, nil
}

// ConfigureDevice implements wgClient, as a device applies a
// configuration.
func (f *fakeWG) ConfigureDevice(name string, cfg wgtypes.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configured++
	if f.failConfigure > 0 {
		f.failConfigure--
		return fmt.Errorf("wgctrl: %s: %w", name, syscall.EIO)
	}
	if !linkExists(name) {
		return os.ErrNotExist
	}
	d, ok := f.devs[name]
	if !ok {
		d = &wgtypes.Device{Name: name, Type: wgtypes.Userspace}
		f.devs[name] = d
	}
	if cfg.PrivateKey != nil {
		d.PrivateKey, d.PublicKey = *cfg.PrivateKey, cfg.PrivateKey.PublicKey()
	}
	if cfg.ListenPort != nil {
		d.ListenPort = *cfg.ListenPort
	}
	if cfg.ReplacePeers {
		d.Peers = nil
	}
	for _, pc := range cfg.Peers {
		i := slices.IndexFunc(d.Peers, func(p wgtypes.Peer) bool { return p.PublicKey == pc.PublicKey })
		if pc.Remove {
			if i >= 0 {
				d.Peers = slices.Delete(d.Peers, i, i+1)
			}
			continue
		}
		if i < 0 {
			d.Peers = append(d.Peers, wgtypes.Peer{PublicKey: pc.PublicKey})
			i = len(d.Peers) - 1
		}
		p := &d.Peers[i]
		if pc.PresharedKey != nil {
			p.PresharedKey = *pc.PresharedKey
		}
		if pc.Endpoint != nil {
			p.Endpoint = pc.Endpoint
		}
		if pc.PersistentKeepaliveInterval != nil {
			p.PersistentKeepaliveInterval = *pc.PersistentKeepaliveInterval
		}
		if pc.ReplaceAllowedIPs {
			p.AllowedIPs = nil
		}
		p.AllowedIPs = append(p.AllowedIPs, pc.AllowedIPs...)
	}
	return nil
}

// dump describes the interface name: its link (flags and addresses) and
// the device's key, port and peers.
func (f *fakeWG) dump(name string) string {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return "no link " + name + "\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "link %s up=%v\n", name, link.Attrs().Flags&net.FlagUp != 0)
	addrs, _ := linkAddresses(name)
	for _, a := range addrs {
		fmt.Fprintf(&b, "address %s\n", a)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devs[name]
	if !ok {
		b.WriteString("device unconfigured\n")
		return b.String()
	}
	fmt.Fprintf(&b, "device key %s port %d\n", d.PrivateKey, d.ListenPort)
	var peers []string
	for _, p := range d.Peers {
		var ips []string
		for _, a := range p.AllowedIPs {
			ips = append(ips, a.String())
		}
		slices.Sort(ips)
		peers = append(peers, fmt.Sprintf("peer %s psk %s endpoint %v keepalive %s allowed %s",
			p.PublicKey, p.PresharedKey, p.Endpoint, p.PersistentKeepaliveInterval, strings.Join(ips, ",")))
	}
	slices.Sort(peers)
	b.WriteString(strings.Join(peers, "\n"))
	return b.String()
}

// liveEnv is a live applier in a fresh network namespace: real nftables
// and links there, files under a temporary root, WireGuard and programs
// faked.
type liveEnv struct {
	a    *Applier
	root string
	run  *fakeRunner
	fw   *faultyFirewall
	wg   *fakeWG
	// startFails makes the next userspace device start fail.
	startFails bool
	started    int
}

// newLive enters a fresh network namespace (see enterNetns) and returns
// an applier for it.
func newLive(t testing.TB) *liveEnv {
	t.Helper()
	enterNetns(t)
	e := &liveEnv{root: t.TempDir(), run: newFakeRunner(), wg: newFakeWG()}
	e.fw = &faultyFirewall{firewall: kernelFirewall{run: e.run}}
	e.a = &Applier{Root: e.root, Live: true, JournalDir: filepath.Join(t.TempDir(), "journal"),
		Firewall: e.fw, WG: e.wg, Run: e.run, Progress: func(s string) { t.Log(s) }}
	e.a.StartDevice = func(ctx context.Context, name string) (int, error) {
		e.started++
		if e.startFails {
			e.startFails = false
			return 0, errors.New("wireguard: userspace device did not come up")
		}
		// A veth pair stands in for the device's TUN link (this kernel
		// may have no dummy links either); deleting one end deletes both.
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
			return 0, fmt.Errorf("stand-in link %s: %w", name, err)
		}
		return 0, nil
	}
	return e
}

// dump is everything an apply may change: the files under the root, the
// namespace's whole ruleset and the WireGuard interface.
func (e *liveEnv) dump(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v: %s", err, out)
	}
	return "## files\n" + testenv.TreeDump(t, e.root) + "## nft list ruleset\n" + string(out) +
		"## wireguard\n" + e.wg.dump(steps.WireGuardName) + "\n"
}

// mustApply applies p and fails the test if that fails.
func mustApply(t testing.TB, a *Applier, p *steps.Plan) *Result {
	t.Helper()
	res, err := a.Apply(context.Background(), p)
	if err != nil {
		t.Fatalf("apply %s: %v", p.Node, err)
	}
	return res
}
