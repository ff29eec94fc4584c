package pki

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
)

// PKCS12Iterations is the PBKDF2 (encryption) and PKCS#12 KDF (MAC)
// iteration count of the bundles PKCS12 writes: fifty times OpenSSL 3's
// 2,048 and ten times Java's 10,000, at about 0.3 s per bundle. ztwizard
// protects its bundles with random passwords, against which iterations add
// little; 100,000 guards a bundle re-exported under a weaker one.
const PKCS12Iterations = 100_000

// Object identifiers of RFC 7292 (PKCS#12), RFC 8018 (PKCS#5) and the
// algorithms a bundle uses.
var (
	oidData                 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEncryptedData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidShroudedKeyBag       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidCertBag              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}
	oidX509Certificate      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 22, 1}
	oidFriendlyName         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	oidLocalKeyID           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 21}
	oidPBES2                = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2               = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA256       = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidSHA256               = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	asn1NULL                = asn1.RawValue{Tag: asn1.TagNull}
	pkcs12SaltLen           = 16
	pkcs12MACKeyID     byte = 3 // RFC 7292 B.3: the ID byte for MAC keys
)

// PKCS12 bundles cert, its key and the chain (usually the CA certificate)
// into a password-protected PKCS#12 file as OpenSSL 3, NSS, browsers and
// the operating systems' stores import it: the certificates and the key
// encrypted with PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC), an HMAC-SHA-256
// MAC, PKCS12Iterations iterations, and each bag named by a friendlyName
// (the certificate's common name; NSS's pk12util warns without one) and,
// for the key and its certificate, a localKeyId.
func PKCS12(cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate, password string) ([]byte, error) {
	if cert == nil || key == nil {
		return nil, errors.New("pki: PKCS#12: nil certificate or key")
	}
	pfx, err := encodePKCS12(rand.Reader, cert, key, chain, password, PKCS12Iterations)
	if err != nil {
		return nil, fmt.Errorf("pki: PKCS#12 for %q: %w", cert.Subject.CommonName, err)
	}
	return pfx, nil
}

type p12ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue // p12Explicit0
}

type p12EncryptedData struct {
	Version              int
	EncryptedContentInfo p12EncryptedContentInfo
}

type p12EncryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm p12AlgorithmIdentifier
	EncryptedContent           []byte `asn1:"tag:0,optional"`
}

type p12AlgorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type p12SafeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue  // p12Explicit0
	Attributes []p12Attribute `asn1:"set,optional"`
}

type p12Attribute struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue // a SET of one value
}

type p12CertBag struct {
	ID   asn1.ObjectIdentifier
	Data []byte `asn1:"tag:0,explicit"`
}

type p12EncryptedPrivateKeyInfo struct {
	Algorithm p12AlgorithmIdentifier
	Data      []byte
}

type p12PBES2Params struct {
	KDF    p12AlgorithmIdentifier
	Scheme p12AlgorithmIdentifier
}

type p12PBKDF2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int `asn1:"optional"`
	PRF        p12AlgorithmIdentifier
}

type p12DigestInfo struct {
	Algorithm p12AlgorithmIdentifier
	Digest    []byte
}

type p12MACData struct {
	MAC        p12DigestInfo
	Salt       []byte
	Iterations int
}

type p12PFX struct {
	Version  int
	AuthSafe p12ContentInfo
	MACData  p12MACData
}

// encodePKCS12 is PKCS12 with its randomness and iteration count given.
func encodePKCS12(rnd io.Reader, cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate, password string, iterations int) ([]byte, error) {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("key does not match the certificate")
	}
	keyID := sha1.Sum(cert.Raw) // as OpenSSL's localKeyId: the certificate's SHA-1
	localKeyID, err := p12Attr(oidLocalKeyID, keyID[:])
	if err != nil {
		return nil, err
	}
	named := func(c *x509.Certificate, attrs ...p12Attribute) ([]p12Attribute, error) {
		name := c.Subject.CommonName
		if name == "" {
			name = c.Subject.String()
		}
		fn, err := p12Attr(oidFriendlyName, asn1.RawValue{Tag: asn1.TagBMPString, Bytes: bmpString(name)})
		if err != nil {
			return nil, err
		}
		return append([]p12Attribute{fn}, attrs...), nil
	}

	var certBags []p12SafeBag
	for i, c := range append([]*x509.Certificate{cert}, chain...) {
		var attrs []p12Attribute
		if i == 0 {
			attrs, err = named(c, localKeyID)
		} else {
			attrs, err = named(c)
		}
		if err != nil {
			return nil, err
		}
		bag, err := asn1.Marshal(p12CertBag{ID: oidX509Certificate, Data: c.Raw})
		if err != nil {
			return nil, err
		}
		certBags = append(certBags, p12SafeBag{ID: oidCertBag, Value: p12Explicit0(bag), Attributes: attrs})
	}
	certSafe, err := asn1.Marshal(certBags)
	if err != nil {
		return nil, err
	}
	certAlg, certCipher, err := pbes2Encrypt(rnd, certSafe, password, iterations)
	if err != nil {
		return nil, err
	}
	encData, err := asn1.Marshal(p12EncryptedData{EncryptedContentInfo: p12EncryptedContentInfo{
		ContentType: oidData, ContentEncryptionAlgorithm: certAlg, EncryptedContent: certCipher}})
	if err != nil {
		return nil, err
	}

	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyAlg, keyCipher, err := pbes2Encrypt(rnd, pkcs8, password, iterations)
	if err != nil {
		return nil, err
	}
	shrouded, err := asn1.Marshal(p12EncryptedPrivateKeyInfo{Algorithm: keyAlg, Data: keyCipher})
	if err != nil {
		return nil, err
	}
	keyAttrs, err := named(cert, localKeyID)
	if err != nil {
		return nil, err
	}
	keySafe, err := asn1.Marshal([]p12SafeBag{{ID: oidShroudedKeyBag, Value: p12Explicit0(shrouded), Attributes: keyAttrs}})
	if err != nil {
		return nil, err
	}
	keySafeOctets, err := asn1.Marshal(keySafe)
	if err != nil {
		return nil, err
	}

	authSafe, err := asn1.Marshal([]p12ContentInfo{
		{ContentType: oidEncryptedData, Content: p12Explicit0(encData)},
		{ContentType: oidData, Content: p12Explicit0(keySafeOctets)},
	})
	if err != nil {
		return nil, err
	}
	authSafeOctets, err := asn1.Marshal(authSafe)
	if err != nil {
		return nil, err
	}

	macSalt := make([]byte, pkcs12SaltLen)
	if _, err := io.ReadFull(rnd, macSalt); err != nil {
		return nil, err
	}
	macKey := pkcs12KDF(append(bmpString(password), 0, 0), macSalt, pkcs12MACKeyID, iterations, sha256.Size)
	mac := hmac.New(sha256.New, macKey)
	mac.Write(authSafe)
	return asn1.Marshal(p12PFX{
		Version:  3,
		AuthSafe: p12ContentInfo{ContentType: oidData, Content: p12Explicit0(authSafeOctets)},
		MACData: p12MACData{
			MAC:        p12DigestInfo{Algorithm: p12AlgorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1NULL}, Digest: mac.Sum(nil)},
			Salt:       macSalt,
			Iterations: iterations,
		},
	})
}

// p12Explicit0 wraps DER in an explicit [0] tag. encoding/asn1 writes a
// RawValue as it is, whatever the field's tag says.
func p12Explicit0(der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: der}
}

// p12Attr is a bag attribute with one value.
func p12Attr(id asn1.ObjectIdentifier, value any) (p12Attribute, error) {
	v, err := asn1.Marshal(value)
	if err != nil {
		return p12Attribute{}, err
	}
	return p12Attribute{ID: id, Value: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: v}}, nil
}

// pbes2Encrypt encrypts plain with PBES2: PBKDF2-HMAC-SHA-256 over the
// password's UTF-8 bytes (as OpenSSL does for PBES2 inside PKCS#12), and
// AES-256-CBC with PKCS#7 padding.
func pbes2Encrypt(rnd io.Reader, plain []byte, password string, iterations int) (p12AlgorithmIdentifier, []byte, error) {
	salt, iv := make([]byte, pkcs12SaltLen), make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return p12AlgorithmIdentifier{}, nil, err
	}
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return p12AlgorithmIdentifier{}, nil, err
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		return p12AlgorithmIdentifier{}, nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return p12AlgorithmIdentifier{}, nil, err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	data := append(append([]byte(nil), plain...), make([]byte, pad)...)
	for i := len(plain); i < len(data); i++ {
		data[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)

	kdfParams, err := asn1.Marshal(p12PBKDF2Params{Salt: salt, Iterations: iterations, KeyLength: 32,
		PRF: p12AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1NULL}})
	if err != nil {
		return p12AlgorithmIdentifier{}, nil, err
	}
	ivParam, err := asn1.Marshal(iv)
	if err != nil {
		return p12AlgorithmIdentifier{}, nil, err
	}
	params, err := asn1.Marshal(p12PBES2Params{
		KDF:    p12AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdfParams}},
		Scheme: p12AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivParam}},
	})
	if err != nil {
		return p12AlgorithmIdentifier{}, nil, err
	}
	return p12AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: params}}, data, nil
}

// pkcs12KDF derives size bytes from password (a BMPString with its two
// terminating zero bytes) and salt with SHA-256, as RFC 7292 appendix B.2
// describes; id selects the key's use.
func pkcs12KDF(password, salt []byte, id byte, iterations, size int) []byte {
	const u, v = sha256.Size, sha256.BlockSize
	fill := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	d := make([]byte, v)
	for i := range d {
		d[i] = id
	}
	I := append(fill(salt), fill(password)...)
	var out []byte
	for len(out) < size {
		h := sha256.New()
		h.Write(d)
		h.Write(I)
		a := h.Sum(nil)
		for r := 1; r < iterations; r++ {
			s := sha256.Sum256(a)
			a = s[:]
		}
		out = append(out, a...)
		if len(out) >= size {
			break
		}
		// I_j = (I_j + B + 1) mod 2^(8v), B being A repeated to v bytes.
		b := make([]byte, v)
		for i := range b {
			b[i] = a[i%u]
		}
		for j := 0; j < len(I); j += v {
			carry := 1
			for k := v - 1; k >= 0; k-- {
				sum := int(I[j+k]) + int(b[k]) + carry
				I[j+k] = byte(sum)
				carry = sum >> 8
			}
		}
	}
	return out[:size]
}

// bmpString is s in UTF-16 big-endian, without a terminator.
func bmpString(s string) []byte {
	var out []byte
	for _, r := range utf16.Encode([]rune(s)) {
		out = append(out, byte(r>>8), byte(r))
	}
	return out
}
