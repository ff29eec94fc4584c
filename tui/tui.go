// Package tui is ztwizard's wizard: it walks an admin through the site step
// by step (Welcome, Certificate authority, WireGuard mesh and nodes, mTLS
// services and client identities, SSH users and principals, Firewall,
// Databases, Review, Finish) and fills a steps.Site, checking every answer
// with the same rules as the site loader.
//
// On a terminal it is a full-screen bubbletea program; without one (or when
// asked) it puts the same steps as plain line prompts, huh's accessible
// mode, so it works over a serial console and in scripts. The answers are
// kept as a draft in the state folder as they are given. What the Finish
// step does with the site (save, render, apply, bake, export, write the
// Ansible push) it asks of
// an Actions.
package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"ztwizard/steps"
	"ztwizard/steps/authority"
)

// firstFrameFPS is the renderer's frame rate, bubbletea's highest.
const firstFrameFPS = 120

// ErrNotAvailable is wrapped by an Actions error for something this
// ztwizard cannot do yet; the wizard shows the message as it is.
var ErrNotAvailable = errors.New("not available yet")

// ErrLocked is wrapped by Actions.Unlock when the CA keys in the state
// folder are encrypted and the job's passphrase is missing or wrong.
var ErrLocked = errors.New("the CA keys are locked")

// Job is what the Finish step's actions work with: the site and where its
// secrets live.
type Job struct {
	Site       *steps.Site
	StateDir   string
	Passphrase []byte // encrypts the CA keys at rest; empty: none
}

// Exported is what an export wrote.
type Exported struct {
	Files []string // the files written, for the admin to pick up
	// WireGuard is a node's wg-quick configuration with its key inline,
	// shown as a QR code for mobile WireGuard apps; empty for clients.
	WireGuard []byte
}

// Actions is what the wizard can have done with the site. Nothing here may
// touch the host except Apply, which runs only after the admin confirms.
type Actions interface {
	// Save writes the site file.
	Save(site *steps.Site, path string) error
	// Render writes a node's files into a folder, as they would land
	// under /; it returns a one-line account of what it wrote.
	Render(ctx context.Context, job Job, node, dir string) (string, error)
	// Review tells, as text, what applying the node's plan would change.
	Review(ctx context.Context, job Job, node string) (string, error)
	// Apply applies the node's plan to this host, reporting each step; the
	// firewall and sshd changes roll back unless confirmed by deadline.
	Apply(ctx context.Context, job Job, node string, progress func(step string)) (deadline time.Time, err error)
	// Confirm keeps the pending apply.
	Confirm(ctx context.Context, job Job) error
	// Bake builds a bootable image for the node (or a golden image without
	// secrets) as o says, reporting each stage; it stops, writing nothing,
	// when ctx is cancelled.
	Bake(ctx context.Context, job Job, node string, o BakeOptions, progress func(stage string, done, total int)) error
	// Unlock tells whether the job's passphrase opens the CA keys in the
	// state folder: nil when it does or there are none yet, an error
	// wrapping ErrLocked when they are encrypted and it is missing or
	// wrong. It changes nothing.
	Unlock(ctx context.Context, job Job) error
	// Keys makes the CA keys in the state folder (or opens them), encrypted
	// with the job's passphrase when it has one; it returns a one-line
	// account.
	Keys(ctx context.Context, job Job) (string, error)
	// Export writes a node's ("node") or a client's ("client")
	// credentials into dir: wg-quick file, or PKCS#12 bundle.
	Export(ctx context.Context, job Job, what, name, dir string) (Exported, error)
	// Ansible writes the inventory, playbook and known_hosts that push the
	// site saved in o.SitePath to every node with Ansible, as `ztwizard
	// ansible` does; it returns the files written.
	Ansible(ctx context.Context, job Job, o AnsibleOptions) (Exported, error)
}

// AnsibleOptions are the Ansible push form's choices, those of `ztwizard
// ansible`.
type AnsibleOptions struct {
	Dir      string // the folder for the inventory, playbook and known_hosts
	SitePath string // the saved site file the playbook reads (-c)
	User     string // the account the admin logs in as on the nodes; empty: root
	Identity string // the admin's private key; empty: ~/.ssh/id_ed25519
}

// BakeOptions are the bake form's choices, those of `ztwizard bake`.
type BakeOptions struct {
	Golden  bool     // a golden image: no secrets, a node's identity from its seed
	Out     string   // the image file
	Size    string   // the disk's size: 2G, 1536M; empty: 2G
	Address string   // a fixed address with its prefix for the Ethernet interfaces; empty: DHCP
	Gateway string   // the default gateway, with Address
	DNS     []string // name servers, with Address
}

// Options is what the wizard starts from.
type Options struct {
	// Site is the site to start from (a file's, the example, or an empty
	// one); nil asks the admin: an empty site or the example.
	Site       *steps.Site
	SitePath   string // the site file: where Save writes by default
	Source     string // where Site came from, for the header ("site.yaml", "the example")
	Loaded     bool   // Site is an existing site being edited: show every step's problems at once
	StateDir   string // the state folder; the draft is kept there
	Passphrase []byte // the CA passphrase, if given
	Actions    Actions
	In         io.Reader
	Out        io.Writer
	// Accessible puts the steps as plain line prompts, read from In.
	Accessible bool
	// Resume answers the offer of a draft without asking (accessible mode
	// with input that is not a terminal): "" asks, "yes" or "no".
	Resume string
	Now    func() time.Time
	// ThisNode names the site's node this host is (by its host name or an
	// endpoint address), "" when none; nil: never known.
	ThisNode func(*steps.Site) string

	askStart bool // no site was given: ask for an empty one or the example
}

// Run runs the wizard until the admin leaves it. The answers stay in the
// state folder's draft until the site is saved.
func Run(ctx context.Context, o Options) error {
	if o.Site == nil {
		o.Site, o.askStart = steps.Example(), true
		if o.Source == "" {
			o.Source = "the example site"
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Accessible {
		return runAccessible(ctx, o)
	}
	// The renderer measures what it draws with go-runewidth, whose width
	// table (2 MB) is built at the first rune above U+0300: build it on
	// another core while the model is made, not in the first frame.
	go ansi.StringWidthWc("─")
	m := newModel(ctx, o)
	// The renderer draws on its ticks: at 120 frames a second the first
	// frame is out 8 ms after the start instead of 17, and typing shows as
	// soon.
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(o.In), tea.WithOutput(o.Out), tea.WithFPS(firstFrameFPS))
	_, err := p.Run()
	note := m.finish()
	if err != nil && !errors.Is(err, tea.ErrInterrupted) && !errors.Is(err, tea.ErrProgramKilled) {
		return fmt.Errorf("wizard: %w", err)
	}
	if note != "" {
		fmt.Fprintln(o.Out, note)
	}
	return nil
}

// Empty is a site with nothing filled in but the defaults, for a wizard
// that starts from scratch.
func Empty() *steps.Site {
	s := &steps.Site{Version: steps.Version}
	s.SetDefaults()
	return s
}

// Summary is the site at a glance, with its validation result.
func Summary(site *steps.Site, name, stateDir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ztwizard — site %q (%s)\nstate folder: %s\n\n", site.Site, name, stateDir)
	b.WriteString(overview(site, recorded(stateDir)))
	if err := site.Validate(); err != nil {
		fmt.Fprintf(&b, "\nproblems:\n%v\n", err)
	} else {
		b.WriteString("\nthe site is valid.\n")
	}
	return b.String()
}

// recorded is the state folder's record of mesh addresses; none when it
// cannot be read.
func recorded(stateDir string) map[string]netip.Addr {
	rec, _ := authority.RecordedAddresses(stateDir)
	return rec
}

// overview lists the site's parts, one per line; record is the state
// folder's record of mesh addresses.
func overview(site *steps.Site, record map[string]netip.Addr) string {
	site = site.Clone()
	site.SetDefaults()
	var b strings.Builder
	fmt.Fprintf(&b, "CA          %s, %s, valid %s, leaves %s\n", site.CA.Subject.CommonName, site.CA.Key, site.CA.Validity, site.CA.CertValidity)
	fmt.Fprintf(&b, "mesh        %s, port %d\n", site.WireGuard.Network, site.WireGuard.ListenPort)
	addrs, _ := site.Addresses(record)
	for _, n := range site.Nodes {
		fmt.Fprintf(&b, "  node      %-12s %-15s peers %s\n", n.Name, addrs[n.Name], strings.Join(links(site, n.Name, n.Peers), ", "))
	}
	for _, s := range site.Services {
		fmt.Fprintf(&b, "service     %s on %s: https://%s:%d -> %s, allow %s\n", s.Name, s.Node, s.ServerName, s.Listen, s.Upstream, strings.Join(s.Allow, ", "))
	}
	for _, d := range site.Databases {
		fmt.Fprintf(&b, "database    %s (%s) on %s:%d, clients %s\n", d.Name, d.Engine, d.Node, d.Port, strings.Join(d.Clients, ", "))
	}
	for _, c := range site.Clients {
		fmt.Fprintf(&b, "client      %s (%s)\n", c.Name, c.Organization)
	}
	for _, u := range site.SSH.Users {
		fmt.Fprintf(&b, "ssh user    %s as %s, %s certificates\n", u.Name, strings.Join(u.Principals, ", "), site.SSH.CertValidity)
	}
	fmt.Fprintf(&b, "firewall    drop by default; public tcp %v; ssh from %s and the mesh\n", site.Firewall.PublicTCP, strings.Join(site.SSH.AdminCIDRs, ", "))
	return b.String()
}
