package vigiltest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// A PushBrowser is a push subscription as a browser holds it: its key
// pair and auth secret, which decrypt what a push service hands it.
type PushBrowser struct {
	key  *ecdh.PrivateKey
	auth []byte
}

// NewPushBrowser makes a subscription's keys.
func NewPushBrowser(t testing.TB) *PushBrowser {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return &PushBrowser{key: k, auth: auth}
}

// Keys are the subscription's p256dh and auth, base64url, as
// PushSubscription.toJSON() gives them.
func (b *PushBrowser) Keys() (p256dh, auth string) {
	return base64.RawURLEncoding.EncodeToString(b.key.PublicKey().Bytes()), base64.RawURLEncoding.EncodeToString(b.auth)
}

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// Decrypt opens an aes128gcm body as RFC 8291 says a user agent does,
// with code of its own (not the sender's library): the header's salt,
// record size and the sender's public key, then the keys from ECDH and
// the auth secret, then one record and its padding.
func (b *PushBrowser) Decrypt(body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("short body")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen || rs < 18 {
		return nil, errors.New("bad header")
	}
	asPublic, ciphertext := body[21:21+idlen], body[21+idlen:]
	pub, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, err
	}
	secret, err := b.key.ECDH(pub)
	if err != nil {
		return nil, err
	}
	prkKey := hmacSHA256(b.auth, secret)
	info := append(append([]byte("WebPush: info\x00"), b.key.PublicKey().Bytes()...), asPublic...)
	ikm := hmacSHA256(prkKey, info, []byte{1})
	prk := hmacSHA256(salt, ikm)
	cek := hmacSHA256(prk, []byte("Content-Encoding: aes128gcm\x00"), []byte{1})[:16]
	nonce := hmacSHA256(prk, []byte("Content-Encoding: nonce\x00"), []byte{1})[:12]
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(plain, 2) // the last record's delimiter, then zeros
	if i < 0 || strings.Trim(string(plain[i+1:]), "\x00") != "" {
		return nil, errors.New("bad padding")
	}
	return plain[:i], nil
}
