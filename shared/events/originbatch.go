package events

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"filippo.io/edwards25519"
)

// Verifying a delivery's origin proofs together (VerifyAll).
//
// One Ed25519 verification costs two scalar multiplications, about 45 µs
// here: half of what aggregate-report and handle-webhook spent per
// transfer of a batch (make bench -only batch-transfers, 2026-12-03). The
// events of one delivery are verified instead as one batch equation
// (RFC 8032 §5.1.7's check for each, combined with random coefficients):
//
//	[Σ zᵢSᵢ]B = Σ [zᵢ]Rᵢ + Σ [zᵢkᵢ]Aᵢ
//
// where kᵢ = SHA-512(Rᵢ ‖ Aᵢ ‖ OriginBytes(evᵢ)) and the zᵢ are fresh
// random 128-bit scalars. The terms of one key (every event of a producer)
// are one scalar multiplication, and a multi-scalar multiplication shares
// its doublings among all the Rᵢ, so each further event costs a fraction
// of a verification.
//
// What it accepts: every event that crypto/ed25519.Verify accepts makes
// the equation hold exactly, so a valid delivery is never refused. When
// the equation does not hold, or any event's proof is malformed (S not
// canonical, R not the canonical encoding of a point), each event is
// verified alone with crypto/ed25519.Verify, which then decides — the
// batch only ever answers "all valid". It can say so wrongly in two ways
// only: with probability 2⁻¹²⁸ (the zᵢ), or for a signature whose
// equation misses by a point of small order (R chosen with a torsion
// component), which only the holder of the private key can make (it needs
// the discrete logarithm of A) and which proves that holder signed the
// event just as well; no one else can forge or alter a signed event
// through it. That holds for keys of prime order; a key with a small-order
// component (none that a real key generator makes) is never used in a
// batch (batchKey), its events are verified alone.

// minBatchVerify is the fewest signatures worth a batch equation: two
// already are. Measured here (go test -bench, 2026-12-04, since R's
// canonical check reads its bytes instead of encoding the point again): a
// delivery of 2 events costs 42–45 µs per event together against 54–58
// alone, of 3 events 31–36 against 53–58, of 4 events 27–28 against
// 53–74. Below 4 every event was verified alone; process-transaction's
// deliveries of transaction.requested, batches of two or three with its
// 100 ms wait at make bench's payments rate, were.
const minBatchVerify = 2

// verifyAlone verifies one signature on its own: Verify's, and VerifyAll's
// when a batch is too small or its equation fails.
func (ks *OriginKeys) verifyAlone(pub ed25519.PublicKey, msg, sig []byte) bool {
	if ks.verifiedAlone != nil {
		ks.verifiedAlone()
	}
	return ed25519.Verify(pub, msg, sig)
}

// VerifyAll is Verify for each of evs: errs[i] is exactly what
// Verify(evs[i]) answers. The proofs that pass Verify's checks of form and
// key are verified together (see above), and alone only when the batch
// fails.
func (ks *OriginKeys) VerifyAll(evs []Event) []error {
	errs := make([]error, len(evs))
	if ks == nil || len(evs) < minBatchVerify {
		for i, ev := range evs {
			errs[i] = ks.Verify(ev)
		}
		return errs
	}
	ks.watch.Check()
	items := make([]batchItem, 0, len(evs))
	// Every event's signed bytes in one buffer: each item's msg is its
	// span, set once the buffer has stopped growing.
	size := 0
	for _, ev := range evs {
		size += len(originVersion) + 300 + len(ev.ID()) + len(ev.Type()) + len(ev.Subject()) + len(ev.DataEncoded)
	}
	buf := make([]byte, 0, size)
	ends := make([]int, 0, len(evs))
	for i, ev := range evs {
		source := SourceOf(ev)
		it, err := ks.prepare(ev, source)
		if err != nil {
			errs[i] = err
			continue
		}
		it.index = i
		buf = appendOriginBytes(buf, ev, source)
		items, ends = append(items, it), append(ends, len(buf))
	}
	start, trees := 0, false
	for k := range items {
		items[k].msg = buf[start:ends[k]:ends[k]]
		start = ends[k]
		trees = trees || items[k].path != nil
	}
	if trees {
		return ks.verifyTrees(items, errs)
	}
	if len(items) >= minBatchVerify && verifyBatch(items) {
		return errs
	}
	for _, it := range items {
		if !ks.verifyAlone(it.pub, it.msg, it.sig[:]) {
			errs[it.index] = badSignature(it.kid)
		}
	}
	return errs
}

// verifyTrees is VerifyAll's end for a delivery with events signed in
// trees. The events of one tree share its signature (origintree.go):
// each signature is verified once, and not at all when it was before.
func (ks *OriginKeys) verifyTrees(items []batchItem, errs []error) []error {
	todo := make([]batchItem, 0, len(items))
	at := make([]int, len(items)) // items[k]'s signature: todo[at[k]], or -1 verified already, -2 a bad path
	var seen map[string]int
	for k := range items {
		it := &items[k]
		if it.path == nil {
			at[k], todo = len(todo), append(todo, *it)
			continue
		}
		msg, err := it.path.message(it.msg)
		if err != nil {
			errs[it.index], at[k] = badPath(it.kid), -2
			continue
		}
		it.msg, it.tree = msg, treeKey(it.pub, it.sig[:], msg)
		if ks.trees.has(it.tree) {
			at[k] = -1
			continue
		}
		if j, ok := seen[it.tree]; ok {
			at[k] = j
			continue
		}
		if seen == nil {
			seen = map[string]int{}
		}
		seen[it.tree], at[k], todo = len(todo), len(todo), append(todo, *it)
	}
	valid := make([]bool, len(todo))
	if len(todo) >= minBatchVerify && verifyBatch(todo) {
		for j := range valid {
			valid[j] = true
		}
	} else {
		for j, it := range todo {
			valid[j] = ks.verifyAlone(it.pub, it.msg, it.sig[:])
		}
	}
	for j, it := range todo {
		if valid[j] && it.tree != "" {
			ks.trees.add(it.tree)
		}
	}
	for k, it := range items {
		if j := at[k]; j >= 0 && !valid[j] {
			errs[it.index] = badSignature(it.kid)
		}
	}
	return errs
}

// batchItem is one proof of a batch: the key, the signed bytes and the
// signature.
type batchItem struct {
	index int
	kid   string
	pub   ed25519.PublicKey
	msg   []byte
	sig   [ed25519.SignatureSize]byte
	path  *originPath // an event of a tree: msg becomes the tree's treeMessage
	tree  string      // then its treeKey
}

// prepare runs Verify's checks up to the signature itself: the proof's
// attributes, its form and the key its source (SourceOf(ev)) holds. The
// item's msg is left to VerifyAll.
func (ks *OriginKeys) prepare(ev Event, source string) (batchItem, error) {
	kid, sig, path, err := proofOf(ev)
	if err != nil {
		return batchItem{}, err
	}
	pub, ok := ks.lookup(source, kid)
	if !ok {
		return batchItem{}, fmt.Errorf("%w: key %q is not a key of source %q", ErrBadOrigin, truncate(kid, 64), truncate(source, 200))
	}
	return batchItem{kid: kid, pub: pub, sig: sig, path: path}, nil
}

func badSignature(kid string) error {
	return fmt.Errorf("%w: the signature of key %s does not match the event (altered, or signed for other content)", ErrBadOrigin, kid)
}

// verifyBatch reports whether the batch equation holds for items; false
// says only that some proof must be verified alone.
func verifyBatch(items []batchItem) bool {
	zs := make([]byte, 16*len(items))
	if _, err := rand.Read(zs); err != nil {
		return false
	}
	type keyTerm struct {
		point *edwards25519.Point
		coef  *edwards25519.Scalar
	}
	keys := map[string]*keyTerm{} // by the key's bytes
	sumS := edwards25519.NewScalar()
	scalars := make([]*edwards25519.Scalar, 0, len(items)+2)
	points := make([]*edwards25519.Point, 0, len(items)+2)
	// The zᵢ and Rᵢ of every item, in one array each; sᵢ and kᵢ are
	// used at once, one variable each.
	zArr := make([]edwards25519.Scalar, len(items))
	rArr := make([]edwards25519.Point, len(items))
	var s, k edwards25519.Scalar
	var zb [32]byte
	h := sha512.New()
	var digest [64]byte
	for i := range items {
		it := &items[i]
		if _, err := s.SetCanonicalBytes(it.sig[32:]); err != nil {
			return false
		}
		if !canonicalPoint(it.sig[:32]) {
			return false
		}
		r := &rArr[i]
		if _, err := r.SetBytes(it.sig[:32]); err != nil {
			return false
		}
		kt := keys[string(it.pub)]
		if kt == nil {
			a, ok := batchKey(it.pub)
			if !ok {
				return false
			}
			kt = &keyTerm{point: a, coef: edwards25519.NewScalar()}
			keys[string(it.pub)] = kt
		}
		h.Reset()
		h.Write(it.sig[:32])
		h.Write(it.pub)
		h.Write(it.msg)
		if _, err := k.SetUniformBytes(h.Sum(digest[:0])); err != nil {
			return false
		}
		copy(zb[:16], zs[16*i:16*i+16])
		z := &zArr[i]
		if _, err := z.SetCanonicalBytes(zb[:]); err != nil { // < 2¹²⁸: canonical
			return false
		}
		sumS.MultiplyAdd(z, &s, sumS)
		kt.coef.MultiplyAdd(z, &k, kt.coef)
		scalars, points = append(scalars, z), append(points, r)
	}
	for _, kt := range keys {
		scalars, points = append(scalars, kt.coef), append(points, kt.point)
	}
	left := new(edwards25519.Point).ScalarBaseMult(sumS)
	right := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	return left.Equal(right) == 1
}

// canonicalPoint reports whether b, when it decodes to a point, is that
// point's own encoding (Point.Bytes), as crypto/ed25519 requires of R: y
// below p = 2²⁵⁵-19, and no sign bit on x = 0 (y = ±1). SetBytes accepts
// the other spellings; checking the bytes costs nothing, encoding the
// point again an inversion.
func canonicalPoint(b []byte) bool {
	sign := b[31]&0x80 != 0
	high := b[31] & 0x7f
	allFF := high == 0x7f
	for i := 30; i >= 1 && allFF; i-- {
		allFF = b[i] == 0xff
	}
	if allFF && b[0] >= 0xed { // y ≥ p
		return false
	}
	if sign {
		one := b[0] == 1 && high == 0
		for i := 1; i <= 30 && one; i++ {
			one = b[i] == 0
		}
		minusOne := allFF && b[0] == 0xec
		if one || minusOne {
			return false
		}
	}
	return true
}

// batchKey decodes a public key for a batch: a key that does not decode
// (crypto/ed25519 refuses its every signature) or that has a small-order
// component (its equations could miss by a torsion point that random
// coefficients cancel) is left to verification alone. The answer is kept
// by key: the keys in force are few.
func batchKey(pub ed25519.PublicKey) (*edwards25519.Point, bool) {
	if v, ok := batchKeys.Load(string(pub)); ok {
		a := v.(*edwards25519.Point)
		return a, a != nil
	}
	a, err := new(edwards25519.Point).SetBytes(pub)
	if err == nil && !primeOrder(a) {
		err = errSmallOrder
	}
	if err != nil {
		a = nil
	}
	if batchKeyCount.Add(1) <= maxBatchKeys {
		batchKeys.Store(string(pub), a)
	}
	return a, a != nil
}

var (
	batchKeys     sync.Map // string(public key) -> *edwards25519.Point, nil when not for batches
	batchKeyCount atomic.Int64
	errSmallOrder = errors.New("a small-order component")
)

// maxBatchKeys bounds batchKeys: keys come from the trusted key file, but
// rotations add new ones over a process's life.
const maxBatchKeys = 1024

// primeOrder reports whether [L]a is the identity, L the order of the base
// point: a has no small-order component. [L]a = [L-1]a + a, and L-1 is the
// canonical scalar -1 (ScalarMult multiplies by the integer the scalar's
// canonical bytes spell, so it sees a's torsion part too).
func primeOrder(a *edwards25519.Point) bool {
	minusOne := edwards25519.NewScalar().Negate(scalarOne)
	p := new(edwards25519.Point).ScalarMult(minusOne, a)
	p.Add(p, a)
	return p.Equal(edwards25519.NewIdentityPoint()) == 1
}

var scalarOne, _ = edwards25519.NewScalar().SetCanonicalBytes(append([]byte{1}, make([]byte, 31)...))
