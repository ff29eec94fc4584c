package authority

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/bundle"
	"ztwizard/steps/pki"
	"ztwizard/steps/state"
)

// Secrets gathers what a node's plan needs from the store, creating what is
// missing: the CAs, a current server certificate for each of the node's
// services (renewed at two thirds of its life, see RenewDue, or when its server_name
// changed; for the same key, the old one marked superseded), a CRL that is
// not due, the KRL, the WireGuard keys and the mesh addresses and, when the
// node's SSH host key is recorded, its host certificate. For a node that
// imported a request (see ImportRequest) the certificates are for the keys
// it holds and no private key of it is returned. Of the WireGuard keys it holds the node's private key and the
// public keys of the node and its peers (Site.Links), making those missing.
// During a CA rotation (see RotateInit) the CA certificates, the CRLs and
// the SSH CA lines are the old and the new CA's, and leaves the CA that
// issues now did not issue are issued again.
func (a *Authority) Secrets(node string) (*steps.Secrets, error) {
	if err := CheckNode(a.Site, node); err != nil {
		return nil, err
	}
	if r, err := a.Rotation(); err != nil {
		return nil, err
	} else if r.Phase == phaseFinishing {
		// The CA files may be half swapped: nothing is issued from them.
		return nil, r.settled()
	}
	trust, err := a.trustPEM()
	if err != nil {
		return nil, err
	}
	sec := &steps.Secrets{CACert: trust, Servers: map[string]steps.KeyPair{}}
	if due, err := a.CRLDue(); err != nil {
		return nil, err
	} else if due {
		if _, err := a.CRL(); err != nil {
			return nil, err
		}
	}
	if sec.CRL, err = a.crlPEM(); err != nil {
		return nil, err
	}
	req, err := a.NodeRequest(node)
	if err != nil {
		return nil, err
	}
	for _, s := range a.Site.Services {
		if s.Node != node {
			continue
		}
		if sec.Servers[s.Name], _, err = a.serverLeaf(s, req, true); err != nil {
			return nil, err
		}
	}
	if sec.SSHUserCA, err = a.caLine(KindSSHUserCA); err != nil {
		return nil, err
	}
	if sec.SSHHostCA, err = a.caLine(KindSSHHostCA); err != nil {
		return nil, err
	}
	if ok, err := a.exists(KRLFile); err != nil {
		return nil, err
	} else if !ok {
		if _, err := a.KRL(); err != nil {
			return nil, err
		}
	}
	if sec.KRL, err = a.readFile(KRLFile); err != nil {
		return nil, err
	}
	// The node's own private key (unless it holds it itself: a request
	// was imported), and only its peers' public keys: a node's plan needs
	// nothing of the others.
	if req == nil {
		k, err := a.WireGuardKey(node)
		if err != nil {
			return nil, err
		}
		sec.WireGuardKey = &k
	}
	if sec.WireGuardPubs, err = a.wireGuardPublics(append([]string{node}, a.Site.Links(node)...)); err != nil {
		return nil, err
	}
	if hk, err := a.HostKey(node); err != nil {
		return nil, err
	} else if hk != nil {
		if sec.HostCert, err = a.hostCert(node, hk); err != nil {
			return nil, err
		}
	}
	if sec.Addresses, err = a.meshAddresses(); err != nil {
		return nil, err
	}
	return sec, nil
}

// serverLeaf returns service s's current server certificate, renewed when
// due. Where the node holds the key (req is its imported request) the
// certificate is for that key, and no key is returned. Otherwise it is for
// the key made here: for a bundle (forBundle) it is issued with a new key
// when there is none yet, and returned with its key; for RenewLeaves there
// is then none (ok is false: the first bundle makes it), and never a key.
func (a *Authority) serverLeaf(s steps.Service, req *bundle.Checked, forBundle bool) (kp steps.KeyPair, ok bool, err error) {
	if req != nil {
		kp, err := a.serverForKey(s, req.CSRs[s.Name].PublicKey)
		return kp, err == nil, err
	}
	cur, err := a.Current(KindServer, s.Name)
	switch {
	case err != nil:
	case cur == nil && !forBundle:
		return kp, false, nil
	case cur == nil:
		cur, err = a.Issue(s.Name, "")
	case a.due(cur.Cert, s):
		cur, err = a.renewServer(s, cur)
	}
	if err != nil {
		return kp, false, err
	}
	kp.Cert = pki.EncodeCertPEM(cur.Cert)
	if forBundle {
		if kp.Key, err = pki.EncodeKeyPEM(cur.Key, nil); err != nil {
			return kp, false, fmt.Errorf("authority: key of %s: %w", s.Name, err)
		}
	}
	return kp, true, nil
}

// caLine returns an SSH CA's public key line (during a rotation, the old
// and the new CA's lines), creating the CA if needed.
func (a *Authority) caLine(kind string) ([]byte, error) {
	_, lines, err := a.trustedSSH(kind)
	return lines, err
}

// wireGuardPublics returns the WireGuard public keys of nodes, as
// wireGuardPublic does for each. For the nodes that imported no request the
// key files are not read one by one: PublicKeysFile records each key with
// the stamp of the file it was read from (state.Stamp), and a key is taken
// from there only while its file still has that stamp; the others are read.
func (a *Authority) wireGuardPublics(nodes []string) (map[string]wgtypes.Key, error) {
	pubs := make(map[string]wgtypes.Key, len(nodes))
	// A node with a request has a folder of its own under nodes/: the
	// others need no look for one.
	folders, err := a.Store.Names("nodes")
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	hasFolder := make(map[string]bool, len(folders))
	for _, f := range folders {
		hasFolder[f] = true
	}
	var rest []string
	for _, n := range nodes {
		if hasFolder[n] {
			k, err := a.wireGuardPublic(n)
			if err != nil {
				return nil, err
			}
			pubs[n] = k
			continue
		}
		rest = append(rest, n)
	}
	names := make([]string, len(rest))
	for i, n := range rest {
		names[i] = n + ".pub"
	}
	stamps, err := a.Store.Stamps("wireguard", names)
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	cache := a.readPublicKeys()
	var read []int // indexes into rest of the files to read
	for i, n := range rest {
		if e, ok := cache[n]; ok && stamps[i] != (state.Stamp{}) && e.stamp == stamps[i] {
			pubs[n] = e.key
			continue
		}
		read = append(read, i)
	}
	if len(read) == 0 {
		return pubs, nil
	}
	readNames := make([]string, len(read))
	for j, i := range read {
		readNames[j] = names[i]
	}
	files, fileStamps, err := a.Store.ReadFilesStamps("wireguard", readNames)
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	now := fsNow() // the file system's clock, not the CA's
	changed := false
	for j, i := range read {
		n := rest[i]
		if files[j] == nil {
			// No public key yet: make the pair (or read the private key).
			if pubs[n], err = a.WireGuardPublicKey(n); err != nil {
				return nil, err
			}
			continue
		}
		k, err := wgtypes.ParseKey(strings.TrimSpace(string(files[j])))
		if err != nil {
			return nil, fmt.Errorf("authority: %s: %w", path.Join("wireguard", names[i]), err)
		}
		pubs[n] = k
		if fileStamps[j].Settled(now) {
			cache[n] = publicKeyEntry{key: k, stamp: fileStamps[j]}
			changed = true
		}
	}
	if changed && !a.Store.DryRun() {
		if err := a.writePublicKeys(cache); err != nil {
			return nil, err
		}
	}
	return pubs, nil
}

// PublicKeysFile records the WireGuard public keys read from the key files
// of the wireguard folder, each with the stamp its file had (see
// wireGuardPublics). Its first line is `wgpub 1 sum SUM`, SUM the SHA-256
// of the rest, one line a node: `NODE INODE SIZE CTIME KEY`. A file whose
// sum does not hold is not used, a line that does not parse is skipped:
// the keys are read from their files then.
const PublicKeysFile = "cache/wireguard-public"

type publicKeyEntry struct {
	key   wgtypes.Key
	stamp state.Stamp
}

// readPublicKeys returns what PublicKeysFile holds: empty when it is
// missing or does not check.
func (a *Authority) readPublicKeys() map[string]publicKeyEntry {
	out := map[string]publicKeyEntry{}
	data, err := a.Store.ReadFile(PublicKeysFile)
	if err != nil {
		return out
	}
	head, body, ok := bytes.Cut(data, []byte("\n"))
	sum := sha256.Sum256(body)
	if !ok || string(head) != "wgpub 1 sum "+hex.EncodeToString(sum[:]) {
		return out
	}
	for len(body) > 0 {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte("\n"))
		f := strings.Fields(string(line))
		if len(f) != 5 {
			continue
		}
		ino, err1 := strconv.ParseUint(f[1], 10, 64)
		size, err2 := strconv.ParseInt(f[2], 10, 64)
		ctime, err3 := strconv.ParseInt(f[3], 10, 64)
		k, err4 := wgtypes.ParseKey(f[4])
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || ino == 0 {
			continue
		}
		out[f[0]] = publicKeyEntry{key: k, stamp: state.Stamp{Ino: ino, Size: size, Ctime: ctime}}
	}
	return out
}

// writePublicKeys replaces PublicKeysFile with entries.
func (a *Authority) writePublicKeys(entries map[string]publicKeyEntry) error {
	var body bytes.Buffer
	for _, n := range slices.Sorted(maps.Keys(entries)) {
		e := entries[n]
		fmt.Fprintf(&body, "%s %d %d %d %s\n", n, e.stamp.Ino, e.stamp.Size, e.stamp.Ctime, e.key)
	}
	sum := sha256.Sum256(body.Bytes())
	out := append([]byte("wgpub 1 sum "+hex.EncodeToString(sum[:])+"\n"), body.Bytes()...)
	if err := a.Store.WriteFile(PublicKeysFile, out, privateMode); err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	return nil
}

// fsNow is the clock file change times are compared with (tests move it).
var fsNow = time.Now
