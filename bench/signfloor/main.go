// Command signfloor signs one SSH user certificate as `ztwizard ssh sign`
// does, in a process that links only what signing needs: the site, the
// authority and the state store, with none of the wizard, the image baker,
// the live applier or the command line. bench/pki_whole.sh times it beside
// `ztwizard ssh sign` and `ssh-keygen -s`, to show what a separate signing
// binary would cost. It takes the store's lock and keeps every guarantee the
// store gives (serial first, audit line, record, the certificate written
// atomically), but not the real command's checks of its flags.
//
//	signfloor -c site.yaml -state DIR -user alice -key alice.pub
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/authority"
	"ztwizard/steps/state"
)

func main() {
	site := flag.String("c", "", "the site file")
	dir := flag.String("state", "", "the state folder")
	user := flag.String("user", "", "the site's SSH user")
	key := flag.String("key", "", "the public key to sign (KEY.pub)")
	flag.Parse()
	if err := sign(*site, *dir, *user, *key); err != nil {
		fmt.Fprintln(os.Stderr, "signfloor:", err)
		os.Exit(1)
	}
}

func sign(sitePath, dir, user, keyFile string) error {
	source, err := steps.ReadSource(sitePath)
	if err != nil {
		return err
	}
	site, ok := authority.CachedParse(dir, source)
	if !ok {
		if site, err = steps.Parse(source, sitePath); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	pub, err := authority.ParseAuthorizedKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", keyFile, err)
	}
	store, err := state.Open(dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unlock, err := store.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	a := &authority.Authority{Store: store, Site: site}
	signed, err := a.SignUser(user, pub, nil, 0)
	if err != nil {
		return err
	}
	out := strings.TrimSuffix(keyFile, ".pub") + "-cert.pub"
	return atomicfile.WriteFile(out, []byte(signed.Line), 0o644)
}
