package events

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/billfn/billfn/shared/config"
)

// Origin proofs: who wrote an event (docs/security.md "Who signs what").
//
// The delivery signature (SignatureHeader) proves that the kafka-trigger
// delivered an event; it says nothing about who produced it, and every
// principal that may write a topic could write any source into it. So each
// event also carries the Ed25519 signature of its producer, in two
// CloudEvents extension attributes:
//
//	originkid  the key id: the first 8 bytes of SHA-256 of the 32-byte
//	           public key, in lower-case hex (16 characters)
//	originsig  the Ed25519 signature of OriginBytes(ev), base64url without
//	           padding (86 characters)
//
// A function signs with its own private key (the outbox does, as it relays
// the function's rows to Kafka); an outside integrator signs its commands
// with its own (cmd/sign-event). Consumers hold only public keys, by source
// (OriginKeys): an event verifies only with a key of the source it claims,
// and AllowedSource then decides whether that source may emit its type, so
// a key can neither sign for another source nor make its source emit
// another's facts.
const (
	OriginSigExt = "originsig"
	OriginKidExt = "originkid"
)

// originVersion starts the signed bytes: a new encoding gets a new tag,
// so a signature can never be read under another encoding.
const originVersion = "billfn-origin-v1\n"

// OriginBytes is the canonical encoding an origin proof signs: the tag
// line "billfn-origin-v1\n", then for each attribute, in this order,
//
//	id, source, type, time, datacontenttype, subject, data
//
// its name, a space, the byte length of its value in decimal, "\n", the
// value's bytes and "\n". time is the event's time in UTC formatted as
// RFC 3339 with nanoseconds and no trailing zeros (Go's time.RFC3339Nano,
// "2026-12-02T23:48:57.123Z"), so any equivalent spelling of the same
// instant signs the same. data is the event's data bytes: for JSON data
// (datacontenttype absent or a JSON media type, not data_base64) the JSON
// value in compact form — insignificant whitespace removed, and <, >, &,
// U+2028, U+2029 inside strings written as \u003c, \u003e, \u0026,
// \u2028, \u2029 (Go's json.Compact then json.HTMLEscape: exactly what
// encoding/json and the CloudEvents SDK write when they re-encode an event,
// so a relay that re-encodes does not break the proof; members keep their
// order and numbers their spelling); for other data the bytes themselves
// (decoded, for data_base64). An absent attribute has the empty value. The
// lengths make the encoding unambiguous whatever the values hold.
// Extensions (traceparent, the proof itself) are not signed.
func OriginBytes(ev Event) []byte {
	return appendOriginBytes(nil, ev, SourceOf(ev))
}

// appendOriginBytes appends OriginBytes(ev) to dst, source being
// SourceOf(ev), which the caller has read already: VerifyAll writes a
// delivery's events into one buffer, with no allocation per event.
func appendOriginBytes(dst []byte, ev Event, source string) []byte {
	data := ev.Data()
	if len(data) > 0 && !ev.DataBase64 && jsonMedia(ev.DataContentType()) {
		data = canonicalJSON(data)
	}
	var tb [64]byte // the time's RFC 3339 form, without an allocation
	var t []byte
	if !ev.Time().IsZero() {
		t = ev.Time().UTC().AppendFormat(tb[:0], time.RFC3339Nano)
	}
	return appendOriginValues(dst, ev.ID(), source, ev.Type(), t, ev.DataContentType(), ev.Subject(), data)
}

// originBytes is OriginBytes of the attributes' values: t formatted as
// OriginBytes says, data already canonical.
func originBytes(id, source, typ, t, contentType, subject string, data []byte) []byte {
	return appendOriginValues(nil, id, source, typ, t, contentType, subject, data)
}

// appendOriginValues appends OriginBytes of the attributes' values to dst.
func appendOriginValues[T string | []byte](dst []byte, id, source, typ string, t T, contentType, subject string, data []byte) []byte {
	dst = slices.Grow(dst, len(originVersion)+160+len(id)+len(source)+len(typ)+len(contentType)+len(subject)+len(data))
	dst = append(dst, originVersion...)
	dst = appendOriginField(dst, "id", id)
	dst = appendOriginField(dst, "source", source)
	dst = appendOriginField(dst, "type", typ)
	dst = appendOriginField(dst, "time", t)
	dst = appendOriginField(dst, "datacontenttype", contentType)
	dst = appendOriginField(dst, "subject", subject)
	dst = append(dst, "data "...)
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	dst = append(dst, '\n')
	dst = append(dst, data...)
	return append(dst, '\n')
}

// appendOriginField appends one attribute of OriginBytes: its name, a
// space, the value's length in decimal, "\n", the value and "\n".
func appendOriginField[V string | []byte](dst []byte, name string, v V) []byte {
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(len(v)), 10)
	dst = append(dst, '\n')
	dst = append(dst, v...)
	return append(dst, '\n')
}

// canonicalJSON is data compact and HTML-escaped (see OriginBytes); data
// that is not JSON stays as it is. Data with no byte that either pass
// could change — whitespace between tokens (Compact keeps what strings
// hold), and <, >, & or the lead byte of U+2028/U+2029 anywhere — is its
// own canonical form, as encoding/json writes most events: it is returned
// without the two passes, which cost every consumer a few microseconds
// per event. Spaces inside strings (a description, a name) keep it so:
// they sent every event whose data has one through both passes, at its
// signature and at each consumer's verification (0.6 % of the CPU of a
// payment in make bench, 2026-12-05, on process-transaction's and
// capture-payment's events). Data that is not JSON is returned as it is
// either way, so the string boundaries need only be right for JSON.
func canonicalJSON(data []byte) []byte {
	inString := false
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '<', '>', '&', 0xe2:
			return slowCanonicalJSON(data)
		case '"':
			inString = !inString
		case '\\':
			if inString {
				i++ // an escaped byte: in JSON none of the above
			}
		case ' ', '\t', '\n', '\r':
			if !inString {
				return slowCanonicalJSON(data)
			}
		}
	}
	return data
}

// slowCanonicalJSON is canonicalJSON by its definition.
func slowCanonicalJSON(data []byte) []byte {
	var c bytes.Buffer
	if err := json.Compact(&c, data); err != nil {
		return data
	}
	var h bytes.Buffer
	json.HTMLEscape(&h, c.Bytes())
	return h.Bytes()
}

// KeyID is the originkid of a public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// OriginSigner signs events as one principal.
type OriginSigner struct {
	key ed25519.PrivateKey
	kid string
}

// NewOriginSigner returns a signer with key.
func NewOriginSigner(key ed25519.PrivateKey) *OriginSigner {
	return &OriginSigner{key: key, kid: KeyID(key.Public().(ed25519.PublicKey))}
}

// ParseOriginSigner reads a private key file: PEM PKCS#8 Ed25519 (what
// `openssl genpkey -algorithm ed25519` writes and cmd/stack and make
// deploy-secrets generate).
func ParseOriginSigner(pemBytes []byte) (*OriginSigner, error) {
	blk, _ := pem.Decode(bytes.TrimSpace(pemBytes))
	if blk == nil {
		return nil, errors.New("origin key: not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("origin key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("origin key: %T is not an Ed25519 key", k)
	}
	return NewOriginSigner(ek), nil
}

// GenerateOriginKey returns a fresh Ed25519 private key as PEM PKCS#8 and
// its public key as a line of an OriginKeys file for source.
func GenerateOriginKey(source string) (privatePEM, publicLine string, err error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	privatePEM, err = OriginKeyPEM(priv)
	if err != nil {
		return "", "", err
	}
	return privatePEM, NewOriginSigner(priv).PublicLine(source), nil
}

// OriginKeyPEM encodes a private key as PEM PKCS#8.
func OriginKeyPEM(priv ed25519.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// KeyID is the id of the signer's key (originkid).
func (s *OriginSigner) KeyID() string { return s.kid }

// Public is the signer's public key.
func (s *OriginSigner) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// PublicLine is the line of an OriginKeys file trusting this signer for
// source: "<source> <base64 public key>".
func (s *OriginSigner) PublicLine(source string) string {
	return source + " " + base64.StdEncoding.EncodeToString(s.Public())
}

// Sign sets ev's origin proof (replacing any earlier one, a tree's
// originpath with it).
func (s *OriginSigner) Sign(ev *Event) {
	sig := ed25519.Sign(s.key, OriginBytes(*ev))
	ev.SetExtension(OriginKidExt, s.kid)
	ev.SetExtension(OriginSigExt, base64.RawURLEncoding.EncodeToString(sig))
	ev.SetExtension(OriginPathExt, nil)
}

// WithoutOrigin is a copy of ev without its origin proof (originkid,
// originsig and a tree's originpath): what leaves billfn, to an endpoint
// that has no use for its internal proofs. ev is left as it is.
func WithoutOrigin(ev Event) Event {
	c := ev.Clone()
	c.SetExtension(OriginKidExt, nil)
	c.SetExtension(OriginSigExt, nil)
	c.SetExtension(OriginPathExt, nil)
	return c
}

// SignEncoded is Sign for an event already encoded: raw is its
// structured-mode JSON object (it decodes to ev), and the result is raw
// with the proof's two members appended, as a consumer decodes it to ev
// signed. Encoding the whole event again, as Sign then Marshal do, cost the
// outbox relay as much as the signature itself. ok is false when raw is
// not a JSON object or ev already carries a proof (Sign replaces it): use
// Sign and Marshal then.
func (s *OriginSigner) SignEncoded(ev Event, raw []byte) (signed []byte, ok bool) {
	exts := ev.Extensions()
	if _, has := exts[OriginSigExt]; has {
		return nil, false
	}
	if _, has := exts[OriginKidExt]; has {
		return nil, false
	}
	if _, has := exts[OriginPathExt]; has {
		return nil, false
	}
	body := bytes.TrimSpace(raw)
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, false
	}
	return appendProof(body, s.kid, ed25519.Sign(s.key, OriginBytes(ev)), ""), true
}

// Origin verification errors; each wraps one of these.
var (
	// ErrNoOrigin: the event carries no origin proof.
	ErrNoOrigin = errors.New("no origin proof")
	// ErrBadOrigin: the proof is malformed, names a key its source does
	// not hold, or does not match the event.
	ErrBadOrigin = errors.New("origin proof invalid")
)

// OriginKeys are the public keys consumers verify origin proofs with, by
// source; several per source while a key rotates. Safe for concurrent use;
// Replace swaps the whole set (a reloaded file).
type OriginKeys struct {
	mu    sync.RWMutex
	keys  map[string]map[string]ed25519.PublicKey // source -> kid -> key
	watch *config.Watched                         // the secret file, when the keys follow one
	// verifiedAlone, when set (by tests only: export_test.go's
	// CountVerifiedAlone), sees each proof verified on its own rather
	// than in a batch equation.
	verifiedAlone func()
	trees         verifiedTrees // tree signatures verified already (origintree.go)
}

// WatchOriginKeys parses text (ParseOriginKeys; name says where it came
// from) and, when the secret file <SecretsDir>/<secret> exists, reads it
// again whenever it changes, at most every every (<= 0:
// config.DefaultReloadEvery): a key added for a new integrator or a
// rotated function key is trusted without a restart, a removed one no
// longer is. A changed file that does not parse leaves the keys in force.
func WatchOriginKeys(text, name, secret string, every time.Duration) (*OriginKeys, error) {
	ks, err := ParseOriginKeys(text, name)
	if err != nil {
		return nil, err
	}
	w, err := config.WatchSecret(secret, every, func(value string) error {
		next, err := ParseOriginKeys(value, "secret file "+secret)
		if err != nil {
			return err
		}
		ks.Replace(next)
		return nil
	})
	if err != nil {
		return nil, err
	}
	ks.watch = w
	return ks, nil
}

// ParseOriginKeys reads an OriginKeys file: one key per line,
//
//	<source> <base64 of the 32-byte Ed25519 public key>
//
// for example "/functions/capture-payment 3u0V…=". Blank lines and lines
// starting with # are ignored; ";" also separates entries, so the list
// fits in one environment variable. A source may have several lines (a key
// rotation). name says where the text came from, for errors.
func ParseOriginKeys(text, name string) (*OriginKeys, error) {
	ks := &OriginKeys{keys: map[string]map[string]ed25519.PublicKey{}}
	for i, line := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ';' }) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%s: entry %d: want \"<source> <base64 Ed25519 public key>\", got %d fields", name, i+1, len(f))
		}
		raw, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil {
			raw, err = base64.RawURLEncoding.DecodeString(f[1])
		}
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s: entry %d (%s): not a base64 Ed25519 public key of %d bytes", name, i+1, f[0], ed25519.PublicKeySize)
		}
		ks.add(f[0], ed25519.PublicKey(raw))
	}
	if len(ks.keys) == 0 {
		return nil, fmt.Errorf("%s: no origin public keys", name)
	}
	return ks, nil
}

func (ks *OriginKeys) add(source string, pub ed25519.PublicKey) {
	if ks.keys == nil {
		ks.keys = map[string]map[string]ed25519.PublicKey{}
	}
	m := ks.keys[source]
	if m == nil {
		m = map[string]ed25519.PublicKey{}
		ks.keys[source] = m
	}
	m[KeyID(pub)] = pub
}

// Add trusts pub for source, beside the keys it already has.
func (ks *OriginKeys) Add(source string, pub ed25519.PublicKey) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.add(source, pub)
}

// Replace makes ks hold exactly the keys of other (a reloaded file).
func (ks *OriginKeys) Replace(other *OriginKeys) {
	other.mu.RLock()
	m := other.keys
	other.mu.RUnlock()
	ks.mu.Lock()
	ks.keys = m
	ks.mu.Unlock()
}

// Sources lists the sources ks holds keys for, sorted.
func (ks *OriginKeys) Sources() []string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make([]string, 0, len(ks.keys))
	for s := range ks.keys {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Knows reports whether ks holds any key of source.
func (ks *OriginKeys) Knows(source string) bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return len(ks.keys[source]) > 0
}

// Holds reports whether pub is one of source's keys.
func (ks *OriginKeys) Holds(source string, pub ed25519.PublicKey) bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	k, ok := ks.keys[source][KeyID(pub)]
	return ok && k.Equal(pub)
}

func (ks *OriginKeys) lookup(source, kid string) (ed25519.PublicKey, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	k, ok := ks.keys[source][kid]
	return k, ok
}

// Verify checks ev's origin proof: a signature over OriginBytes(ev) by the
// key originkid names, which must be one of the keys of ev's source, or,
// for an event signed in a tree (originpath), that key's signature over
// the root its path folds into (origintree.go). It wraps ErrNoOrigin or
// ErrBadOrigin. A nil OriginKeys trusts no source.
func (ks *OriginKeys) Verify(ev Event) error {
	kid, sig, path, err := proofOf(ev)
	if err != nil {
		return err
	}
	if ks == nil {
		return fmt.Errorf("%w: this consumer trusts no origin keys", ErrBadOrigin)
	}
	ks.watch.Check()
	source := SourceOf(ev)
	pub, ok := ks.lookup(source, kid)
	if !ok {
		return fmt.Errorf("%w: key %q is not a key of source %q", ErrBadOrigin, truncate(kid, 64), truncate(source, 200))
	}
	msg := appendOriginBytes(nil, ev, source)
	if path == nil {
		if !ks.verifyAlone(pub, msg, sig[:]) {
			return badSignature(kid)
		}
		return nil
	}
	if msg, err = path.message(msg); err != nil {
		return badPath(kid)
	}
	key := treeKey(pub, sig[:], msg)
	if ks.trees.has(key) {
		return nil
	}
	if !ks.verifyAlone(pub, msg, sig[:]) {
		return badSignature(kid)
	}
	ks.trees.add(key)
	return nil
}

// proofOf reads ev's origin proof, the checks of its form: both
// attributes, strings, the signature base64url (padding allowed) of
// ed25519.SignatureSize bytes, and originpath, when the event has one, a
// path as parseOriginPath reads it. It reads ev's own extension map and
// decodes the signature into an array: no allocation for an event signed
// alone.
func proofOf(ev Event) (kid string, sig [ed25519.SignatureSize]byte, path *originPath, err error) {
	exts := extensionsOf(ev)
	sigV, hasSig := exts[OriginSigExt]
	kidV, hasKid := exts[OriginKidExt]
	pathV, hasPath := exts[OriginPathExt]
	if !hasSig && !hasKid && !hasPath {
		return "", sig, nil, fmt.Errorf("%w: the event has no %s/%s attributes", ErrNoOrigin, OriginSigExt, OriginKidExt)
	}
	sigS, err1 := types.ToString(sigV)
	kid, err2 := types.ToString(kidV)
	if !hasSig || !hasKid || err1 != nil || err2 != nil {
		return "", sig, nil, fmt.Errorf("%w: %s and %s must both be strings", ErrBadOrigin, OriginSigExt, OriginKidExt)
	}
	if !decodeSignature(&sig, strings.TrimRight(sigS, "=")) {
		return "", sig, nil, fmt.Errorf("%w: %s is not a base64url Ed25519 signature", ErrBadOrigin, OriginSigExt)
	}
	if hasPath {
		pathS, err := types.ToString(pathV)
		if err == nil {
			path, err = parseOriginPath(pathS)
		}
		if err != nil {
			return "", sig, nil, fmt.Errorf("%w: %s is not <index>.<size>.<hashes> of a tree of 2 to %d events", ErrBadOrigin, OriginPathExt, maxVerifiedTreeSize)
		}
	}
	return kid, sig, path, nil
}

// badPath: an originpath that does not fold into a root (its number of
// hashes is not the tree's).
func badPath(kid string) error {
	return fmt.Errorf("%w: the %s of key %s's tree does not fit its index and size", ErrBadOrigin, OriginPathExt, kid)
}

// decodeSignature decodes s into sig as
// base64.RawURLEncoding.DecodeString(s) does, and reports whether that
// answers ed25519.SignatureSize bytes and no error. The decoder skips
// '\r' and '\n', so a longer s may decode to as many bytes: such an s is
// left to DecodeString itself.
func decodeSignature(sig *[ed25519.SignatureSize]byte, s string) bool {
	if base64.RawURLEncoding.DecodedLen(len(s)) != ed25519.SignatureSize {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != ed25519.SignatureSize {
			return false
		}
		copy(sig[:], b)
		return true
	}
	n, err := base64.RawURLEncoding.Decode(sig[:], []byte(s))
	return err == nil && n == ed25519.SignatureSize
}
