package authority

import (
	"errors"
	"fmt"
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
// While a rotation finishes nothing is issued: no leaves, no error. A
// node whose renewal fails (e.g. its request no longer fits the site) is
// left out and named in the error, which joins every such node's; the
// others' leaves are returned with it.
func (a *Authority) RenewLeaves() ([]Leaves, error) {
	if r, err := a.Rotation(); err != nil {
		return nil, err
	} else if r.Phase == phaseFinishing {
		return nil, nil
	}
	var out []Leaves
	var errs []error
	for _, n := range a.Site.Nodes {
		l, err := a.renewNode(n.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
			continue
		}
		if len(l.Servers) > 0 || l.HostCert != nil {
			out = append(out, l)
		}
	}
	return out, errors.Join(errs...)
}

// renewNode renews what is due of node's leaves and returns the current
// ones (see RenewLeaves).
func (a *Authority) renewNode(node string) (Leaves, error) {
	l := Leaves{Node: node, Servers: map[string][]byte{}}
	req, err := a.NodeRequest(node)
	if err != nil {
		return l, err
	}
	for _, s := range a.Site.Services {
		if s.Node != node {
			continue
		}
		kp, ok, err := a.serverLeaf(s, req, false)
		if err != nil {
			return l, err
		}
		if ok {
			l.Servers[s.Name] = kp.Cert
		}
	}
	hk, err := a.HostKey(node)
	if err != nil {
		return l, err
	}
	if hk != nil {
		if l.HostCert, err = a.hostCert(node, hk); err != nil {
			return l, fmt.Errorf("authority: host certificate of %s: %w", node, err)
		}
	}
	return l, nil
}
