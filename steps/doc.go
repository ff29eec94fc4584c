// Package steps is ztwizard's domain: the site specification (site.yaml), its
// validation, and one file per wizard step (the CA, the WireGuard mesh, the
// mTLS services, SSH, the firewall and databases).
package steps
