// Package qrtext draws QR codes as text for a terminal, and makes the
// payload a WireGuard app scans from a wg-quick file.
package qrtext

import (
	"fmt"
	"strings"

	"rsc.io/qr"
)

// quiet is the light border around the code, in modules.
const quiet = 2

// Draw draws data as a QR code in text, two modules per character cell
// (half blocks), lines joined by newlines with none at the end. The
// blocks are the code's light modules and the spaces its dark ones, so it
// reads right when drawn light on dark: paint it white on black, or show
// it on a dark terminal.
func Draw(data []byte) (string, error) {
	code, err := qr.Encode(string(data), qr.L)
	if err != nil {
		return "", fmt.Errorf("qr: %w", err)
	}
	n := code.Size + 2*quiet
	light := func(x, y int) bool {
		x, y = x-quiet, y-quiet
		if x < 0 || y < 0 || x >= code.Size || y >= code.Size {
			return true
		}
		return !code.Black(x, y)
	}
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		for x := range n {
			top, bottom := light(x, y), y+1 >= n || light(x, y+1)
			if y+1 >= n {
				bottom = false
			}
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteRune(' ')
			}
		}
		if y+2 < n {
			b.WriteByte('\n')
		}
	}
	return b.String(), nil
}

// WireGuard is a wg-quick file without comments and blank lines, for a
// smaller QR code.
func WireGuard(conf []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(conf), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	return []byte(strings.Join(out, "\n") + "\n")
}
