package nft

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Fingerprint digests what the kernel holds for the inet ztwizard table in
// the network namespace of c's NetNS (0: this thread's), read over
// netlink in a few dumps: the table, its chains, sets, set elements and
// rules, with their handles. It is "" when there is no such table. Equal
// fingerprints mean the table did not change in between: any rule,
// element or chain added, removed or altered, or the table replaced (its
// objects get new handles), changes it. The ruleset generation the kernel
// stamps on every message is left out, so changes to other tables do not.
//
// It is the cheap way to tell that the table is still the one an earlier
// apply made: listing it as text takes starting nft.
func Fingerprint(c *nftables.Conn) (string, error) {
	fd, release, err := sockets.get(c.NetNS)
	if err != nil {
		return "", fmt.Errorf("nft: fingerprint: %w", err)
	}
	defer release()
	h := sha256.New()
	table := attr(unix.NFTA_TABLE_NAME, TableName+"\x00")
	msgs, err := query(fd, unix.NFT_MSG_GETTABLE, false, table)
	if errors.Is(err, syscall.ENOENT) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("nft: fingerprint: table: %w", err)
	}
	digest(h, msgs)
	chains, err := query(fd, unix.NFT_MSG_GETCHAIN, true, attr(unix.NFTA_CHAIN_TABLE, TableName+"\x00"))
	if err != nil {
		return "", fmt.Errorf("nft: fingerprint: chains: %w", err)
	}
	digest(h, ofTable(chains, unix.NFTA_CHAIN_TABLE))
	sets, err := query(fd, unix.NFT_MSG_GETSET, true, attr(unix.NFTA_SET_TABLE, TableName+"\x00"))
	if err != nil {
		return "", fmt.Errorf("nft: fingerprint: sets: %w", err)
	}
	sets = ofTable(sets, unix.NFTA_SET_TABLE)
	digest(h, sets)
	for _, s := range sets {
		name, _ := findAttr(s[4:], unix.NFTA_SET_NAME)
		elems, err := query(fd, unix.NFT_MSG_GETSETELEM, true,
			append(attr(unix.NFTA_SET_ELEM_LIST_TABLE, TableName+"\x00"), attr(unix.NFTA_SET_ELEM_LIST_SET, string(name))...))
		if err != nil {
			return "", fmt.Errorf("nft: fingerprint: elements of %s: %w", bytes.TrimRight(name, "\x00"), err)
		}
		// A hash set walks its elements in bucket order, which a resize
		// may change: the elements are digested sorted.
		var all [][]byte
		for _, m := range elems {
			list, _ := findAttr(m[4:], unix.NFTA_SET_ELEM_LIST_ELEMENTS)
			all = append(all, attrs(list)...)
		}
		slices.SortFunc(all, bytes.Compare)
		h.Write([]byte("elements"))
		h.Write(name)
		for _, e := range all {
			writeLen(h, e)
		}
	}
	rules, err := query(fd, unix.NFT_MSG_GETRULE, true, attr(unix.NFTA_RULE_TABLE, TableName+"\x00"))
	if err != nil {
		return "", fmt.Errorf("nft: fingerprint: rules: %w", err)
	}
	digest(h, ofTable(rules, unix.NFTA_RULE_TABLE))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TableExists reports whether c's namespace has the inet ztwizard table:
// the first of Fingerprint's dumps alone.
func TableExists(c *nftables.Conn) (bool, error) {
	fd, release, err := sockets.get(c.NetNS)
	if err != nil {
		return false, fmt.Errorf("nft: table: %w", err)
	}
	defer release()
	_, err = query(fd, unix.NFT_MSG_GETTABLE, false, attr(unix.NFTA_TABLE_NAME, TableName+"\x00"))
	if errors.Is(err, syscall.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("nft: table: %w", err)
	}
	return true, nil
}

// Generation is the ruleset generation of c's namespace (see
// Fingerprint): the kernel counts every batch it commits there.
func Generation(c *nftables.Conn) (uint32, error) {
	fd, release, err := sockets.get(c.NetNS)
	if err != nil {
		return 0, fmt.Errorf("nft: generation: %w", err)
	}
	defer release()
	msgs, err := query(fd, unix.NFT_MSG_GETGEN, false, nil)
	if err != nil {
		return 0, fmt.Errorf("nft: generation: %w", err)
	}
	for _, m := range msgs {
		if id, ok := findAttr(m[4:], unix.NFTA_GEN_ID); ok && len(id) == 4 {
			return binary.BigEndian.Uint32(id), nil
		}
	}
	return 0, errors.New("nft: generation: no answer")
}

type hashWriter interface{ Write([]byte) (int, error) }

// digest adds messages to h, each without the generation in its header.
func digest(h hashWriter, msgs [][]byte) {
	for _, m := range msgs {
		writeLen(h, append(m[:2:2], m[4:]...))
	}
}

func writeLen(h hashWriter, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// ofTable keeps the messages whose attribute typ names the table.
func ofTable(msgs [][]byte, typ uint16) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		if name, ok := findAttr(m[4:], typ); ok && string(name) == TableName+"\x00" {
			out = append(out, m)
		}
	}
	return out
}

// attr encodes one netlink attribute.
func attr(typ uint16, value string) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(value)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// attrs splits a run of attributes, each returned whole (header too).
func attrs(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			break
		}
		out = append(out, b[:l])
		b = b[min(nlAlign(l), len(b)):]
	}
	return out
}

// findAttr returns the value of the attribute typ (nested flag ignored)
// in a run of attributes.
func findAttr(b []byte, typ uint16) ([]byte, bool) {
	for _, a := range attrs(b) {
		if binary.NativeEndian.Uint16(a[2:])&^unix.NLA_F_NESTED == typ {
			return a[4:], true
		}
	}
	return nil, false
}

// query sends one nftables request for the inet family (a dump with dump)
// and returns the payloads of the answers (each from its nfgenmsg on).
func query(fd int, msgType int, dump bool, data []byte) ([][]byte, error) {
	flags := uint16(unix.NLM_F_REQUEST)
	family := byte(unix.NFPROTO_INET)
	if dump {
		flags |= unix.NLM_F_DUMP
	}
	if msgType == unix.NFT_MSG_GETGEN {
		family = unix.AF_UNSPEC
	}
	const seq = 1
	req := binary.NativeEndian.AppendUint32(nil, uint32(unix.NLMSG_HDRLEN+4+len(data)))
	req = binary.NativeEndian.AppendUint16(req, uint16(unix.NFNL_SUBSYS_NFTABLES<<8|msgType))
	req = binary.NativeEndian.AppendUint16(req, flags)
	req = binary.NativeEndian.AppendUint32(req, seq)
	req = binary.NativeEndian.AppendUint32(req, 0)
	req = append(req, family, unix.NFNETLINK_V0, 0, 0)
	req = append(req, data...)
	for {
		err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	var out [][]byte
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		parsed, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range parsed {
			switch {
			case m.Header.Seq != seq:
				continue // a late answer to an earlier request
			case m.Header.Type == unix.NLMSG_DONE:
				return out, nil
			case m.Header.Type == unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
						return nil, syscall.Errno(-code)
					}
				}
				return out, nil
			case len(m.Data) >= 4:
				out = append(out, slices.Clone(m.Data))
			}
		}
		if !dump && len(out) > 0 {
			return out, nil
		}
	}
}
