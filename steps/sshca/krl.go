package sshca

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// Constants from PROTOCOL.krl in the OpenSSH sources.
const (
	krlMagic                    = 0x5353484b524c0a00 // "SSHKRL\n\0"
	krlFormatVersion            = 1
	krlSectionCertificates      = 1
	krlSectionFingerprintSHA256 = 5
	krlCertSerialList           = 0x20
	krlCertKeyID                = 0x23
)

// KRL is an OpenSSH key revocation list, as read by sshd's RevokedKeys and
// ssh-keygen -Q.
type KRL struct {
	Version   uint64    // krl_version, increases with each publication
	Generated time.Time // generated_date; times before 1970 are written as 0
	Comment   string    // free-form comment
	Certs     []CertRevocations
	Keys      []ssh.PublicKey // plain keys revoked outright, with every certificate for them
}

// CertRevocations revokes certificates issued by one CA, by serial number or
// by key id. A nil CA applies the revocations to certificates from any CA.
type CertRevocations struct {
	CA      ssh.PublicKey
	Serials []uint64
	KeyIDs  []string
}

// Marshal returns the KRL in OpenSSH's binary format. The output depends only
// on the contents: serials, key ids and key hashes are sorted and
// de-duplicated, and entries for the same CA are merged. Serial 0 is left
// out, because OpenSSH rejects a whole KRL that lists it. No signature
// section is written.
func (k *KRL) Marshal() []byte {
	var b []byte
	b = binary.BigEndian.AppendUint64(b, krlMagic)
	b = binary.BigEndian.AppendUint32(b, krlFormatVersion)
	b = binary.BigEndian.AppendUint64(b, k.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(max(k.Generated.Unix(), 0)))
	b = binary.BigEndian.AppendUint64(b, 0) // flags
	b = appendString(b, nil)                // reserved
	b = appendString(b, []byte(k.Comment))

	for _, g := range groupCerts(k.Certs) {
		sec := appendString(nil, g.ca)
		sec = appendString(sec, nil) // reserved
		if len(g.serials) > 0 {
			var list []byte
			for _, s := range g.serials {
				list = binary.BigEndian.AppendUint64(list, s)
			}
			sec = append(sec, krlCertSerialList)
			sec = appendString(sec, list)
		}
		if len(g.keyIDs) > 0 {
			var list []byte
			for _, id := range g.keyIDs {
				list = appendString(list, []byte(id))
			}
			sec = append(sec, krlCertKeyID)
			sec = appendString(sec, list)
		}
		b = append(b, krlSectionCertificates)
		b = appendString(b, sec)
	}

	var hashes [][]byte
	for _, key := range k.Keys {
		if key == nil {
			continue
		}
		if c, ok := key.(*ssh.Certificate); ok {
			key = c.Key // fingerprints are always of the plain key
		}
		h := sha256.Sum256(key.Marshal())
		hashes = append(hashes, h[:])
	}
	slices.SortFunc(hashes, bytes.Compare)
	hashes = slices.CompactFunc(hashes, bytes.Equal)
	if len(hashes) > 0 {
		var list []byte
		for _, h := range hashes {
			list = appendString(list, h)
		}
		b = append(b, krlSectionFingerprintSHA256)
		b = appendString(b, list)
	}
	return b
}

type certGroup struct {
	ca      []byte
	serials []uint64
	keyIDs  []string
}

// groupCerts merges revocations per CA key blob, sorted by blob, dropping
// serial 0 and groups left empty.
func groupCerts(certs []CertRevocations) []certGroup {
	byCA := map[string]*certGroup{}
	for _, c := range certs {
		var blob []byte
		if c.CA != nil {
			blob = c.CA.Marshal()
		}
		g := byCA[string(blob)]
		if g == nil {
			g = &certGroup{ca: blob}
			byCA[string(blob)] = g
		}
		for _, s := range c.Serials {
			if s != 0 {
				g.serials = append(g.serials, s)
			}
		}
		g.keyIDs = append(g.keyIDs, c.KeyIDs...)
	}
	var out []certGroup
	for _, g := range byCA {
		slices.Sort(g.serials)
		g.serials = slices.Compact(g.serials)
		slices.Sort(g.keyIDs)
		g.keyIDs = slices.Compact(g.keyIDs)
		if len(g.serials)+len(g.keyIDs) > 0 {
			out = append(out, *g)
		}
	}
	slices.SortFunc(out, func(a, b certGroup) int { return cmp.Compare(string(a.ca), string(b.ca)) })
	return out
}

// appendString appends an SSH wire-format string: a uint32 length and data.
func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
