package ledger

import (
	"fmt"
	"time"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
)

// Op is one transfer to decide.
type Op struct {
	Req    TransferRequest
	Caller Caller
	Scope  string // idempotency scope: the caller, or "event:<source>"
	Key    string // Idempotency-Key (derived per item for batches), or the event id
	Hash   []byte // fingerprint of the request
	// OwnKey marks the key as its caller's Idempotency-Key for this one
	// transfer (POST /transfers), which the idempotency table of the
	// other routes (a capture, a void, a batch) must not hold: one there
	// is another request's (Group.Claimed).
	OwnKey   bool
	Complete string // id of an accepted-asynchronously transfer to decide
	ID       string // id of the new transfer
	// TraceParent and TraceState are the W3C trace context of the request
	// or event that made the op ("" when none): the transfer's event
	// continues that trace, sampled or not as the caller decided, though
	// the group commit writes it away from the caller's context.
	TraceParent, TraceState string

	Res Outcome
}

// Outcome is what one op ended as.
type Outcome struct {
	Transfer *Transfer
	Replayed bool  // an earlier request with the same key decided it
	Err      error // a rejection (transfer stored), or a problem (nothing stored)
	Done     bool
}

// Unit is ops submitted together: a single transfer, a batch, or a batch
// that must apply all-or-nothing.
type Unit struct {
	Ops    []*Op
	Atomic bool
	// OneRequest marks a unit that is one request under one key, its first
	// op's (a batch: POST /transfers/batch): when that key names another
	// request, the whole unit is that key reused, and no op of it is
	// written, the others no more than the first.
	OneRequest bool
	// Refused is the unit's answer when none of its ops was decided (a
	// OneRequest unit whose key another request holds).
	Refused error
}

// IdemKey is an idempotency key in its scope.
type IdemKey struct{ Scope, Key string }

// Prior is a transfer stored earlier under an idempotency key, with the
// fingerprint of the request that made it.
type Prior struct {
	Transfer *Transfer
	Hash     []byte
}

// Replay answers a request whose key was used before: the same request
// replays the stored transfer (a rejection again as its problem); another
// request under the same key is refused.
func Replay(p Prior, o *Op) Outcome {
	if string(p.Hash) != string(o.Hash) {
		return Outcome{Err: ReusedKey(o.Scope, o.Key), Done: true}
	}
	t := *p.Transfer
	res := Outcome{Transfer: &t, Replayed: true, Done: true}
	if t.Status == TransferRejected {
		res.Err = Rejection(&t)
	}
	return res
}

// Parties finds the two accounts of a request among books (by id) and
// byNumber, and checks that caller may debit the source: an account it may
// not use answers as one that does not exist.
func Parties(req *TransferRequest, caller Caller, books, byNumber map[string]*Book) (from, to *Book, err error) {
	from, to = lookup(req.FromAccountID, req.FromAccountNumber, books, byNumber),
		lookup(req.ToAccountID, req.ToAccountNumber, books, byNumber)
	switch {
	case from == nil || !caller.CanAccess(from.UserID):
		return nil, nil, errNoSource()
	case to == nil:
		return nil, nil, errNoDestination()
	case from == to:
		return nil, nil, errSameAccount()
	}
	return from, to, nil
}

func lookup(id, number string, books, byNumber map[string]*Book) *Book {
	if id != "" {
		return books[id]
	}
	return byNumber[number]
}

// NewTransfer is the transfer o asks for between from and to, not decided yet.
func NewTransfer(o *Op, from, to *Book, now time.Time) *Transfer {
	return &Transfer{Transfer: events.Transfer{ID: o.ID, FromAccountID: from.ID, ToAccountID: to.ID, Amount: o.Req.Amount,
		Currency: o.Req.Currency, Description: o.Req.Description, ReferenceID: o.Req.ReferenceID, Metadata: o.Req.Metadata,
		Pending: o.Req.Pending, ExpiresAt: o.Req.ExpiresAt, CreatedAt: now}, FromUser: from.UserID, ToUser: to.UserID}
}

// Sink receives a group's decisions; the store turns them into rows.
type Sink interface {
	Insert(t *Transfer, o *Op) // a new transfer, decided
	Update(t *Transfer, o *Op) // a transfer accepted earlier, decided now by o
	Mark() (undo func())       // undo drops everything received since Mark
}

// Group decides many transfers against the same running balances (the
// group commit): each op gets its own outcome, and one rejected transfer
// fails no other, unless they form an atomic unit.
type Group struct {
	Books    map[string]*Book // the touched accounts by id, locked by the store
	ByNumber map[string]*Book // the same by account number
	Priors   map[IdemKey]Prior
	// Claimed are the OwnKey ops' keys the idempotency table holds, with
	// the request that holds each ("POST /transfers/{id}/capture").
	Claimed  map[IdemKey]string
	Accepted map[string]*Transfer // accepted transfers to decide, by id
	Now      time.Time
	Sink     Sink
}

// DecideUnit decides the ops of one unit, all-or-nothing when atomic.
func (g *Group) DecideUnit(u *Unit) {
	u.Refused = nil
	if u.OneRequest && len(u.Ops) > 0 {
		first := u.Ops[0]
		if p, ok := g.Priors[IdemKey{first.Scope, first.Key}]; ok && string(p.Hash) != string(first.Hash) {
			u.Refused = ReusedKey(first.Scope, first.Key)
			for _, o := range u.Ops {
				o.Res = Outcome{Err: u.Refused, Done: true}
			}
			return
		}
	}
	var snapshot map[string]Book
	undo := g.Sink.Mark()
	if u.Atomic {
		snapshot = make(map[string]Book, len(g.Books))
		for id, b := range g.Books {
			snapshot[id] = *b
		}
	}
	failed := false
	for _, o := range u.Ops {
		g.decide(o)
		if o.Res.Err != nil {
			failed = true
		}
	}
	if !u.Atomic || !failed {
		return
	}
	// Undo the unit: restore balances, drop its writes, report every item.
	for id, b := range snapshot {
		*g.Books[id] = b
	}
	undo()
	for _, o := range u.Ops {
		if o.Res.Err == nil {
			o.Res = Outcome{Err: errBatchItem(), Done: true}
		} else if o.Res.Transfer != nil && !o.Res.Replayed {
			o.Res = Outcome{Err: errBatchRejection(o.Res.Transfer), Done: true}
		}
		delete(g.Priors, IdemKey{o.Scope, o.Key})
	}
}

func (g *Group) decide(o *Op) {
	if o.Complete != "" {
		g.decideAccepted(o)
		return
	}
	k := IdemKey{o.Scope, o.Key}
	if p, ok := g.Priors[k]; ok {
		o.Res = Replay(p, o)
		if o.Res.Transfer != nil {
			FillOwners(o.Res.Transfer, g.Books)
		}
		return
	}
	if route, ok := g.Claimed[k]; ok && o.OwnKey {
		o.Res = Outcome{Err: apperr.KeyReused("request (" + route + ")"), Done: true}
		return
	}
	from, to, err := Parties(&o.Req, o.Caller, g.Books, g.ByNumber)
	if err != nil {
		o.Res = Outcome{Err: err, Done: true}
		return
	}
	t := NewTransfer(o, from, to, g.Now)
	Apply(t, from, to, g.Now)
	g.Sink.Insert(t, o)
	g.Priors[k] = Prior{t, o.Hash} // a second request with this key in the group replays this one
	o.Res = Outcome{Transfer: t, Done: true}
	if t.Status == TransferRejected {
		o.Res.Err = Rejection(t)
	}
}

// decideAccepted decides a transfer accepted earlier with 202.
func (g *Group) decideAccepted(o *Op) {
	t, ok := g.Accepted[o.Complete]
	if !ok {
		o.Res = Outcome{Err: fmt.Errorf("transfer %s does not exist: %w", o.Complete, ErrNoSuchTransfer), Done: true}
		return
	}
	if t.FromAccountID != o.Req.FromAccountID || t.ToAccountID != o.Req.ToAccountID {
		// The group locked the accounts the event names, not these.
		o.Res = Outcome{Err: fmt.Errorf("transfer %s is %s → %s, the event names %s → %s: %w", t.ID, t.FromAccountID,
			t.ToAccountID, o.Req.FromAccountID, o.Req.ToAccountID, ErrOtherAccounts), Done: true}
		return
	}
	FillOwners(t, g.Books)
	if t.Status != TransferPending {
		o.Res = Outcome{Transfer: t, Replayed: true, Done: true} // decided already
		return
	}
	t.Status = "" // to be decided now
	Apply(t, g.Books[t.FromAccountID], g.Books[t.ToAccountID], g.Now)
	g.Sink.Update(t, o)
	o.Res = Outcome{Transfer: t, Done: true}
}

// FillOwners sets t's owners from the books that hold its accounts.
func FillOwners(t *Transfer, books map[string]*Book) {
	if b := books[t.FromAccountID]; b != nil {
		t.FromUser = b.UserID
	}
	if b := books[t.ToAccountID]; b != nil {
		t.ToUser = b.UserID
	}
}
