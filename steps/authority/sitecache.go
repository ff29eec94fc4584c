package authority

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"syscall"
)

// SiteCacheFile holds the canonical form of the site last planned (what
// Site.Marshal returns, installed as /etc/ztwizard/site.yaml), so that a
// re-apply of the same site by the same program does not encode 1,000
// nodes again. Its first line is `key KEY sum SUM`: KEY the SHA-256 of the
// site's source and of this program's executable file (device, inode,
// size, modification and change times: a new binary is a new key), SUM
// the SHA-256 of the rest. A cache whose key or sum does not match is not
// used: the site is encoded and the cache written anew.
const SiteCacheFile = "cache/site.yaml"

// SiteYAML returns the canonical form of a.Site, which was parsed from
// source by this program: from SiteCacheFile when its key is source's and
// this program's, else encoded now and, unless the store is a dry run,
// recorded there.
func (a *Authority) SiteYAML(source []byte) ([]byte, error) {
	key, ok := siteCacheKey(source)
	if !ok {
		return a.Site.Marshal()
	}
	data, err := a.Store.ReadFile(SiteCacheFile)
	switch {
	case err == nil:
		if y, ok := cachedSite(data, key); ok {
			return y, nil
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("authority: %w", err)
	}
	y, err := a.Site.Marshal()
	if err != nil || a.Store.DryRun() {
		return y, err
	}
	sum := sha256.Sum256(y)
	out := append([]byte("key "+key+" sum "+hex.EncodeToString(sum[:])+"\n"), y...)
	if err := a.Store.WriteFile(SiteCacheFile, out, privateMode); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	return y, nil
}

// cachedSite returns the cached form in data if its key is key and its
// sum holds.
func cachedSite(data []byte, key string) ([]byte, bool) {
	head, y, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return nil, false
	}
	var k, s string
	if n, err := fmt.Sscanf(string(head), "key %s sum %s", &k, &s); n != 2 || err != nil || k != key {
		return nil, false
	}
	sum := sha256.Sum256(y)
	if s != hex.EncodeToString(sum[:]) {
		return nil, false
	}
	return y, true
}

// siteCacheKey is the cache key of source planned by this program; false
// when the program's file cannot be told.
func siteCacheKey(source []byte) (string, bool) {
	fi, err := os.Stat("/proc/self/exe")
	if err != nil {
		return "", false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	h := sha256.New()
	fmt.Fprintf(h, "ztwizard site.yaml 1\nexe %d %d %d %d.%09d %d.%09d\n", st.Dev, st.Ino, st.Size,
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	h.Write(source)
	return hex.EncodeToString(h.Sum(nil)), true
}
