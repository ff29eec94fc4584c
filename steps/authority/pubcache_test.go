package authority

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestPublicKeysCache: the peers' public keys come from PublicKeysFile
// only while each key file has the stamp recorded with it; a key file
// changed in place or replaced, a cache edited or removed, is never
// trusted, and a file changed within the last second is not recorded.
func TestPublicKeysCache(t *testing.T) {
	a, _ := newFleetAuthority(t, fleetSite(t, "admin.example.com"))
	const node = "db"
	peer := a.Site.Links(node)[0]
	pubFile := filepath.Join(a.Store.Dir(), "wireguard", peer+".pub")
	cache := filepath.Join(a.Store.Dir(), PublicKeysFile)
	secrets := func() wgtypes.Key {
		t.Helper()
		sec, err := a.Secrets(node)
		if err != nil {
			t.Fatal(err)
		}
		return sec.WireGuardPubs[peer]
	}
	// Keys made just now are not settled: nothing recorded.
	want := secrets()
	if _, err := os.Stat(cache); err == nil {
		t.Fatal("keys changed within the second were recorded")
	}
	// An hour later they are.
	fsNow = func() time.Time { return time.Now().Add(time.Hour) }
	t.Cleanup(func() { fsNow = time.Now })
	if got := secrets(); got != want {
		t.Fatalf("key %s, want %s", got, want)
	}
	data, err := os.ReadFile(cache)
	if err != nil {
		t.Fatalf("no cache after settled keys were read: %v", err)
	}
	if !bytes.Contains(data, []byte(peer+" ")) || !bytes.Contains(data, []byte(want.String())) {
		t.Fatalf("the cache does not record %s's key", peer)
	}
	// The cache is what is read while the stamps hold: a recorded key
	// put there by hand (its sum made right) is the key taken.
	other, _ := wgtypes.GeneratePrivateKey()
	rewriteCache(t, a, func(body string) string {
		return strings.Replace(body, want.String(), other.PublicKey().String(), 1)
	})
	if got := secrets(); got != other.PublicKey() {
		t.Fatalf("with the stamps holding, the key came from elsewhere than the cache (%s)", got)
	}
	// The key file changed in place, same size: its stamp changes.
	time.Sleep(50 * time.Millisecond) // past the file system's clock tick
	third, _ := wgtypes.GeneratePrivateKey()
	if err := os.WriteFile(pubFile, []byte(third.PublicKey().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := secrets(); got != third.PublicKey() {
		t.Fatalf("after an in-place change the key is %s, want the file's %s", got, third.PublicKey())
	}
	// Replaced by rename (a new file): read too.
	time.Sleep(50 * time.Millisecond)
	fourth, _ := wgtypes.GeneratePrivateKey()
	tmp := pubFile + ".new"
	os.WriteFile(tmp, []byte(fourth.PublicKey().String()+"\n"), 0o644)
	if err := os.Rename(tmp, pubFile); err != nil {
		t.Fatal(err)
	}
	if got := secrets(); got != fourth.PublicKey() {
		t.Fatalf("after a replacement the key is %s, want %s", got, fourth.PublicKey())
	}
	// A cache edited without its sum made right is not used at all.
	data, _ = os.ReadFile(cache)
	os.WriteFile(cache, bytes.Replace(data, []byte(fourth.PublicKey().String()), []byte(other.PublicKey().String()), 1), 0o600)
	if got := secrets(); got != fourth.PublicKey() {
		t.Fatalf("an edited cache was trusted: %s", got)
	}
	// Removed: rebuilt from the files.
	os.Remove(cache)
	if got := secrets(); got != fourth.PublicKey() {
		t.Fatalf("without a cache: %s", got)
	}
	if _, err := os.Stat(cache); err != nil {
		t.Fatalf("the cache was not made again: %v", err)
	}
	// The key file removed: the pair is read from the private key again.
	os.Remove(pubFile)
	k, err := a.WireGuardKey(peer)
	if err != nil {
		t.Fatal(err)
	}
	if got := secrets(); got != k.PublicKey() {
		t.Fatalf("with the .pub removed: %s, want the private key's %s", got, k.PublicKey())
	}
}

// rewriteCache changes the cache's body and makes its sum right again.
func rewriteCache(t *testing.T, a *Authority, change func(string) string) {
	t.Helper()
	entries := a.readPublicKeys()
	if len(entries) == 0 {
		t.Fatal("no cache to rewrite")
	}
	var b strings.Builder
	data, _ := os.ReadFile(filepath.Join(a.Store.Dir(), PublicKeysFile))
	_, body, _ := strings.Cut(string(data), "\n")
	b.WriteString(change(body))
	parsed := map[string]publicKeyEntry{}
	// Write through writePublicKeys so the sum is right.
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		f := strings.Fields(line)
		k, err := wgtypes.ParseKey(f[4])
		if err != nil {
			t.Fatal(err)
		}
		e := entries[f[0]]
		e.key = k
		parsed[f[0]] = e
	}
	if err := a.writePublicKeys(parsed); err != nil {
		t.Fatal(err)
	}
}
