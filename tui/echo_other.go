//go:build !linux

package tui

import "errors"

// echoOff is not there but on Linux: a passphrase is asked only there.
func echoOff(int) (func(), error) {
	return nil, errors.New("terminal: cannot turn off the echo on this system")
}
