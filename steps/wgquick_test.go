package steps

import (
	"errors"
	"os"
	"reflect"
	"testing"
)

// TestParseWGQuickRoundTrip reads back every node's wg-quick file of the
// 50-node site into the interface the plan holds.
func TestParseWGQuickRoundTrip(t *testing.T) {
	site, err := Load("../testdata/sites/fifty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range site.Nodes {
		sec := fixedSecrets(t, site, n.Name)
		iface, files, err := WireGuardFor(site, n.Name, sec)
		if err != nil {
			t.Fatal(err)
		}
		key := map[string][]byte{}
		for _, f := range files {
			key[f.Path] = f.Content
		}
		got, err := ParseWGQuick(iface.Name, key[WireGuardConfDir+"/zt0.conf"], func(p string) ([]byte, error) {
			if data, ok := key[p]; ok {
				return data, nil
			}
			return nil, os.ErrNotExist
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, iface) {
			t.Fatalf("node %s: parsed\n%+v\nwant\n%+v", n.Name, got, iface)
		}
	}
}

func TestParseWGQuickErrors(t *testing.T) {
	for name, text := range map[string]string{
		"no equals":   "[Interface]\nAddress 10.0.0.1/24\n",
		"bad address": "[Interface]\nAddress = 10.0.0.300/24\n",
		"unknown key": "[Interface]\nTable = off\n",
		"other hook":  "[Interface]\nPostUp = iptables -F\n",
		"bad peer":    "[Peer]\nPublicKey = nope\n",
		"key missing": "[Interface]\nPostUp = wg set %i private-key /nonexistent\n",
	} {
		_, err := ParseWGQuick("zt0", []byte(text), func(string) ([]byte, error) { return nil, errors.New("no key file") })
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
