package sshca

import (
	"strconv"
	"testing"
	"time"

	"ztwizard/steps/testenv"
)

// BenchmarkSignUser compares signing a user certificate in process with
// running ssh-keygen for the same certificate.
func BenchmarkSignUser(b *testing.B) {
	b.Run("ztwizard", func(b *testing.B) {
		ca, _ := newKey(b)
		_, pub := newKey(b)
		req := Request{Key: pub, KeyID: "id", Principals: []string{"alice", "devops"}, Validity: 4 * time.Hour}
		for i := 1; b.Loop(); i++ {
			req.Serial = uint64(i)
			c, err := SignUser(ca, req, testNow)
			if err != nil {
				b.Fatal(err)
			}
			_ = CertLine(c, "id")
		}
	})
	b.Run("ssh-keygen", func(b *testing.B) {
		dir := b.TempDir()
		ca, _ := newKey(b)
		_, pub := newKey(b)
		data, err := EncodePrivateKey(ca, "ca", nil)
		if err != nil {
			b.Fatal(err)
		}
		testenv.WriteFile(b, dir, "ca", data)
		testenv.WriteFile(b, dir, "user.pub", []byte(PublicKeyLine(pub, "user")))
		for i := 1; b.Loop(); i++ {
			mustKeygen(b, dir, "-q", "-s", "ca", "-I", "id", "-n", "alice,devops", "-V", "-5m:+4h", "-z", strconv.Itoa(i), "user.pub")
		}
	})
}
