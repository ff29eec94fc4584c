package tui

import "ztwizard/steps/qrtext"

// qrText draws data as a QR code in text (see qrtext.Draw): light modules
// as blocks, so the wizard paints it white on black whatever the
// terminal's colours.
func qrText(data []byte) (string, error) { return qrtext.Draw(data) }
