package nft

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
)

// Type is the data type of a set key, or of one field of a concatenation.
type Type int

// Data types, named as nft names them.
const (
	TypeIPv4Addr    Type = iota + 1 // ipv4_addr
	TypeIPv6Addr                    // ipv6_addr
	TypeInetService                 // inet_service: a port
	TypeICMPType                    // icmp_type
	TypeICMPv6Type                  // icmpv6_type
	TypeIfName                      // ifname
	TypeCtState                     // ct_state
)

type typeInfo struct {
	name    string
	size    uint32 // bytes as the kernel stores it
	perLine int    // elements nft prints on one line of a named set
}

func (t Type) info() typeInfo {
	switch t {
	case TypeIPv4Addr:
		return typeInfo{"ipv4_addr", 4, 2}
	case TypeIPv6Addr:
		return typeInfo{"ipv6_addr", 16, 1}
	case TypeInetService:
		return typeInfo{"inet_service", 2, 5}
	case TypeICMPType:
		return typeInfo{"icmp_type", 1, 1}
	case TypeICMPv6Type:
		return typeInfo{"icmpv6_type", 1, 1}
	case TypeIfName:
		return typeInfo{"ifname", 16, 1}
	case TypeCtState:
		return typeInfo{"ct_state", 4, 2}
	}
	return typeInfo{}
}

// String is the type's nft name.
func (t Type) String() string { return t.info().name }

// ranged tells whether an interval set may hold this type.
func (t Type) ranged() bool { return t == TypeIPv4Addr || t == TypeIPv6Addr }

// Field is a property of a packet that a rule matches.
type Field int

// Fields, named as nft writes them.
const (
	IifName    Field = iota + 1 // iifname: the input interface's name
	CtState                     // ct state
	IPSaddr                     // ip saddr
	IP6Saddr                    // ip6 saddr
	TCPDport                    // tcp dport
	UDPDport                    // udp dport
	ICMPType                    // icmp type
	ICMPv6Type                  // icmpv6 type
)

// proto numbers of the dependencies nft adds in an inet table.
const (
	nfprotoIPv4 = 2
	nfprotoIPv6 = 10
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

type fieldInfo struct {
	name    string
	typ     Type
	nfproto byte // the network protocol it implies, 0 for none
	l4proto byte // the transport protocol it implies, 0 for none
	network bool // a payload field of the network header (else transport)
	offset  uint32
}

func (f Field) info() fieldInfo {
	switch f {
	case IifName:
		return fieldInfo{name: "iifname", typ: TypeIfName}
	case CtState:
		return fieldInfo{name: "ct state", typ: TypeCtState}
	case IPSaddr:
		return fieldInfo{name: "ip saddr", typ: TypeIPv4Addr, nfproto: nfprotoIPv4, network: true, offset: 12}
	case IP6Saddr:
		return fieldInfo{name: "ip6 saddr", typ: TypeIPv6Addr, nfproto: nfprotoIPv6, network: true, offset: 8}
	case TCPDport:
		return fieldInfo{name: "tcp dport", typ: TypeInetService, l4proto: protoTCP, offset: 2}
	case UDPDport:
		return fieldInfo{name: "udp dport", typ: TypeInetService, l4proto: protoUDP, offset: 2}
	case ICMPType:
		return fieldInfo{name: "icmp type", typ: TypeICMPType, nfproto: nfprotoIPv4, l4proto: protoICMP, offset: 0}
	case ICMPv6Type:
		return fieldInfo{name: "icmpv6 type", typ: TypeICMPv6Type, nfproto: nfprotoIPv6, l4proto: protoICMPv6, offset: 0}
	}
	return fieldInfo{}
}

// String is the field as nft writes it.
func (f Field) String() string { return f.info().name }

// Value is a constant in a rule or a set element. Its String is the value
// as nft prints it.
type Value interface {
	Type() Type
	String() string
	bytes() []byte // as the kernel compares it: network order, unpadded
	// appendBytes appends bytes() to b.
	appendBytes(b []byte) []byte
}

// Addr is one IP address.
type Addr netip.Addr

// Net is an IP network; all its host bits must be zero.
type Net netip.Prefix

// Port is a TCP or UDP port.
type Port uint16

// Iface is an interface name, matched exactly (no wildcard).
type Iface string

// ICMP is an ICMP (IPv4) message type.
type ICMP uint8

// ICMPv6 is an ICMPv6 message type.
type ICMPv6 uint8

// State is a set of conntrack states; a match accepts any of them.
type State uint32

// Conntrack states.
const (
	StateInvalid     State = 1
	StateEstablished State = 2
	StateRelated     State = 4
	StateNew         State = 8
	StateUntracked   State = 64

	allStates = StateInvalid | StateEstablished | StateRelated | StateNew | StateUntracked
)

// ICMP types.
const (
	ICMPEchoReply              ICMP = 0
	ICMPDestinationUnreachable ICMP = 3
	ICMPEchoRequest            ICMP = 8
	ICMPTimeExceeded           ICMP = 11
	ICMPParameterProblem       ICMP = 12
)

// ICMPv6 types.
const (
	ICMPv6DestinationUnreachable ICMPv6 = 1
	ICMPv6PacketTooBig           ICMPv6 = 2
	ICMPv6TimeExceeded           ICMPv6 = 3
	ICMPv6ParameterProblem       ICMPv6 = 4
	ICMPv6EchoRequest            ICMPv6 = 128
	ICMPv6EchoReply              ICMPv6 = 129
	ICMPv6NDRouterSolicit        ICMPv6 = 133
	ICMPv6NDRouterAdvert         ICMPv6 = 134
	ICMPv6NDNeighborSolicit      ICMPv6 = 135
	ICMPv6NDNeighborAdvert       ICMPv6 = 136
)

var icmpNames = map[ICMP]string{
	0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect",
	8: "echo-request", 9: "router-advertisement", 10: "router-solicitation",
	11: "time-exceeded", 12: "parameter-problem", 13: "timestamp-request",
	14: "timestamp-reply", 15: "info-request", 16: "info-reply",
	17: "address-mask-request", 18: "address-mask-reply",
}

var icmpv6Names = map[ICMPv6]string{
	1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded",
	4: "parameter-problem", 128: "echo-request", 129: "echo-reply",
	130: "mld-listener-query", 131: "mld-listener-report", 132: "mld-listener-done",
	133: "nd-router-solicit", 134: "nd-router-advert", 135: "nd-neighbor-solicit",
	136: "nd-neighbor-advert", 137: "nd-redirect", 138: "router-renumbering",
	141: "ind-neighbor-solicit", 142: "ind-neighbor-advert", 143: "mld2-listener-report",
}

// Type is ipv4_addr or ipv6_addr.
func (a Addr) Type() Type { return addrType(netip.Addr(a)) }

// Type is ipv4_addr or ipv6_addr.
func (n Net) Type() Type { return addrType(netip.Prefix(n).Addr()) }

// Type is inet_service.
func (Port) Type() Type { return TypeInetService }

// Type is ifname.
func (Iface) Type() Type { return TypeIfName }

// Type is icmp_type.
func (ICMP) Type() Type { return TypeICMPType }

// Type is icmpv6_type.
func (ICMPv6) Type() Type { return TypeICMPv6Type }

// Type is ct_state.
func (State) Type() Type { return TypeCtState }

func addrType(a netip.Addr) Type {
	if a.Is4() {
		return TypeIPv4Addr
	}
	return TypeIPv6Addr
}

// String is the address as nft prints it.
func (a Addr) String() string { return netip.Addr(a).String() }

// String prints a single-address network as the address, as nft does.
func (n Net) String() string {
	p := netip.Prefix(n)
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// String is the port number.
func (p Port) String() string { return strconv.Itoa(int(p)) }

// String is the name in double quotes, as nft prints it.
func (i Iface) String() string { return strconv.Quote(string(i)) }

// String is nft's name for the type, or its number when nft has none.
func (t ICMP) String() string {
	if n, ok := icmpNames[t]; ok {
		return n
	}
	return strconv.Itoa(int(t))
}

// String is nft's name for the type, or its number when nft has none.
func (t ICMPv6) String() string {
	if n, ok := icmpv6Names[t]; ok {
		return n
	}
	return strconv.Itoa(int(t))
}

// String lists the states as nft does: comma-separated, in bit order.
func (s State) String() string {
	var names []string
	for _, st := range []struct {
		bit  State
		name string
	}{{StateInvalid, "invalid"}, {StateEstablished, "established"}, {StateRelated, "related"}, {StateNew, "new"}, {StateUntracked, "untracked"}} {
		if s&st.bit != 0 {
			names = append(names, st.name)
		}
	}
	return strings.Join(names, ",")
}

func (a Addr) bytes() []byte   { return a.appendBytes(nil) }
func (n Net) bytes() []byte    { return n.appendBytes(nil) }
func (p Port) bytes() []byte   { return p.appendBytes(nil) }
func (i Iface) bytes() []byte  { return i.appendBytes(nil) }
func (t ICMP) bytes() []byte   { return t.appendBytes(nil) }
func (t ICMPv6) bytes() []byte { return t.appendBytes(nil) }
func (s State) bytes() []byte  { return s.appendBytes(nil) }

func (a Addr) appendBytes(b []byte) []byte {
	switch ip := netip.Addr(a); {
	case ip.Is4():
		v := ip.As4()
		return append(b, v[:]...)
	case ip.Is6():
		v := ip.As16()
		return append(b, v[:]...)
	}
	return b
}

func (n Net) appendBytes(b []byte) []byte { return Addr(netip.Prefix(n).Addr()).appendBytes(b) }
func (p Port) appendBytes(b []byte) []byte {
	return binary.BigEndian.AppendUint16(b, uint16(p))
}

func (i Iface) appendBytes(b []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, TypeIfName.info().size)...)
	copy(b[start:], i)
	return b
}

func (t ICMP) appendBytes(b []byte) []byte   { return append(b, byte(t)) }
func (t ICMPv6) appendBytes(b []byte) []byte { return append(b, byte(t)) }

// bytes of a ct state are in host order, as the kernel keeps them.
func (s State) appendBytes(b []byte) []byte { return binary.NativeEndian.AppendUint32(b, uint32(s)) }

// String is the element as nft prints it.
func (e Element) String() string {
	parts := make([]string, len(e))
	for i, v := range e {
		if v == nil {
			parts[i] = "<nil>"
			continue
		}
		parts[i] = v.String()
	}
	return strings.Join(parts, " . ")
}

// key is the element's key as the kernel stores it: each field padded to
// four bytes in a concatenation.
func (e Element) key() []byte {
	if len(e) == 1 {
		return e[0].bytes()
	}
	var b []byte
	for _, v := range e {
		f := v.bytes()
		b = append(b, f...)
		b = append(b, make([]byte, (4-len(f)%4)%4)...)
	}
	return b
}

// String is the match as nft prints it.
func (m Match) String() string {
	names := make([]string, len(m.Fields))
	for i, f := range m.Fields {
		names[i] = f.String()
	}
	lhs := strings.Join(names, " . ")
	switch {
	case m.Set != "":
		return lhs + " @" + m.Set
	case len(m.AnonSet) == 1:
		return lhs + " " + m.AnonSet[0].String()
	case len(m.AnonSet) > 1:
		vs := sortValues(m.AnonSet)
		parts := make([]string, len(vs))
		for i, v := range vs {
			parts[i] = v.String()
		}
		return lhs + " { " + strings.Join(parts, ", ") + " }"
	case m.Value != nil:
		return lhs + " " + m.Value.String()
	}
	return lhs
}

func (s *Set) keyName() string {
	names := make([]string, len(s.Key))
	for i, k := range s.Key {
		names[i] = k.String()
	}
	return strings.Join(names, " . ")
}
