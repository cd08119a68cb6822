package ledger

import (
	"testing"

	"github.com/billfn/billfn/shared/apperr"
)

// sink records what a group decided, as the store's writes do.
type sink struct{ inserted, updated []string }

func (s *sink) Insert(t *Transfer, _ *Op) { s.inserted = append(s.inserted, t.ID) }
func (s *sink) Update(t *Transfer, _ *Op) { s.updated = append(s.updated, t.ID) }
func (s *sink) Mark() func() {
	i, u := len(s.inserted), len(s.updated)
	return func() { s.inserted, s.updated = s.inserted[:i], s.updated[:u] }
}

type caller string

func (c caller) CanAccess(userID string) bool { return string(c) == userID }
func (c caller) Privileged() bool             { return false }

func group(books ...*Book) (*Group, *sink) {
	s := &sink{}
	g := &Group{Books: map[string]*Book{}, ByNumber: map[string]*Book{}, Priors: map[IdemKey]Prior{}, Now: now, Sink: s}
	for _, b := range books {
		g.Books[b.ID], g.ByNumber[b.Number] = b, b
	}
	return g, s
}

func op(id, key string, from, to *Book, amount int64) *Op {
	return &Op{Req: TransferRequest{FromAccountID: from.ID, ToAccountID: to.ID, Amount: amount, Currency: "USD"},
		Caller: caller(from.UserID), Scope: "s", Key: key, Hash: []byte(key + "/" + id), ID: id}
}

func TestAnAtomicUnitWithARejectionAppliesNothing(t *testing.T) {
	a, b := book("a", 100, 0), book("b", 0, 0)
	g, s := group(a, b)
	u := &Unit{Atomic: true, Ops: []*Op{op("t1", "k1", a, b, 60), op("t2", "k2", a, b, 60)}}
	g.DecideUnit(u)
	if a.Balance != 100 || b.Balance != 0 || a.Changed != 0 || len(s.inserted) != 0 || len(g.Priors) != 0 {
		t.Fatalf("after a failed atomic unit: a %+v b %+v inserted %v priors %v", a, b, s.inserted, g.Priors)
	}
	if apperr.CodeOf(u.Ops[0].Res.Err) != BatchRejected || apperr.CodeOf(u.Ops[1].Res.Err) != InsufficientFunds ||
		IsRejection(u.Ops[1].Res.Err) {
		t.Fatalf("outcomes %v / %v", u.Ops[0].Res.Err, u.Ops[1].Res.Err)
	}
	// The same two, not atomic: the first posts, the second is a kept rejection.
	u = &Unit{Ops: []*Op{op("t1", "k1", a, b, 60), op("t2", "k2", a, b, 60)}}
	g.DecideUnit(u)
	if a.Balance != 40 || b.Balance != 60 || len(s.inserted) != 2 || u.Ops[0].Res.Err != nil || !IsRejection(u.Ops[1].Res.Err) {
		t.Fatalf("not atomic: a %+v b %+v inserted %v errs %v %v", a, b, s.inserted, u.Ops[0].Res.Err, u.Ops[1].Res.Err)
	}
}

func TestAKeyUsedTwiceInAGroupReplaysOrIsRefused(t *testing.T) {
	a, b := book("a", 100, 0), book("b", 0, 0)
	g, s := group(a, b)
	first := op("t1", "k", a, b, 10)
	again := op("t2", "k", a, b, 10)
	again.Hash = first.Hash
	other := op("t3", "k", a, b, 11)
	g.DecideUnit(&Unit{Ops: []*Op{first, again, other}})
	if len(s.inserted) != 1 || a.Balance != 90 {
		t.Fatalf("inserted %v, balance %d", s.inserted, a.Balance)
	}
	if !again.Res.Replayed || again.Res.Transfer.ID != "t1" || again.Res.Err != nil || again.Res.Transfer.FromUser != "u-a" {
		t.Fatalf("replay %+v", again.Res)
	}
	if apperr.CodeOf(other.Res.Err) != apperr.IdempotencyKeyReused || other.Res.Transfer != nil {
		t.Fatalf("reused key %+v", other.Res)
	}
	stranger := op("t4", "k4", a, b, 1)
	stranger.Caller = caller("mallory")
	g.DecideUnit(&Unit{Ops: []*Op{stranger}})
	if apperr.CodeOf(stranger.Res.Err) != apperr.NotFound || a.Balance != 90 {
		t.Fatalf("someone else's source: %v", stranger.Res.Err)
	}
}
