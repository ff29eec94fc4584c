package steps

import (
	"fmt"
	"path"
)

// The CA host's own units and the credential they read, written by
// `ztwizard ca schedule`.
const (
	CACRLUnit  = "ztwizard-ca-crl.service"
	CACRLTimer = "ztwizard-ca-crl.timer"
	// CredStoreDir is where systemd looks for encrypted credentials.
	CredStoreDir = "/etc/credstore.encrypted"
	// PassphraseCredential names the encrypted credential that holds the
	// CA passphrase; the CA's CRL service reads it from $CREDENTIALS_DIRECTORY.
	PassphraseCredential = "ztwizard-ca-passphrase"
)

// PassphraseCredentialPath is where the CA passphrase is kept encrypted.
const PassphraseCredentialPath = CredStoreDir + "/" + PassphraseCredential

// caHostView is what the CA host's unit templates see.
type caHostView struct {
	Binary, Site, State, Every string
	Boot                       string // the timer's delay after boot
	Accuracy                   string // the timer's AccuracySec; empty for systemd's default
	Credential, CredName       string // the encrypted passphrase; empty for a plain CA key
	Publish                    string // where the nodes' copies go; empty without ca.host
	Out                        string // this host's own CRL file, when it is also a node
}

// CAHostUnits returns the CA host's CRL refresh: a service that re-signs
// the CRL (of the CA in stateDir, for the site at sitePath) when it is due
// and its timer, and the status timer that keeps the expiry metrics of
// every certificate in the index current. With encrypted, the service gets the CA passphrase from
// the encrypted credential PassphraseCredentialPath. For a site with
// ca.host it also publishes the CRL and KRL into PublishDir for the nodes.
//
// With node set (the CA host is also a node and holds CRLPath), the
// service also writes CRLPath and reloads nginx, taking over from the
// node's own CRL service, which stands down once this one exists.
func CAHostUnits(site *Site, sitePath, stateDir string, encrypted, node bool) ([]File, error) {
	v := caHostView{Binary: BinaryPath, Site: sitePath, State: stateDir, Every: crlCheckEvery(site), Boot: bootDelay(site, "5min"),
		Accuracy: timerAccuracy(site)}
	if node {
		v.Out = CRLPath
	}
	if site.CA.Host != "" {
		v.Publish = PublishDir
	}
	if encrypted {
		v.Credential, v.CredName = PassphraseCredentialPath, PassphraseCredential
	}
	// The expiry metrics of every node's certificates, from the CA's index.
	status := unitView{Binary: BinaryPath, State: stateDir, Textfile: TextfilePath,
		TextfileDir: path.Dir(TextfilePath), StatusEvery: systemdSpan(site.Timing().Status), StatusBoot: bootDelay(site, "3min"), StatusSite: sitePath,
		Accuracy: timerAccuracy(site)}
	var files []File
	for _, u := range []struct {
		name, tmpl string
		view       any
	}{
		{CACRLUnit, "unit-ca-crl-service.tmpl", v}, {CACRLTimer, "unit-ca-crl-timer.tmpl", v},
		{StatusUnit, "unit-status-service.tmpl", status}, {StatusTimer, "unit-status-timer.tmpl", status},
	} {
		f, err := renderFile(path.Join(SystemdDir, u.name), 0o644, u.tmpl, u.view)
		if err != nil {
			return nil, fmt.Errorf("unit %s: %w", u.name, err)
		}
		files = append(files, f)
	}
	return files, nil
}
