package authority

import (
	"bytes"
	"encoding/pem"
	"fmt"
)

// pemBody returns the DER of the first PEM block of the given type.
func pemBody(data []byte, typ string) ([]byte, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("no %s PEM block", typ)
		}
		if block.Type == typ {
			return block.Bytes, nil
		}
	}
}

// isEncrypted tells whether a stored private key is encrypted: PKCS#8
// "ENCRYPTED PRIVATE KEY", or an OpenSSH key whose cipher is not "none".
func isEncrypted(keyPEM []byte) bool {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return false
	}
	switch block.Type {
	case "ENCRYPTED PRIVATE KEY":
		return true
	case "OPENSSH PRIVATE KEY":
		// "openssh-key-v1\0" then the cipher name as an SSH string.
		const magic = "openssh-key-v1\x00"
		rest, ok := bytes.CutPrefix(block.Bytes, []byte(magic))
		if !ok || len(rest) < 4 {
			return false
		}
		n := int(rest[0])<<24 | int(rest[1])<<16 | int(rest[2])<<8 | int(rest[3])
		return len(rest) >= 4+n && string(rest[4:4+n]) != "none"
	}
	return false
}
