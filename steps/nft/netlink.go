package nft

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
)

// Apply replaces the inet ztwizard table in the kernel with t, in one
// netlink batch: it declares the table (so deleting it cannot fail),
// deletes it, and adds the table, its sets with their elements, its chains
// and their rules. The kernel applies the batch whole or not at all, and no
// other table is touched. c says where: the batch goes to the network
// namespace of its NetNS (0: this process's); nothing is queued on it.
func (t *Table) Apply(c *nftables.Conn) error {
	if err := t.validate(); err != nil {
		return fmt.Errorf("nft: apply %s %s: %w", Family, TableName, err)
	}
	msgs, err := t.batch()
	if err != nil {
		return fmt.Errorf("nft: apply %s %s: %w", Family, TableName, err)
	}
	if err := send(c.NetNS, msgs); err != nil {
		return fmt.Errorf("nft: apply %s %s: %w", Family, TableName, err)
	}
	return nil
}

// batch is the netlink batch that replaces the table with t.
func (t *Table) batch() ([]netlink.Message, error) {
	r := newRecorder()
	c := r.c
	b := batch{c: c, sets: map[string]*nftables.Set{}}
	b.table = c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
	c.DelTable(b.table)
	c.AddTable(b.table)
	for i := range t.Sets {
		if err := b.addSet(&t.Sets[i]); err != nil {
			return nil, err
		}
	}
	for i := range t.Chains {
		if err := b.addChain(&t.Chains[i]); err != nil {
			return nil, err
		}
	}
	return r.flush()
}

// Delete removes the inet ztwizard table, if there is one, in one batch,
// in the network namespace of c's NetNS (0: this process's). No other
// table is touched.
func Delete(c *nftables.Conn) error {
	r := newRecorder()
	tbl := r.c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
	r.c.DelTable(tbl)
	msgs, err := r.flush()
	if err == nil {
		err = send(c.NetNS, msgs)
	}
	if err != nil {
		return fmt.Errorf("nft: delete %s %s: %w", Family, TableName, err)
	}
	return nil
}

// batch queues one table's messages on a connection.
type batch struct {
	c      *nftables.Conn
	table  *nftables.Table
	sets   map[string]*nftables.Set
	lastID uint32
}

// setID numbers the batch's sets. IDs only need to be unique within one
// batch; google/nftables would take them from a package counter that it
// updates without a lock, a data race when two Conns add sets at once.
func (b *batch) setID() uint32 {
	b.lastID++
	return b.lastID
}

var datatypes = map[Type]nftables.SetDatatype{
	TypeIPv4Addr:    nftables.TypeIPAddr,
	TypeIPv6Addr:    nftables.TypeIP6Addr,
	TypeInetService: nftables.TypeInetService,
	TypeICMPType:    nftables.TypeICMPType,
	TypeICMPv6Type:  nftables.TypeICMP6Type,
	TypeIfName:      nftables.TypeIFName,
	TypeCtState:     nftables.TypeCTState,
}

func (b *batch) addSet(s *Set) error {
	key := datatypes[s.Key[0]]
	if len(s.Key) > 1 {
		types := make([]nftables.SetDatatype, len(s.Key))
		for i, k := range s.Key {
			types[i] = datatypes[k]
		}
		var err error
		if key, err = nftables.ConcatSetType(types...); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	ns := &nftables.Set{Table: b.table, ID: b.setID(), Name: s.Name, KeyType: key, Interval: s.Interval}
	var elems []nftables.SetElement
	if s.Interval {
		elems = intervalElements(s)
	} else {
		// The keys of all elements in one buffer, in the order nft
		// lists them: each field padded to 32 bits in a concatenation.
		elems = make([]nftables.SetElement, 0, len(s.Elements))
		buf := make([]byte, 0, len(s.Elements)*4*len(s.Key))
		for _, i := range s.order() {
			start := len(buf)
			for _, v := range s.Elements[i] {
				at := len(buf)
				buf = v.appendBytes(buf)
				if len(s.Key) > 1 {
					for (len(buf)-at)%4 != 0 {
						buf = append(buf, 0)
					}
				}
			}
			elems = append(elems, nftables.SetElement{Key: buf[start:len(buf):len(buf)]})
		}
	}
	// One message carries the elements in one attribute, whose length
	// is 16 bits: a large set goes in several messages, as nft sends it.
	first := elems[:min(len(elems), elemsPerMessage)]
	if err := b.c.AddSet(ns, first); err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	for rest := elems[len(first):]; len(rest) > 0; {
		n := min(len(rest), elemsPerMessage)
		if err := b.c.SetAddElements(ns, rest[:n]); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		rest = rest[n:]
	}
	b.sets[s.Name] = ns
	return nil
}

// elemsPerMessage keeps a message's elements under 64 KiB: an element of
// the largest key (IPv6 address and port, an interval's flags) takes
// under 64 bytes.
const elemsPerMessage = 1000

// intervalElements encodes networks as nft does: a start element and an
// end element (the first address past the network) for each, the end left
// out when the network reaches the top of the address space, and an end
// element at zero first when the first network does not start there.
func intervalElements(s *Set) []nftables.SetElement {
	rs := s.ranges()
	var out []nftables.SetElement
	if len(rs) > 0 && !isZero(rs[0].lo) {
		out = append(out, nftables.SetElement{Key: make([]byte, len(rs[0].lo)), IntervalEnd: true})
	}
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: r.lo})
		if end, ok := next(r.hi); ok {
			out = append(out, nftables.SetElement{Key: end, IntervalEnd: true})
		}
	}
	return out
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// next returns b+1 as a big-endian number, and false when it overflows.
func next(b []byte) ([]byte, bool) {
	out := append([]byte(nil), b...)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

var hooks = map[Hook]*nftables.ChainHook{
	Input:   nftables.ChainHookInput,
	Forward: nftables.ChainHookForward,
	Output:  nftables.ChainHookOutput,
}

func (b *batch) addChain(c *Chain) error {
	policy := nftables.ChainPolicyAccept
	if c.Policy == Drop {
		policy = nftables.ChainPolicyDrop
	}
	ch := b.c.AddChain(&nftables.Chain{
		Name:     c.Name,
		Table:    b.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  hooks[c.Hook],
		Priority: nftables.ChainPriorityRef(nftables.ChainPriority(c.Priority)),
		Policy:   &policy,
	})
	for i, r := range c.Rules {
		exprs, err := b.ruleExprs(r)
		if err != nil {
			return fmt.Errorf("chain %s rule %d: %w", c.Name, i, err)
		}
		b.c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: exprs})
	}
	return nil
}

// ruleExprs compiles a rule to the expressions nft makes of its text, so
// that nft lists both the same. Each match loads into register 1 (and the
// registers after it, for a concatenation) after the protocol matches its
// fields depend on, which are added once per rule.
func (b *batch) ruleExprs(r Rule) ([]expr.Any, error) {
	var out []expr.Any
	var nfproto, l4proto byte
	for _, m := range r.Match {
		for _, f := range m.Fields {
			fi := f.info()
			if fi.nfproto != 0 && nfproto == 0 {
				nfproto = fi.nfproto
				out = append(out,
					&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fi.nfproto}})
			}
			if fi.l4proto != 0 && l4proto == 0 {
				l4proto = fi.l4proto
				out = append(out,
					&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fi.l4proto}})
			}
		}
		exprs, err := b.matchExprs(m)
		if err != nil {
			return nil, err
		}
		out = append(out, exprs...)
	}
	if r.Limit != nil {
		out = append(out, &expr.Limit{Type: expr.LimitTypePkts, Rate: r.Limit.Rate, Unit: expr.LimitTime(r.Limit.Per), Burst: 5, Over: r.Limit.Over})
	}
	verdict := expr.VerdictAccept
	if r.Verdict == Drop {
		verdict = expr.VerdictDrop
	}
	return append(out, &expr.Verdict{Kind: verdict}), nil
}

func (b *batch) matchExprs(m Match) ([]expr.Any, error) {
	switch {
	case m.Set != "":
		var out []expr.Any
		var words uint32 // 32-bit registers used so far
		for _, f := range m.Fields {
			size := f.info().typ.info().size
			out = append(out, load(f, register(words), size))
			words += (size + 3) / 4
		}
		s := b.sets[m.Set]
		return append(out, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}), nil
	case len(m.AnonSet) > 1:
		f := m.Fields[0]
		anon := &nftables.Set{
			Table: b.table, ID: b.setID(), Name: "__set%d", // the kernel numbers it
			Anonymous: true, Constant: true, KeyType: datatypes[f.info().typ],
		}
		var elems []nftables.SetElement
		for _, v := range sortValues(m.AnonSet) {
			elems = append(elems, nftables.SetElement{Key: v.bytes()})
		}
		if err := b.c.AddSet(anon, elems); err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		return []expr.Any{
			load(f, 1, f.info().typ.info().size),
			&expr.Lookup{SourceRegister: 1, SetName: anon.Name, SetID: anon.ID},
		}, nil
	}
	f, v := m.Fields[0], m.Value
	if len(m.AnonSet) == 1 {
		v = m.AnonSet[0]
	}
	switch v := v.(type) {
	case State:
		return []expr.Any{
			load(f, 1, 4),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: v.bytes(), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}, nil
	case Net:
		return netExprs(f, netip.Prefix(v)), nil
	}
	data := v.bytes()
	return []expr.Any{load(f, 1, uint32(len(data))), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data}}, nil
}

// netExprs matches a network as nft does: a whole-byte prefix loads and
// compares only its bytes; any other loads the address and masks it.
func netExprs(f Field, p netip.Prefix) []expr.Any {
	addr := p.Addr().AsSlice()
	size := uint32(len(addr))
	switch {
	case p.Bits() == len(addr)*8:
	case p.Bits() > 0 && p.Bits()%8 == 0:
		n := p.Bits() / 8
		return []expr.Any{load(f, 1, uint32(n)), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:n]}}
	default:
		mask := make([]byte, size)
		for i := range p.Bits() {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		return []expr.Any{
			load(f, 1, size),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		}
	}
	return []expr.Any{load(f, 1, size), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr}}
}

// register names the register that starts at 32-bit word n of the
// register file the way nft does: a 128-bit register when aligned, else a
// 32-bit one.
func register(words uint32) uint32 {
	if words%4 == 0 {
		return 1 + words/4
	}
	return 8 + words // NFT_REG32_00 + words
}

// load puts size bytes of field f into register reg.
func load(f Field, reg, size uint32) expr.Any {
	fi := f.info()
	switch f {
	case IifName:
		return &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg}
	case CtState:
		return &expr.Ct{Key: expr.CtKeySTATE, Register: reg}
	}
	base := expr.PayloadBaseTransportHeader
	if fi.network {
		base = expr.PayloadBaseNetworkHeader
	}
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: base, Offset: fi.offset, Len: size}
}
