package qrtext_test

import (
	"strings"
	"testing"

	"ztwizard/steps/qrtext"
	"ztwizard/steps/qrtext/qrtexttest"
)

func TestDrawReadsBack(t *testing.T) {
	conf := []byte(`# node web
[Interface]
PrivateKey = oK56DE9Ue9zK76rAc8pBl6opph+1v36lm7cXXsQKrQM=
Address = 10.100.0.2/24

# db
[Peer]
PublicKey = GtL7fZc/bLnqZldpVofMCD6hDjrK28SsdLxevJ+qtKU=
AllowedIPs = 10.100.0.1/32
Endpoint = 192.168.1.100:51820
`)
	payload := qrtext.WireGuard(conf)
	if strings.Contains(string(payload), "#") || strings.Contains(string(payload), "\n\n") {
		t.Errorf("payload keeps comments or blank lines:\n%s", payload)
	}
	for _, data := range [][]byte{payload, []byte("x"), []byte(strings.Repeat("0123456789", 60))} {
		text, err := qrtext.Draw(data)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(text, "\n") {
			t.Error("Draw ends with a newline")
		}
		if got := qrtexttest.Decode(t, text); got != string(data) {
			t.Errorf("zbarimg read %q, want %q", got, data)
		}
	}
}
