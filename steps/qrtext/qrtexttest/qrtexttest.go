// Package qrtexttest reads QR codes drawn as text (qrtext.Draw) back with
// a real QR reader, zbarimg, for tests.
package qrtexttest

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ztwizard/steps/testenv"
)

// Decode turns a QR code drawn in half blocks (light modules as blocks,
// dark ones as spaces) back into an image and returns what zbarimg reads
// in it. It fails t if zbarimg is missing or reads nothing.
func Decode(t testing.TB, text string) string {
	t.Helper()
	zbarimg := testenv.Tool(t, "zbarimg")
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	width := 0
	var rows [][]rune
	for _, l := range lines {
		r := []rune(l)
		width = max(width, len(r))
		rows = append(rows, r)
	}
	const scale, border = 6, 8 // pixels per module; light modules around it
	img := image.NewGray(image.Rect(0, 0, (width+2*border)*scale, (2*len(rows)+2*border)*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	set := func(x, y int, light bool) {
		if light {
			return
		}
		for dy := range scale {
			for dx := range scale {
				img.SetGray((x+border)*scale+dx, (y+border)*scale+dy, color.Gray{})
			}
		}
	}
	for y, r := range rows {
		for x := range width {
			c := ' '
			if x < len(r) {
				c = r[x]
			}
			set(x, 2*y, c == '█' || c == '▀')
			set(x, 2*y+1, c == '█' || c == '▄')
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "qr.png")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(zbarimg, "--quiet", "--raw", "-Sbinary", path).Output()
	if err != nil {
		t.Fatalf("zbarimg read no QR code in:\n%s\n(%v)", text, err)
	}
	return string(out)
}
