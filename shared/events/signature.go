package events

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the deliverer's signature, which names the
// function the delivery is for:
//
//	X-Billfn-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<function>.<body>")>
//
// the shape of Stripe's webhook signatures (SignDelivery, VerifyDelivery).
// Several v1 values may be present while the signing key rotates; one
// valid value is enough. Every function holds the same delivery key, so a
// signature over the timestamp and body alone would let whoever captured
// one function's delivery have any other function take it; naming the
// function closes that.
const SignatureHeader = "X-Billfn-Signature"

// DefaultTolerance is how far a signature's timestamp may be from now.
const DefaultTolerance = 5 * time.Minute

// Signature errors.
var (
	ErrNoSignature      = errors.New("no signature")
	ErrBadSignature     = errors.New("signature does not match")
	ErrStaleSignature   = errors.New("signature timestamp outside tolerance")
	ErrMalformedSigHead = errors.New("malformed signature header")
	ErrBadRecipient     = errors.New("a delivery's recipient must be a function name: not empty, no '.'")
)

// Sign returns the header value signing body at t with key, Stripe's
// scheme: v1 = HMAC-SHA256(key, "<t>.<body>"). For signatures that name no
// recipient (the sandbox gateway's webhooks); a delivery is SignDelivery's.
func Sign(key []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(key, ts, "", body))
}

// SignDelivery returns the SignatureHeader value signing a delivery of body
// to function at t with key: v1 = HMAC-SHA256(key, "<t>.<function>.<body>").
// function is the recipient's name as its receiver knows it
// (Receiver.Consumer: the function's name); it holds no '.', so the signed
// bytes split one way only (the time is digits).
func SignDelivery(key []byte, t time.Time, function string, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(key, ts, function+".", body))
}

// Signer signs as SignDelivery does, keeping the HMAC state of the key it last
// signed with: a signature then costs one allocation (the header) where
// SignDelivery's hmac.New costs a dozen and hashes the key's padded blocks again.
// For a deliverer that signs every record (the kafka-trigger); a key
// rotation is a new key passed in. Not safe for concurrent use.
type Signer struct {
	key []byte
	mac hash.Hash
	sum [sha256.Size]byte
	buf []byte
}

// SignDelivery is SignDelivery(key, t, function, body) from s's kept state.
func (s *Signer) SignDelivery(key []byte, t time.Time, function string, body []byte) string {
	if s.mac == nil || !bytes.Equal(s.key, key) {
		s.key, s.mac = bytes.Clone(key), hmac.New(sha256.New, key)
	} else {
		s.mac.Reset()
	}
	b := append(s.buf[:0], "t="...)
	b = strconv.AppendInt(b, t.Unix(), 10)
	b = append(b, '.')
	n := len(b)
	b = append(append(b, function...), '.')
	s.mac.Write(b[2:]) // "<t>.<function>."
	b = b[:n]
	s.mac.Write(body)
	b = append(b[:len(b)-1], ",v1="...)
	b = hex.AppendEncode(b, s.mac.Sum(s.sum[:0]))
	s.buf = b
	return string(b)
}

// mac is HMAC-SHA256(key, "<ts>." + scope + body): scope is "" or a
// delivery's "<function>.".
func mac(key []byte, ts, scope string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write([]byte(scope))
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks header against body with any of keys, Sign's
// scheme (no recipient).
func VerifySignature(keys [][]byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	return verify(keys, header, "", body, now, tolerance)
}

// VerifyDelivery checks header against a delivery of body to function
// with any of keys, SignDelivery's scheme: a delivery signed for another
// function fails as a wrong key does (ErrBadSignature).
func VerifyDelivery(keys [][]byte, header, function string, body []byte, now time.Time, tolerance time.Duration) error {
	if function == "" || strings.Contains(function, ".") {
		return ErrBadRecipient
	}
	return verify(keys, header, function+".", body, now, tolerance)
}

func verify(keys [][]byte, header, scope string, body []byte, now time.Time, tolerance time.Duration) error {
	if header == "" {
		return ErrNoSignature
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformedSigHead
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return ErrMalformedSigHead
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformedSigHead
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStaleSignature
	}
	for _, k := range keys {
		want := mac(k, ts, scope, body)
		for _, s := range sigs {
			if hmac.Equal(want, s) {
				return nil
			}
		}
	}
	return ErrBadSignature
}

// MinKeyLen is the shortest signing key accepted, in bytes: an HMAC-SHA256
// key shorter than the hash's 32 bytes is weaker than the MAC.
const MinKeyLen = 32

// ParseKeys splits a comma-separated list of signing keys (several during a
// rotation; the first is the one to sign with), trimming spaces. It refuses
// an empty list and any key shorter than MinKeyLen bytes, with an error
// that names variable (the setting that holds the list) but not the key.
func ParseKeys(list, variable string) ([][]byte, error) {
	var keys [][]byte
	for i, k := range strings.Split(list, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("%s: key #%d is %d bytes; every signing key must be at least %d bytes (e.g. openssl rand -hex 32)", variable, i+1, len(k), MinKeyLen)
		}
		keys = append(keys, []byte(k))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", variable)
	}
	return keys, nil
}
