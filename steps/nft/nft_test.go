package nft_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"ztwizard/steps/nft"
	"ztwizard/steps/nft/nfttest"
	"ztwizard/steps/testenv"
)

func net(s string) nft.Value  { return nft.Net(netip.MustParsePrefix(s)) }
func addr(s string) nft.Value { return nft.Addr(netip.MustParseAddr(s)) }

// sample uses every kind of set, match and chain the model has, with the
// edge cases nft encodes specially: networks reaching the top of the
// address space, adjacent networks, empty sets, wrapped element lines,
// prefixes on and off byte boundaries.
func sample() *nft.Table {
	var ports []nft.Element
	for _, p := range []nft.Port{9000, 443, 80, 22, 8080, 1, 65535, 3000, 25, 110, 993} {
		ports = append(ports, nft.Element{p})
	}
	limit := &nft.Limit{Rate: 10, Per: nft.Second}
	return &nft.Table{
		Sets: []nft.Set{
			{Name: "admin_v4", Key: []nft.Type{nft.TypeIPv4Addr}, Interval: true, Elements: []nft.Element{
				{net("192.168.10.0/24")}, {net("10.0.0.128/25")}, {net("10.0.0.0/25")}, {addr("172.16.0.1")}, {net("255.255.255.0/24")},
			}},
			{Name: "admin_v6", Key: []nft.Type{nft.TypeIPv6Addr}, Interval: true, Elements: []nft.Element{
				{net("fe80::/10")}, {net("2001:db8::/32")}, {net("fd00::1/128")},
			}},
			{Name: "any_v4", Key: []nft.Type{nft.TypeIPv4Addr}, Interval: true, Elements: []nft.Element{{net("0.0.0.0/0")}}},
			{Name: "any_v6", Key: []nft.Type{nft.TypeIPv6Addr}, Interval: true, Elements: []nft.Element{{net("::/0")}}},
			{Name: "none_v6", Key: []nft.Type{nft.TypeIPv6Addr}, Interval: true},
			{Name: "public_tcp", Key: []nft.Type{nft.TypeInetService}, Elements: ports},
			{Name: "hosts", Key: []nft.Type{nft.TypeIPv4Addr}, Elements: []nft.Element{{addr("10.1.0.9")}, {addr("10.1.0.3")}, {addr("9.9.9.9")}}},
			{Name: "db_clients", Key: []nft.Type{nft.TypeIPv4Addr, nft.TypeInetService}, Elements: []nft.Element{
				{addr("10.100.0.2"), nft.Port(3306)}, {addr("10.100.0.3"), nft.Port(5432)}, {addr("10.100.0.4"), nft.Port(3306)},
				{addr("10.100.1.2"), nft.Port(3306)}, {addr("10.100.0.2"), nft.Port(5432)}, {addr("9.1.1.1"), nft.Port(1)},
			}},
			{Name: "db_clients_v6", Key: []nft.Type{nft.TypeIPv6Addr, nft.TypeInetService}, Elements: []nft.Element{
				{addr("fd00::2"), nft.Port(3306)}, {addr("fd00::1:2"), nft.Port(80)},
			}},
		},
		Chains: []nft.Chain{
			{Name: "input", Hook: nft.Input, Policy: nft.Drop, Rules: []nft.Rule{
				{Match: []nft.Match{nft.Is(nft.IifName, nft.Iface("lo"))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.CtState, nft.StateEstablished|nft.StateRelated)}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.CtState, nft.StateInvalid)}, Verdict: nft.Drop},
				{Match: []nft.Match{nft.Is(nft.UDPDport, nft.Port(51820))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.InSet("admin_v4", nft.IPSaddr), nft.Is(nft.TCPDport, nft.Port(22))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.InSet("admin_v6", nft.IP6Saddr), nft.Is(nft.TCPDport, nft.Port(22))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.IifName, nft.Iface("zt0")), nft.Is(nft.IPSaddr, net("10.100.0.0/24")), nft.Is(nft.TCPDport, nft.Port(22))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.IPSaddr, net("10.96.0.0/12"))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.IPSaddr, net("0.0.0.0/0"))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.IP6Saddr, net("fd00::/66"))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.IP6Saddr, net("fd00::/64"))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.IP6Saddr, addr("fd00::7"))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.InSet("public_tcp", nft.TCPDport)}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.InSet("hosts", nft.IPSaddr)}, Verdict: nft.Drop},
				{Match: []nft.Match{nft.Is(nft.IifName, nft.Iface("zt0")), nft.InSet("db_clients", nft.IPSaddr, nft.TCPDport)}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.IifName, nft.Iface("zt0")), nft.InSet("db_clients_v6", nft.IP6Saddr, nft.TCPDport)}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.In(nft.ICMPType, nft.ICMPTimeExceeded, nft.ICMPEchoRequest, nft.ICMPDestinationUnreachable)}, Limit: limit, Verdict: nft.Accept},
				{Match: []nft.Match{nft.In(nft.ICMPType, nft.ICMPEchoReply)}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.ICMPType, nft.ICMPEchoRequest)}, Limit: &nft.Limit{Rate: 10, Per: nft.Second, Over: true}, Verdict: nft.Drop},
				{Match: []nft.Match{nft.In(nft.ICMPv6Type, nft.ICMPv6NDNeighborAdvert, nft.ICMPv6NDRouterSolicit, nft.ICMPv6(200))}, Verdict: nft.Accept},
				{Match: []nft.Match{nft.Is(nft.ICMPv6Type, nft.ICMPv6EchoRequest)}, Limit: &nft.Limit{Rate: 3, Per: nft.Minute}, Verdict: nft.Accept},
			}},
			{Name: "forward", Hook: nft.Forward, Priority: -10, Policy: nft.Drop},
			{Name: "output", Hook: nft.Output, Priority: 55, Policy: nft.Accept},
			{Name: "late", Hook: nft.Output, Priority: 100, Policy: nft.Accept},
		},
	}
}

func TestNftTextMatchesKernel(t *testing.T) {
	tbl := sample()
	if err := tbl.Validate(); err != nil {
		t.Fatal(err)
	}
	a, b := nfttest.NewNS(t), nfttest.NewNS(t)
	if err := tbl.Apply(a.Conn()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	b.Nft(tbl.Script(), "-f", "-")
	viaNetlink, viaScript := a.List(nft.Family, nft.TableName), b.List(nft.Family, nft.TableName)
	if viaNetlink != viaScript {
		t.Errorf("netlink and nft -f differ:\n--- netlink\n%s\n--- nft -f\n%s", viaNetlink, viaScript)
	}
	if got := tbl.Text(); got != viaScript {
		t.Errorf("Text() differs from nft list:\n--- Text\n%s\n--- nft list\n%s", got, viaScript)
	}
	// The listing could agree while the expressions differ (a /24 loaded
	// whole and masked lists as the same /24); the kernel's own view must
	// agree too.
	if ka, kb := a.Netlink(nft.Family, nft.TableName), b.Netlink(nft.Family, nft.TableName); ka != kb {
		t.Errorf("kernel state differs:\n--- netlink\n%s\n--- nft -f\n%s", ka, kb)
	}
}

func TestNftScriptCheck(t *testing.T) {
	ns := nfttest.NewNS(t)
	if err := ns.Check(sample().Script()); err != nil {
		t.Fatalf("nft -c rejects the script: %v\n%s", err, sample().Script())
	}
	if err := ns.Check("table inet ztwizard { chain input { tcp dport @missing accept } }"); err == nil {
		t.Fatal("nft -c accepts a broken script; the check proves nothing")
	}
}

const otherTable = `table inet other {
	set blocked {
		type ipv4_addr
		elements = { 192.0.2.1, 198.51.100.7 }
	}

	chain c {
		type filter hook input priority -5; policy accept;
		ip saddr @blocked counter drop
	}
}
`

func TestNftOtherTablesUntouched(t *testing.T) {
	ns := nfttest.NewNS(t)
	ns.Nft(otherTable, "-f", "-")
	before := ns.List("inet", "other")
	tbl := sample()
	for i := range 2 {
		if err := tbl.Apply(ns.Conn()); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
		if got := ns.List("inet", "other"); got != before {
			t.Fatalf("Apply #%d changed inet other:\n--- before\n%s\n--- after\n%s", i+1, before, got)
		}
	}
	ruleset := ns.Ruleset()
	if n := strings.Count(ruleset, "table inet ztwizard {"); n != 1 {
		t.Fatalf("%d copies of inet ztwizard after two applies", n)
	}
	if got := ns.List(nft.Family, nft.TableName); got != tbl.Text() {
		t.Fatalf("after two applies the table is not Text():\n%s", got)
	}
	handles := ns.Nft("", "-a", "list", "table", nft.Family, nft.TableName)
	listed := strings.Count(handles, "# handle") - strings.Count(handles, "{ # handle")
	if listed != tbl.RuleCount() {
		t.Fatalf("kernel has %d rules, RuleCount says %d", listed, tbl.RuleCount())
	}
	if err := nft.Delete(ns.Conn()); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := ns.Ruleset(); got != before {
		t.Fatalf("after Delete the ruleset is not just inet other:\n%s", got)
	}
	if err := nft.Delete(ns.Conn()); err != nil {
		t.Fatalf("Delete without a table: %v", err)
	}
}

func TestNftValidate(t *testing.T) {
	v4 := []nft.Type{nft.TypeIPv4Addr}
	chain := func(r nft.Rule) nft.Table {
		return nft.Table{
			Sets:   []nft.Set{{Name: "s", Key: v4}},
			Chains: []nft.Chain{{Name: "input", Hook: nft.Input, Policy: nft.Drop, Rules: []nft.Rule{r}}},
		}
	}
	for _, tc := range []struct {
		name string
		tbl  nft.Table
		want string // part of the error; "" means valid
	}{
		{"ok", chain(nft.Rule{Match: []nft.Match{nft.InSet("s", nft.IPSaddr)}, Verdict: nft.Accept}), ""},
		{"unknown set", chain(nft.Rule{Match: []nft.Match{nft.InSet("t", nft.IPSaddr)}, Verdict: nft.Accept}), "unknown set @t"},
		{"set of other type", chain(nft.Rule{Match: []nft.Match{nft.InSet("s", nft.IP6Saddr)}, Verdict: nft.Accept}), "holds ipv4_addr"},
		{"value of other type", chain(nft.Rule{Match: []nft.Match{nft.Is(nft.TCPDport, addr("10.0.0.1"))}, Verdict: nft.Accept}), "want inet_service"},
		{"v6 net on ip saddr", chain(nft.Rule{Match: []nft.Match{nft.Is(nft.IPSaddr, net("fd00::/8"))}, Verdict: nft.Accept}), "want ipv4_addr"},
		{"host bits", chain(nft.Rule{Match: []nft.Match{nft.Is(nft.IPSaddr, nft.Net(netip.MustParsePrefix("10.0.0.1/24")))}, Verdict: nft.Accept}), "host bits"},
		{"no verdict", chain(nft.Rule{Match: []nft.Match{nft.InSet("s", nft.IPSaddr)}}), "verdict"},
		{"long iface", chain(nft.Rule{Match: []nft.Match{nft.Is(nft.IifName, nft.Iface("a-very-long-interface"))}, Verdict: nft.Accept}), "interface name"},
		{"wildcard iface", chain(nft.Rule{Match: []nft.Match{nft.Is(nft.IifName, nft.Iface("zt*"))}, Verdict: nft.Accept}), "interface name"},
		{"concat without set", chain(nft.Rule{Match: []nft.Match{{Fields: []nft.Field{nft.IPSaddr, nft.TCPDport}, Value: nft.Port(1)}}, Verdict: nft.Accept}), "concatenation"},
		{"two operands", chain(nft.Rule{Match: []nft.Match{{Fields: []nft.Field{nft.TCPDport}, Value: nft.Port(1), Set: "s"}}, Verdict: nft.Accept}), "exactly one"},
		{"duplicate in inline set", chain(nft.Rule{Match: []nft.Match{nft.In(nft.TCPDport, nft.Port(1), nft.Port(1))}, Verdict: nft.Accept}), "twice"},
		{"bad limit", chain(nft.Rule{Match: []nft.Match{nft.Is(nft.TCPDport, nft.Port(1))}, Limit: &nft.Limit{Rate: 0, Per: nft.Second}, Verdict: nft.Accept}), "limit"},
		{"overlap", nft.Table{Sets: []nft.Set{{Name: "s", Key: v4, Interval: true, Elements: []nft.Element{{net("10.0.0.0/8")}, {net("10.1.0.0/16")}}}}}, "overlap"},
		{"net outside interval set", nft.Table{Sets: []nft.Set{{Name: "s", Key: v4, Elements: []nft.Element{{net("10.0.0.0/8")}}}}}, "interval set"},
		{"duplicate element", nft.Table{Sets: []nft.Set{{Name: "s", Key: v4, Elements: []nft.Element{{addr("10.0.0.1")}, {addr("10.0.0.1")}}}}}, "twice"},
		{"element arity", nft.Table{Sets: []nft.Set{{Name: "s", Key: []nft.Type{nft.TypeIPv4Addr, nft.TypeInetService}, Elements: []nft.Element{{addr("10.0.0.1")}}}}}, "fields"},
		{"interval concat", nft.Table{Sets: []nft.Set{{Name: "s", Key: []nft.Type{nft.TypeIPv4Addr, nft.TypeInetService}, Interval: true}}}, "not supported"},
		{"ifname set", nft.Table{Sets: []nft.Set{{Name: "s", Key: []nft.Type{nft.TypeIfName}}}}, "not supported"},
		{"bad set name", nft.Table{Sets: []nft.Set{{Name: "a b", Key: v4}}}, "bad name"},
		{"set twice", nft.Table{Sets: []nft.Set{{Name: "s", Key: v4}, {Name: "s", Key: v4}}}, "twice"},
		{"chain twice", nft.Table{Chains: []nft.Chain{{Name: "c", Hook: nft.Input, Policy: nft.Drop}, {Name: "c", Hook: nft.Output, Policy: nft.Drop}}}, "twice"},
		{"no hook", nft.Table{Chains: []nft.Chain{{Name: "c", Policy: nft.Drop}}}, "hook"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tbl.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestNftApplyRejectsInvalid(t *testing.T) {
	tbl := &nft.Table{Chains: []nft.Chain{{Name: "c", Policy: nft.Drop}}}
	// Validation fails before any netlink traffic, so no connection is used.
	err := tbl.Apply(nil)
	if err == nil || !strings.HasPrefix(err.Error(), "nft: apply inet ztwizard: ") {
		t.Fatalf("Apply = %v", err)
	}
	if errors.Unwrap(err) == nil {
		t.Fatalf("Apply error does not wrap its cause: %v", err)
	}
}

func TestNftParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want nft.Limit
		ok   bool
	}{
		{"10/second", nft.Limit{Rate: 10, Per: nft.Second}, true},
		{"600/minute", nft.Limit{Rate: 600, Per: nft.Minute}, true},
		{"1/hour", nft.Limit{Rate: 1, Per: nft.Hour}, true},
		{"5/day", nft.Limit{Rate: 5, Per: nft.Day}, true},
		{"0/second", nft.Limit{}, false},
		{"10/week", nft.Limit{}, false},
		{"10", nft.Limit{}, false},
		{"ten/second", nft.Limit{}, false},
	} {
		got, err := nft.ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != "limit rate "+tc.in {
			t.Errorf("%v prints as %q", got, got.String())
		}
	}
}

func TestNftRuleCount(t *testing.T) {
	if got := sample().RuleCount(); got != 21 {
		t.Fatalf("RuleCount = %d, want 21", got)
	}
	if got := (&nft.Table{}).RuleCount(); got != 0 {
		t.Fatalf("empty table RuleCount = %d", got)
	}
}

// TestNftApplyRefused: a batch the kernel refuses changes nothing and says
// which message the kernel refused and why. The kernel's own refusal: an
// inet ztwizard table owned by another netlink socket (flags owner), which
// no other socket may replace.
func TestNftApplyRefused(t *testing.T) {
	ns := nfttest.NewNS(t)
	owner := ownTable(t, ns.Conn().NetNS)
	defer owner.Close()
	before := ns.Ruleset()
	if !strings.Contains(before, "table inet ztwizard") {
		t.Fatalf("the owned table is not there:\n%s", before)
	}
	err := sample().Apply(ns.Conn())
	if err == nil {
		t.Fatal("Apply replaced a table another socket owns")
	}
	if !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "add table") {
		t.Fatalf("Apply = %v, want the kernel's EPERM for the add table message", err)
	}
	if got := ns.Ruleset(); got != before {
		t.Fatalf("a refused batch changed the ruleset:\n--- before\n%s\n--- after\n%s", before, got)
	}
	if err := nft.Delete(ns.Conn()); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("Delete of the owned table = %v, want EPERM", err)
	}
}

// ownTable makes an empty inet ztwizard table owned by a netlink socket of
// its own in the namespace netns, and returns that socket: the table lasts
// while it is open. (google/nftables sends no table flags.)
func ownTable(t *testing.T, netns int) *netlink.Conn {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		t.Fatal(err)
	}
	nfgen := func(family byte, resID uint16) []byte { return []byte{family, 0, byte(resID >> 8), byte(resID)} }
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: []byte(nft.TableName + "\x00")},
		{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, 2}}, // NFT_TABLE_F_OWNER,
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_BEGIN, Flags: netlink.Request}, Data: nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
		{Header: netlink.Header{Type: unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE, Flags: netlink.Request | netlink.Acknowledge | netlink.Create},
			Data: append(nfgen(unix.NFPROTO_INET, 0), attrs...)},
		{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_END, Flags: netlink.Request}, Data: nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
	}
	if _, err := c.SendMessages(msgs); err != nil {
		c.Close()
		t.Fatal(err)
	}
	if _, err := c.Receive(); err != nil {
		c.Close()
		t.Fatalf("make the owned table: %v", err)
	}
	return c
}

// TestNftFingerprint: TableExists follows the table; the fingerprint is
// stable while the table is, blind to other tables, and changes with an
// element added by hand, with a rule deleted, and with the table replaced
// by the same one.
func TestNftFingerprint(t *testing.T) {
	ns := nfttest.NewNS(t)
	fp := func() string {
		t.Helper()
		s, err := nft.Fingerprint(ns.Conn())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exists := func() bool {
		t.Helper()
		ok, err := nft.TableExists(ns.Conn())
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if got := fp(); got != "" {
		t.Fatalf("fingerprint without a table: %q", got)
	}
	if exists() {
		t.Fatal("TableExists without a table")
	}
	tbl := sample()
	if err := tbl.Apply(ns.Conn()); err != nil {
		t.Fatal(err)
	}
	if !exists() {
		t.Fatal("TableExists: false with the table applied")
	}
	first := fp()
	if first == "" || fp() != first {
		t.Fatalf("fingerprint of the same table: %q, then %q", first, fp())
	}
	gen, err := nft.Generation(ns.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ns.Nft(otherTable, "-f", "-")
	if got := fp(); got != first {
		t.Fatal("another table changed the fingerprint")
	}
	if now, err := nft.Generation(ns.Conn()); err != nil || now == gen {
		t.Fatalf("generation %d after a batch, %d before (%v)", now, gen, err)
	}
	ns.Nft("add element inet ztwizard hosts { 10.9.9.9 }\n", "-f", "-")
	added := fp()
	if added == first {
		t.Fatal("an element added by hand left the fingerprint as it was")
	}
	ns.Nft("delete element inet ztwizard hosts { 10.9.9.9 }\n", "-f", "-")
	if got := fp(); got != first {
		t.Fatal("the fingerprint did not come back with the element removed")
	}
	handles := ns.Nft("", "-a", "list", "chain", nft.Family, nft.TableName, "input")
	i := strings.LastIndex(handles, "# handle ")
	ns.Nft("", "delete", "rule", nft.Family, nft.TableName, "input", "handle", strings.Fields(handles[i+len("# handle "):])[0])
	if got := fp(); got == first || got == added {
		t.Fatal("a deleted rule left the fingerprint as it was")
	}
	if err := tbl.Apply(ns.Conn()); err != nil {
		t.Fatal(err)
	}
	if got := fp(); got == first || got == "" {
		t.Fatal("the table replaced by the same one kept its fingerprint: handles are new")
	}
}

// TestNftApplyLargeSet: a set of 20,000 elements, more than one netlink
// attribute can hold (its length is 16 bits) in a batch larger than a
// socket's default send buffer, goes through and lists as Text.
func TestNftApplyLargeSet(t *testing.T) {
	ns := nfttest.NewNS(t)
	tbl := sample()
	i := slices.IndexFunc(tbl.Sets, func(s nft.Set) bool { return s.Name == "db_clients" })
	var els []nft.Element
	for n := range 20000 {
		els = append(els, nft.Element{nft.Addr(netip.AddrFrom4([4]byte{10, byte(100 + n>>16), byte(n >> 8), byte(n)})), nft.Port(3306)})
	}
	tbl.Sets[i].Elements = els
	if err := tbl.Apply(ns.Conn()); err != nil {
		t.Fatal(err)
	}
	if got := ns.List(nft.Family, nft.TableName); got != tbl.Text() {
		t.Fatalf("the kernel's table differs from Text():\n%s", testenv.DiffLines(tbl.Text(), got))
	}
}
