package events_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// signedTogether encodes n transfer facts of process-transaction and signs
// them with SignAll, as its group commit does.
func signedTogether(t testing.TB, n int) ([]events.Event, [][]byte) {
	t.Helper()
	payloads, msgs := make([][]byte, n), make([][]byte, n)
	for i := range n {
		var err error
		_, payloads[i], msgs[i], err = events.EncodeLater("", "", "process-transaction", "billfn.transaction.completed",
			"acct-"+strconv.Itoa(i), map[string]any{"amount": 100 + i, "note": "<&>"})
		if err != nil {
			t.Fatal(err)
		}
	}
	testenv.OriginSigner(events.Source("process-transaction")).SignAll(payloads, msgs)
	evs := make([]events.Event, n)
	for i, p := range payloads {
		ev, err := events.Unmarshal(p)
		if err != nil {
			t.Fatalf("event %d of %d: %v\n%s", i, n, err, p)
		}
		if !bytes.Equal(events.OriginBytes(ev), msgs[i]) {
			t.Fatalf("event %d of %d: EncodeLater's msg is not the OriginBytes of the event its payload decodes to", i, n)
		}
		evs[i] = ev
	}
	return evs, msgs
}

func ext(ev events.Event, name string) string {
	s, _ := ev.Extensions()[name].(string)
	return s
}

// Every event SignAll signs verifies alone (Verify) and in a delivery
// (VerifyAll); its path is RFC 9162's inclusion proof of its OriginBytes in
// a tree whose root, computed here by transparency-dev/merkle's compact
// ranges (not by the code under test), is what the shared signature
// signs; the trees hold at most 32 events, as even as can be; a lone event
// gets the proof of one event.
func TestSignAllSignsTreesEachEventVerifiesAlone(t *testing.T) {
	keys := testenv.OriginKeys()
	pub := testenv.OriginSigner(events.Source("process-transaction")).Public()
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 32, 33, 64, 65, 100} {
		evs, msgs := signedTogether(t, n)
		for i, err := range keys.VerifyAll(evs) {
			if err != nil {
				t.Fatalf("n=%d: VerifyAll refused event %d: %v", n, i, err)
			}
		}
		trees := map[string][]int{} // by signature: the events' indexes
		for i, ev := range evs {
			if err := keys.Verify(ev); err != nil {
				t.Fatalf("n=%d: Verify refused event %d: %v", n, i, err)
			}
			trees[ext(ev, events.OriginSigExt)] = append(trees[ext(ev, events.OriginSigExt)], i)
		}
		if want := (n + 31) / 32; len(trees) != want {
			t.Fatalf("n=%d: %d signatures, want %d", n, len(trees), want)
		}
		for sig, members := range trees {
			size := len(members)
			if size < n/len(trees) || size > n/len(trees)+1 {
				t.Errorf("n=%d: a tree of %d events; want them as even as can be", n, size)
			}
			sigBytes, _ := base64.RawURLEncoding.DecodeString(sig)
			if size == 1 {
				ev := evs[members[0]]
				if ext(ev, events.OriginPathExt) != "" || !ed25519.Verify(pub, events.OriginBytes(ev), sigBytes) {
					t.Fatalf("n=%d: a lone event should carry the proof of one event", n)
				}
				continue
			}
			r := rf.NewEmptyRange(0)
			for _, i := range members {
				if err := r.Append(rfc6962.DefaultHasher.HashLeaf(msgs[i]), nil); err != nil {
					t.Fatal(err)
				}
			}
			root, err := r.GetRootHash(nil)
			if err != nil {
				t.Fatal(err)
			}
			signed := fmt.Sprintf("billfn-origin-tree-v1\nsize %d\nroot %x\n", size, root)
			if !ed25519.Verify(pub, []byte(signed), sigBytes) {
				t.Fatalf("n=%d: the signature is not over the tree's size and root:\n%s", n, signed)
			}
			for k, i := range members {
				index, sz, hashes := splitPath(t, ext(evs[i], events.OriginPathExt))
				if index != uint64(k) || sz != uint64(size) {
					t.Fatalf("n=%d: event %d's path says %d of %d, want %d of %d", n, i, index, sz, k, size)
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, sz, rfc6962.DefaultHasher.HashLeaf(msgs[i]), hashes, root); err != nil {
					t.Fatalf("n=%d: event %d's path is not its inclusion proof: %v", n, i, err)
				}
			}
		}
	}
}

func splitPath(t *testing.T, path string) (index, size uint64, hashes [][]byte) {
	t.Helper()
	parts := strings.Split(path, ".")
	if len(parts) != 3 {
		t.Fatalf("originpath %q: want <index>.<size>.<hashes>", path)
	}
	index, _ = strconv.ParseUint(parts[0], 10, 64)
	size, _ = strconv.ParseUint(parts[1], 10, 64)
	raw, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(raw)%32 != 0 {
		t.Fatalf("originpath %q: hashes %v", path, err)
	}
	for i := 0; i < len(raw); i += 32 {
		hashes = append(hashes, raw[i:i+32])
	}
	return index, size, hashes
}

// An event of a tree altered in any signed attribute, moved to another
// place of its tree, given another event's path, another tree's
// signature, a path with a hash too many, too few or changed, or a
// malformed path is refused (ErrBadOrigin) by Verify and by VerifyAll,
// whose other events still pass; so is an event signed alone given a
// path, and an event of a tree without its path. Nothing is learnt by the
// cache of verified trees that lets a refused event through later.
func TestTreeProofRefusesEveryChange(t *testing.T) {
	keys := testenv.OriginKeys()
	evs, _ := signedTogether(t, 6)
	other, _ := signedTogether(t, 6)
	lone, _ := signedTogether(t, 1)
	path := func(ev events.Event) string { return ext(ev, events.OriginPathExt) }
	withPath := func(ev events.Event, p string) events.Event {
		c := ev.Clone()
		c.SetExtension(events.OriginPathExt, p)
		return c
	}
	_, size, hashes := splitPath(t, path(evs[2]))
	enc := func(hs [][]byte) string { return base64.RawURLEncoding.EncodeToString(bytes.Join(hs, nil)) }
	flipped := append([][]byte{append([]byte{hashes[0][0] ^ 1}, hashes[0][1:]...)}, hashes[1:]...)
	changes := map[string]func() events.Event{
		"data": func() events.Event {
			c := evs[2].Clone()
			_ = c.SetData("application/json", map[string]any{"amount": 1_000_000, "note": "<&>"})
			return c
		},
		"subject":              func() events.Event { c := evs[2].Clone(); c.SetSubject("acct-9"); return c },
		"id":                   func() events.Event { c := evs[2].Clone(); c.SetID(evs[3].ID()); return c },
		"type":                 func() events.Event { c := evs[2].Clone(); c.SetType("billfn.transaction.failed"); return c },
		"time":                 func() events.Event { c := evs[2].Clone(); c.SetTime(evs[2].Time().Add(1)); return c },
		"another event's path": func() events.Event { return withPath(evs[2], path(evs[3])) },
		"another index":        func() events.Event { return withPath(evs[2], "3."+strings.SplitN(path(evs[2]), ".", 2)[1]) },
		"another size":         func() events.Event { return withPath(evs[2], fmt.Sprintf("2.%d.%s", size+1, enc(hashes))) },
		"a hash too many": func() events.Event {
			return withPath(evs[2], fmt.Sprintf("2.%d.%s", size, enc(append(hashes, hashes[0]))))
		},
		"a hash too few": func() events.Event { return withPath(evs[2], fmt.Sprintf("2.%d.%s", size, enc(hashes[1:]))) },
		"a changed hash": func() events.Event { return withPath(evs[2], fmt.Sprintf("2.%d.%s", size, enc(flipped))) },
		"another tree's signature": func() events.Event {
			c := evs[2].Clone()
			c.SetExtension(events.OriginSigExt, ext(other[2], events.OriginSigExt))
			return c
		},
		"no path":                func() events.Event { c := evs[2].Clone(); c.SetExtension(events.OriginPathExt, nil); return c },
		"an empty path":          func() events.Event { return withPath(evs[2], "") },
		"a lone event with path": func() events.Event { return withPath(lone[0], path(evs[2])) },
		"index not below size":   func() events.Event { return withPath(evs[2], fmt.Sprintf("6.6.%s", enc(hashes))) },
		"leading zero":           func() events.Event { return withPath(evs[2], fmt.Sprintf("02.%d.%s", size, enc(hashes))) },
		"size one":               func() events.Event { return withPath(evs[2], "0.1.") },
		"padded hashes":          func() events.Event { return withPath(evs[2], path(evs[2])+"=") },
		"not base64url":          func() events.Event { return withPath(evs[2], strings.ReplaceAll(path(evs[2])+"+", "_", "/")) },
		"a path of one part":     func() events.Event { return withPath(evs[2], "2") },
		"a path not a string":    func() events.Event { c := evs[2].Clone(); c.SetExtension(events.OriginPathExt, 2); return c },
	}
	for name, change := range changes {
		forged := change()
		if err := keys.Verify(forged); !errors.Is(err, events.ErrBadOrigin) {
			t.Errorf("%s: Verify = %v, want ErrBadOrigin", name, err)
		}
		delivery := append([]events.Event{forged}, evs...)
		errs := keys.VerifyAll(delivery)
		if !errors.Is(errs[0], events.ErrBadOrigin) {
			t.Errorf("%s: VerifyAll = %v, want ErrBadOrigin", name, errs[0])
		}
		for i, err := range errs[1:] {
			if err != nil {
				t.Errorf("%s: VerifyAll refused the genuine event %d beside it: %v", name, i, err)
			}
		}
		if err := keys.Verify(forged); !errors.Is(err, events.ErrBadOrigin) {
			t.Errorf("%s: Verify after VerifyAll = %v, want ErrBadOrigin", name, err)
		}
	}
}

// The events of a tree cost one signature verification: the others only
// their hashes, in the same delivery and in later ones, until the key is
// no longer trusted (a rotated file without it), when they are refused.
func TestATreeIsVerifiedOnceUntilItsKeyGoes(t *testing.T) {
	keys := testenv.OriginKeys()
	alone := events.CountVerifiedAlone(keys)
	evs, _ := signedTogether(t, 8)
	if err := keys.Verify(evs[0]); err != nil {
		t.Fatal(err)
	}
	if got := alone.Load(); got != 1 {
		t.Fatalf("first event of the tree: %d signatures verified, want 1", got)
	}
	for i, err := range keys.VerifyAll(evs[1:]) {
		if err != nil {
			t.Fatalf("event %d: %v", i+1, err)
		}
	}
	if err := keys.Verify(evs[7]); err != nil {
		t.Fatal(err)
	}
	if got := alone.Load(); got != 1 {
		t.Fatalf("the tree's other events: %d signatures verified in all, want still 1", got)
	}
	// Two trees in one delivery: one equation of their two signatures.
	more, _ := signedTogether(t, 40)
	for i, err := range keys.VerifyAll(more) {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if got := alone.Load(); got != 1 {
		t.Fatalf("two trees in a delivery: %d signatures verified alone in all, want 1 (their batch equation)", got)
	}

	none, err := events.ParseOriginKeys(testenv.OriginSigner(testenv.IntegratorSource).PublicLine(testenv.IntegratorSource), "the integrator's key alone")
	if err != nil {
		t.Fatal(err)
	}
	keys.Replace(none)
	if err := keys.Verify(evs[3]); !errors.Is(err, events.ErrBadOrigin) {
		t.Fatalf("an event of a verified tree after its key was dropped: %v, want ErrBadOrigin", err)
	}
	if errs := keys.VerifyAll(evs[4:6]); !errors.Is(errs[0], events.ErrBadOrigin) || !errors.Is(errs[1], events.ErrBadOrigin) {
		t.Fatalf("VerifyAll after the key was dropped: %v, want ErrBadOrigin", errs)
	}
}

// A tree's signed bytes and one event's start with different tags, so a
// signature of one kind can never be taken for the other.
func TestTreeAndEventSignaturesSignDifferentTags(t *testing.T) {
	evs, msgs := signedTogether(t, 2)
	if !bytes.HasPrefix(msgs[0], []byte("billfn-origin-v1\n")) || !bytes.HasPrefix(events.OriginBytes(evs[1]), []byte("billfn-origin-v1\n")) {
		t.Fatal("an event's OriginBytes should start with billfn-origin-v1")
	}
	if strings.HasPrefix("billfn-origin-tree-v1\n", "billfn-origin-v1\n") || strings.HasPrefix("billfn-origin-v1\n", "billfn-origin-tree-v1\n") {
		t.Fatal("neither tag may start the other")
	}
}

// Signing an event of a tree again (a relay with another key) gives it
// the proof of one event: its originpath goes with the old signature.
func TestSignReplacesATreesProof(t *testing.T) {
	evs, _ := signedTogether(t, 3)
	ev := evs[1].Clone()
	testenv.OriginSigner(events.Source("process-transaction")).Sign(&ev)
	if _, has := ev.Extensions()[events.OriginPathExt]; has {
		t.Fatal("Sign left the tree's originpath")
	}
	if err := testenv.OriginKeys().Verify(ev); err != nil {
		t.Fatal(err)
	}
	if _, ok := testenv.OriginSigner(events.Source("process-transaction")).SignEncoded(evs[1], []byte(`{}`)); ok {
		t.Fatal("SignEncoded extended an event that carries a tree's proof")
	}
}

// BenchmarkSignEach signs 100 encoded events one by one, as the outbox
// writers did; BenchmarkSignAll the same events in trees (SignAll).
func BenchmarkSignEach(b *testing.B) { benchSign(b, false) }

func BenchmarkSignAll(b *testing.B) { benchSign(b, true) }

func benchSign(b *testing.B, together bool) {
	const n = 100
	s := testenv.OriginSigner(events.Source("process-transaction"))
	payloads, msgs := make([][]byte, n), make([][]byte, n)
	for i := range n {
		var err error
		if _, payloads[i], msgs[i], err = events.EncodeLater("", "", "process-transaction", "billfn.transaction.posted",
			"acct", map[string]any{"amount": i, "currency": "USD"}); err != nil {
			b.Fatal(err)
		}
	}
	work := make([][]byte, n)
	for b.Loop() {
		copy(work, payloads)
		if together {
			s.SignAll(work, msgs)
			continue
		}
		for i := range work {
			s.SignAll(work[i:i+1], msgs[i:i+1])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1000, "µs/event")
}

// BenchmarkVerifyTrees is BenchmarkVerifyAll's delivery of 100 events
// signed in trees, by a consumer that has not seen them before.
func BenchmarkVerifyTrees(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		keys := testenv.OriginKeys() // a fresh memory of verified trees
		evs, _ := signedTogether(b, 100)
		b.StartTimer()
		for _, err := range keys.VerifyAll(evs) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100)/1000, "µs/event")
}

// SignTogether signs, in place, the events several writes left unsigned in
// their own payload slices, with one signature for all of them, each
// event verifying alone; what is not noted (another write's own event) is
// left alone, and a second call signs nothing again.
func TestSignTogetherSignsTheEventsOfSeveralWritesAsOne(t *testing.T) {
	keys := testenv.OriginKeys()
	signer := testenv.OriginSigner(events.Source("process-transaction"))
	var (
		slices [][][]byte
		us     []*events.Unsigned
	)
	for w := range 3 {
		payloads := make([][]byte, 2)
		u := signer.Unsigned(payloads)
		for i := range payloads {
			_, p, msg, err := events.EncodeLater("", "", "process-transaction", "billfn.transaction.completed",
				fmt.Sprintf("acct-%d-%d", w, i), map[string]any{"amount": 100*w + i})
			if err != nil {
				t.Fatal(err)
			}
			payloads[i] = p
			if i == 0 || w == 0 { // the second event of writes 1 and 2 is not noted
				u.Add(i, msg)
			}
		}
		slices, us = append(slices, payloads), append(us, u)
	}
	unnoted := [][]byte{slices[1][1], slices[2][1]}
	events.SignTogether(append(us, nil)...)
	sigs := map[string]bool{}
	for w, payloads := range slices {
		for i, p := range payloads {
			ev, err := events.Unmarshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if w > 0 && i == 1 {
				if !bytes.Equal(p, unnoted[w-1]) {
					t.Errorf("write %d: SignTogether changed an event it was not given", w)
				}
				continue
			}
			if err := keys.Verify(ev); err != nil {
				t.Fatalf("write %d, event %d: %v", w, i, err)
			}
			sigs[ext(ev, events.OriginSigExt)] = true
		}
	}
	if len(sigs) != 1 {
		t.Errorf("%d signatures for the 4 events of 3 writes, want 1", len(sigs))
	}
	before := append([]byte(nil), slices[0][0]...)
	events.SignTogether(us...)
	if !bytes.Equal(before, slices[0][0]) {
		t.Error("a second SignTogether signed again")
	}
}

// WithoutOrigin drops every attribute of a proof, a tree's path included,
// from a copy: the event itself keeps its proof and still verifies.
func TestWithoutOriginDropsTheWholeProof(t *testing.T) {
	evs, _ := signedTogether(t, 3)
	c := events.WithoutOrigin(evs[1])
	for _, name := range []string{events.OriginKidExt, events.OriginSigExt, events.OriginPathExt} {
		if _, has := c.Extensions()[name]; has {
			t.Errorf("WithoutOrigin kept %s", name)
		}
		if ext(evs[1], name) == "" {
			t.Errorf("WithoutOrigin dropped %s from the event itself", name)
		}
	}
	if c.ID() != evs[1].ID() || string(c.Data()) != string(evs[1].Data()) {
		t.Error("WithoutOrigin changed the event's id or data")
	}
	if err := testenv.OriginKeys().Verify(evs[1]); err != nil {
		t.Errorf("the event no longer verifies: %v", err)
	}
}
