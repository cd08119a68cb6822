package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
)

// writes is the group commit's ledger.Sink: it accumulates the group's rows
// as column arrays for unnest.
type writes struct {
	now    time.Time
	source string
	signer *events.OriginSigner // nil: events written unsigned, signed at publish
	kidRef *string              // origin_kid of every event of the group, once (nil: unsigned)

	// new transfers
	tID, tFrom, tTo, tCur, tStatus, tDesc, tRef, tScope, tKey []string
	tAmount                                                   []int64
	tReason, tMeta                                            []*string
	tPending                                                  []bool
	tExpires, tPosted                                         []*time.Time
	tFB, tFA, tTB, tTA                                        []int64
	tHash                                                     [][]byte

	// decided accepted transfers
	uID, uStatus       []string
	uReason            []*string
	uPosted            []*time.Time
	uFB, uFA, uTB, uTA []int64

	// outbox
	oID, oTopic, oKey []string
	oPayload          [][]byte  // unsigned until flush signs them all (SignAll)
	oMsg              [][]byte  // each payload's OriginBytes, for SignAll
	oKid              []*string // the key that signs the payload; nil: unsigned

	// accounts
	acctIDs           []string
	acctBal, acctHeld []int64
	acctN             []int64
}

// Mark implements ledger.Sink: the returned undo drops everything written
// after it (an atomic unit that failed).
func (w *writes) Mark() func() {
	t, u, o := len(w.tID), len(w.uID), len(w.oID)
	return func() {
		w.tID, w.tFrom, w.tTo, w.tCur, w.tStatus = w.tID[:t], w.tFrom[:t], w.tTo[:t], w.tCur[:t], w.tStatus[:t]
		w.tDesc, w.tRef, w.tScope, w.tKey = w.tDesc[:t], w.tRef[:t], w.tScope[:t], w.tKey[:t]
		w.tAmount, w.tReason, w.tMeta, w.tPending = w.tAmount[:t], w.tReason[:t], w.tMeta[:t], w.tPending[:t]
		w.tExpires, w.tPosted, w.tHash = w.tExpires[:t], w.tPosted[:t], w.tHash[:t]
		w.tFB, w.tFA, w.tTB, w.tTA = w.tFB[:t], w.tFA[:t], w.tTB[:t], w.tTA[:t]
		w.uID, w.uStatus, w.uReason, w.uPosted = w.uID[:u], w.uStatus[:u], w.uReason[:u], w.uPosted[:u]
		w.uFB, w.uFA, w.uTB, w.uTA = w.uFB[:u], w.uFA[:u], w.uTB[:u], w.uTA[:u]
		w.oID, w.oTopic, w.oKey, w.oPayload, w.oMsg, w.oKid = w.oID[:o], w.oTopic[:o], w.oKey[:o], w.oPayload[:o], w.oMsg[:o], w.oKid[:o]
	}
}

// Insert implements ledger.Sink: a new transfer and its event. A posted
// transfer is its own double entry: the postings view derives its two
// lines from the row (migration 00012).
func (w *writes) Insert(t *ledger.Transfer, o *ledger.Op) {
	w.tID, w.tFrom, w.tTo = append(w.tID, t.ID), append(w.tFrom, t.FromAccountID), append(w.tTo, t.ToAccountID)
	w.tCur, w.tStatus = append(w.tCur, t.Currency), append(w.tStatus, t.Status)
	w.tDesc, w.tRef = append(w.tDesc, t.Description), append(w.tRef, t.ReferenceID)
	w.tScope, w.tKey, w.tHash = append(w.tScope, o.Scope), append(w.tKey, o.Key), append(w.tHash, o.Hash)
	w.tAmount, w.tReason, w.tMeta = append(w.tAmount, t.Amount), append(w.tReason, t.RejectReason), append(w.tMeta, nullText(t.Metadata))
	w.tPending, w.tExpires, w.tPosted = append(w.tPending, t.Pending), append(w.tExpires, t.ExpiresAt), append(w.tPosted, t.PostedAt)
	w.tFB, w.tFA, w.tTB, w.tTA = append(w.tFB, *t.FromBalance), append(w.tFA, *t.FromAvailable), append(w.tTB, *t.ToBalance), append(w.tTA, *t.ToAvailable)
	w.effects(t, o)
}

// Update implements ledger.Sink: a transfer accepted earlier, decided now.
func (w *writes) Update(t *ledger.Transfer, o *ledger.Op) {
	w.uID, w.uStatus, w.uReason, w.uPosted = append(w.uID, t.ID), append(w.uStatus, t.Status), append(w.uReason, t.RejectReason), append(w.uPosted, t.PostedAt)
	w.uFB, w.uFA, w.uTB, w.uTA = append(w.uFB, *t.FromBalance), append(w.uFA, *t.FromAvailable), append(w.uTB, *t.ToBalance), append(w.uTA, *t.ToAvailable)
	w.effects(t, o)
}

// effects adds the event of a decided transfer, which continues the trace
// of the op that decided it. flush signs the group's
// events together with the function's origin key (one signature for up to
// 32 events, events.OriginSigner.SignAll), so the outbox relays them
// without decoding them.
func (w *writes) effects(t *ledger.Transfer, o *ledger.Op) {
	// Without a signer the event is written unsigned and signed at publish.
	id, payload, msg, err := events.EncodeLater(o.TraceParent, o.TraceState, w.source, transferEventType(t), t.FromAccountID, &t.Transfer)
	if err != nil {
		panic(err) // a Transfer always encodes
	}
	w.oID, w.oTopic, w.oKey, w.oPayload = append(w.oID, id), append(w.oTopic, events.TopicTransaction),
		append(w.oKey, t.FromAccountID), append(w.oPayload, payload)
	w.oMsg, w.oKid = append(w.oMsg, msg), append(w.oKid, w.kid())
}

// kid is the origin_kid of the events written: the signer's key, or nil;
// one *string shared by the group's rows.
func (w *writes) kid() *string {
	if w.signer == nil {
		return nil
	}
	if w.kidRef == nil {
		k := w.signer.KeyID()
		w.kidRef = &k
	}
	return w.kidRef
}

// writeSQL writes a whole group in ONE statement: the new transfers, the
// accepted transfers decided now and the balances as
// data-modifying CTEs (each runs exactly once, whether or not the query
// reads it), then the outbox events as the main query, outbox.InsertSQL
// itself with its own arguments $1–$6. One statement in place of five: a
// statement costs the server a bind, a portal and an executor start and end
// whatever its rows (issue 20). No postings: they are a view of the
// transfers (00012). Empty columns are NULL arrays, which unnest
// to no rows.
const writeSQL = `WITH new_transfers AS (
	INSERT INTO transfers (id, from_account_id, to_account_id, amount, currency, status, reject_reason,
		pending, expires_at, description, reference_id, metadata, from_balance, from_available, to_balance, to_available,
		idem_scope, idem_key, request_hash, created_at, posted_at)
	SELECT id, f, t, a, c, s, r, p, e, d, ref, m::jsonb, fb, fa, tb, ta, sc, k, h, $7, po
	FROM unnest($8::text[]::uuid[], $9::text[]::uuid[], $10::text[]::uuid[], $11::int8[], $12::text[], $13::text[], $14::text[], $15::bool[],
	            $16::timestamptz[], $17::text[], $18::text[], $19::text[], $20::int8[], $21::int8[], $22::int8[],
	            $23::int8[], $24::text[], $25::text[], $26::bytea[], $27::timestamptz[])
	AS x(id, f, t, a, c, s, r, p, e, d, ref, m, fb, fa, tb, ta, sc, k, h, po)
), decided AS (
	UPDATE transfers t SET status = x.s, reject_reason = x.r, posted_at = x.po,
		from_balance = x.fb, from_available = x.fa, to_balance = x.tb, to_available = x.ta
	FROM unnest($28::text[]::uuid[], $29::text[], $30::text[], $31::timestamptz[], $32::int8[], $33::int8[], $34::int8[], $35::int8[])
	AS x(id, s, r, po, fb, fa, tb, ta) WHERE t.id = x.id
), balances AS (
	UPDATE accounts a SET balance = x.b, held = x.h, version = a.version + x.n, updated_at = $7
	FROM unnest($36::text[]::uuid[], $37::int8[], $38::int8[], $39::int8[]) AS x(id, b, h, n) WHERE a.id = x.id
)
` + outbox.InsertSQL

// flush signs the group's events, writes the group and commits, in one
// round trip and two statements (writeSQL and COMMIT); a group that only
// replays writes nothing. It runs once per writes.
func (w *writes) flush(ctx context.Context, conn *pgxpool.Conn) error {
	if w.signer != nil {
		w.signer.SignAll(w.oPayload, w.oMsg)
	}
	b := &pgx.Batch{}
	if len(w.tID)+len(w.uID)+len(w.acctIDs)+len(w.oID) > 0 {
		// Presized and ReserveFor: one allocation each for the parameters
		// of a group of thousands of rows and for the message that carries
		// them, not one per growth (BenchmarkEncodeGroupWrite).
		args := postgres.Presized(w.source, w.oID, w.oTopic, w.oKey, w.oPayload, w.oKid, w.now,
			w.tID, w.tFrom, w.tTo, w.tAmount, w.tCur, w.tStatus, w.tReason, w.tPending, w.tExpires, w.tDesc, w.tRef,
			w.tMeta, w.tFB, w.tFA, w.tTB, w.tTA, w.tScope, w.tKey, w.tHash, w.tPosted,
			w.uID, w.uStatus, w.uReason, w.uPosted, w.uFB, w.uFA, w.uTB, w.uTA,
			w.acctIDs, w.acctBal, w.acctHeld, w.acctN)
		postgres.ReserveFor(conn.Conn(), args)
		b.Queue(writeSQL, args...)
	}
	b.Queue("COMMIT")
	return conn.SendBatch(ctx, b).Close()
}
