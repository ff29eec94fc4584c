package tui

import (
	"fmt"
	"strings"

	"rsc.io/qr"
)

// qrQuiet is the light border around the code, in modules.
const qrQuiet = 2

// qrText draws data as a QR code in text, two modules per character cell
// (half blocks). The blocks are the code's light modules and the spaces
// its dark ones, so it reads right when drawn light on dark; the wizard
// paints it white on black whatever the terminal's colours.
func qrText(data []byte) (string, error) {
	code, err := qr.Encode(string(data), qr.L)
	if err != nil {
		return "", fmt.Errorf("qr: %w", err)
	}
	n := code.Size + 2*qrQuiet
	light := func(x, y int) bool {
		x, y = x-qrQuiet, y-qrQuiet
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
