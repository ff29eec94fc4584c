package authority

import (
	"fmt"

	"ztwizard/steps/pki"
)

// Leaves is one node's current leaf certificates, as the CA host publishes
// them for the node's pull: public material only, never a key.
type Leaves struct {
	Node string
	// Servers maps each of the node's services to its server certificate
	// (PEM).
	Servers map[string][]byte
	// HostCert is the node's SSH host certificate line; nil when its host
	// key is not recorded.
	HostCert []byte
}

// RenewLeaves renews what is due of every node whose keys the CA knows (an
// imported request, a recorded SSH host key, or a service key made here)
// and returns every such node's current leaves. A server certificate is
// renewed as a bundle renews it (at two thirds of its life or within the
// site's Timing().LeafWindow of its end, when its names changed or, during
// a rotation, under the CA that issues now), for the same key; so is the
// SSH host certificate. A node the CA knows nothing of gets nothing made.
// While a rotation finishes nothing is issued: no leaves, no error.
func (a *Authority) RenewLeaves() ([]Leaves, error) {
	if r, err := a.Rotation(); err != nil {
		return nil, err
	} else if r.Phase == phaseFinishing {
		return nil, nil
	}
	var out []Leaves
	for _, n := range a.Site.Nodes {
		l := Leaves{Node: n.Name, Servers: map[string][]byte{}}
		req, err := a.NodeRequest(n.Name)
		if err != nil {
			return nil, err
		}
		for _, s := range a.Site.Services {
			if s.Node != n.Name {
				continue
			}
			if req != nil {
				kp, err := a.serverForKey(s, req.CSRs[s.Name].PublicKey)
				if err != nil {
					return nil, err
				}
				l.Servers[s.Name] = kp.Cert
				continue
			}
			cur, err := a.Current(KindServer, s.Name)
			if err != nil {
				return nil, err
			}
			if cur == nil {
				continue // its key is not made yet: the first bundle makes it
			}
			if a.due(cur.Cert, s) {
				if cur, err = a.renewServer(s, cur); err != nil {
					return nil, err
				}
			}
			l.Servers[s.Name] = pki.EncodeCertPEM(cur.Cert)
		}
		hk, err := a.HostKey(n.Name)
		if err != nil {
			return nil, err
		}
		if hk != nil {
			if l.HostCert, err = a.hostCert(n.Name, hk); err != nil {
				return nil, fmt.Errorf("authority: host certificate of %s: %w", n.Name, err)
			}
		}
		if len(l.Servers) > 0 || l.HostCert != nil {
			out = append(out, l)
		}
	}
	return out, nil
}
