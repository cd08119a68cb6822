// Package store is all of handle-webhook's SQL: the deliveries
// (webhook_events), the payment map learned from capture-payment's events
// and from metadata (webhook_payment_refs), and the outbox writes of the
// normalized events, each in the transaction of the change it announces.
// The rules (what a delivery becomes, what an event teaches) are package
// webhooks'.
package store

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/postgres"
)

// Store keeps deliveries and the payment map in Postgres.
type Store struct {
	pool *pgxpool.Pool
	// out writes the function's events into its outbox, signed with its
	// origin key.
	out outbox.Writer
	now func() time.Time
	// group commits concurrent deliveries (and their outbox rows) together.
	group *pgbatch.Group
	// Unparked, when set, is told how many parked deliveries of a gateway
	// were released (a metric).
	Unparked func(gateway string, n int)
	// Secrets seals the endpoints' signing secrets at rest (nil: stored
	// as they are; seal.go).
	Secrets *Sealer
	// Interests is this replica's copy of what Interest reads (interest.go).
	Interests *Interests
}

// New is a store on pool writing its events through out; now is the clock
// of processed_at and learned refs.
func New(pool *pgxpool.Pool, out outbox.Writer, now func() time.Time) *Store {
	return &Store{pool: pool, out: out, now: now, group: pgbatch.NewGroup(pool, "handle-webhook deliveries"), Interests: newInterests(pool)}
}

// updateMessage is the outbox message of u (key = the payment id).
func updateMessage(ctx context.Context, u *events.GatewayUpdate, id string) (outbox.Message, error) {
	ev, err := webhooks.UpdateEvent(ctx, u, id)
	if err != nil {
		return outbox.Message{}, err
	}
	return outbox.Message{Topic: events.TopicPayment, Key: *u.PaymentID, Event: ev}, nil
}

// Record stores one verified webhook and, in the same transaction, its
// normalized event in the outbox. Concurrent deliveries share that
// transaction and its commit (pgbatch.Group: two pipelined round trips per
// group), each answered once the commit holding it is done.
// It answers the delivery's status (webhooks.StatusOf), or
// webhooks.Duplicate for a redelivery, which changes nothing. An error
// may come while the write still waits in the group (ctx ended): it may
// yet commit, and reads body then, so the caller must not reuse body
// after an error.
func (s *Store) Record(ctx context.Context, u *events.GatewayUpdate, handled bool, body []byte, now time.Time) (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	if handled && u.PaymentID == nil && u.GatewayPaymentID != "" {
		if err := lookupRef(ctx, s.pool, u); err != nil {
			return "", err
		}
	}
	status := webhooks.StatusOf(u, handled)
	var processedAt *time.Time
	if status != webhooks.Parked {
		processedAt = &now
	}
	learn := handled && u.PaymentID != nil && u.GatewayPaymentID != ""
	// A payment this replica knows the map holds (a row of it never
	// changes) is not taught again: the statement leaves the map alone
	// (issue 20: a gateway's repeated confirmations are most webhooks).
	known := learn && s.Interests.has([2]string{u.Gateway, u.GatewayPaymentID})
	// The delivery, the payment it teaches (from its metadata), how many
	// parked deliveries wait for that payment, and its normalized event in
	// the outbox: one statement, so that the group commits it in one round
	// trip (BEGIN, the statements of the group, COMMIT, pipelined). Its
	// first column counts the deliveries it inserted: 0 is a redelivery,
	// and then nothing is written (the ref and outbox CTEs depend on ins).
	var (
		inserted int
		learned  bool
		parked   int64
		toSign   *events.Unsigned
	)
	args := []any{id, u.Gateway, u.GatewayEventID, u.GatewayEventType, status, u.ObjectType, u.GatewayObjectID,
		u.GatewayPaymentID, u.PaymentID, body, u.OccurredAt, now, processedAt, learn}
	sql := recordSQL
	if known {
		sql, args[len(args)-1] = recordKnownSQL, false
	}
	if status == webhooks.Processed {
		m, err := updateMessage(ctx, u, "")
		if err != nil {
			return "", err
		}
		// The outbox writer encodes the event, which the group signs with
		// the events of the deliveries it commits with it (one signature
		// for them all); its row's columns go into recordEmitSQL's outbox
		// CTE.
		rows, unsigned, err := s.out.RowsLater(m)
		if err != nil {
			return "", err
		}
		toSign = unsigned
		sql, args = recordEmitSQL, append(args, rows...)
		if known {
			sql = recordKnownEmitSQL
		}
	}
	guard := pgbatch.Guard{SQL: sql, Args: args, Dest: []any{&inserted, &learned, &parked},
		Proceed: func() bool { return inserted == 1 }}
	ok, err := s.group.Do(ctx, pgbatch.Write{Guard: guard, Events: []*events.Unsigned{toSign}})
	if err != nil {
		return "", err
	}
	if !ok {
		return webhooks.Duplicate, nil
	}
	if learn && !known {
		// The delivery's commit is done: its payment's reference is in the
		// map (inserted by it, or there already), and a row of the map never
		// changes, so this replica knows it without reading it again.
		s.Interests.learn([][2]string{{u.Gateway, u.GatewayPaymentID}})
	}
	if learned && parked > 0 {
		// Parked deliveries wait for this payment: release them now (the
		// tick releases them too, should this fail).
		if err := postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
			return s.unpark(ctx, tx, u.Gateway, u.GatewayPaymentID, *u.PaymentID, now)
		}); err != nil {
			slog.WarnContext(ctx, "parked webhooks not released yet", "gateway_payment_id", u.GatewayPaymentID, "err", err.Error())
		}
	}
	return status, nil
}

// insCTE inserts a delivery ($1–$13; ON CONFLICT: nothing on a
// redelivery).
const insCTE = `WITH ins AS (
			INSERT INTO webhook_events (id, gateway, gateway_event_id, type, status, object_type, gateway_object_id,
				gateway_payment_id, payment_id, body, occurred_at, received_at, processed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (gateway, gateway_event_id) DO NOTHING RETURNING 1)`

// recordCTEs insert a delivery and, when $14 and the delivery is new, the
// payment its metadata names ($8 → $9) into the map.
const recordCTEs = insCTE + `,
		ref AS (
			INSERT INTO webhook_payment_refs (gateway, gateway_payment_id, payment_id, learned_from, created_at)
			SELECT $2, $8, $9, 'metadata', $12 WHERE $14 AND EXISTS (SELECT 1 FROM ins)
			ON CONFLICT DO NOTHING RETURNING 1)`

// recordResult is the guard's row: the deliveries inserted (0 or 1),
// whether the map learned the payment, and, only then, how many parked
// deliveries wait for it (an already known payment has none: they were
// released when it was learned).
const recordResult = `
		SELECT (SELECT count(*)::int FROM ins), EXISTS (SELECT 1 FROM ref),
			CASE WHEN EXISTS (SELECT 1 FROM ref) THEN
				(SELECT count(*) FROM webhook_events WHERE status = 'parked' AND gateway = $2 AND gateway_payment_id = $8)
			ELSE 0 END`

// recordSQL stores a delivery that emits nothing (parked, ignored).
const recordSQL = recordCTEs + recordResult

// recordKnownResult is recordResult for a payment the map holds: nothing
// learned, nothing parked ($14, false here, keeps the statements'
// parameters those of recordSQL and recordEmitSQL).
const recordKnownResult = `
		SELECT (SELECT count(*)::int FROM ins), $14::boolean AND false, 0::bigint`

// recordKnownSQL stores a delivery of a known payment that emits nothing.
const recordKnownSQL = insCTE + recordKnownResult

// recordEmitSQL also writes, when the delivery is new, its event into the
// outbox: outbox.InsertSQL's row, from outbox.Writer.Rows ($15–$20).
const recordEmitSQL = recordCTEs + obCTE + recordResult

// obCTE writes, when the delivery is new, its event into the outbox.
const obCTE = `,
		ob AS (
			INSERT INTO outbox (source, event_id, topic, key, payload, origin_kid)
			SELECT $15, e, t, k, p, o FROM unnest($16::text[], $17::text[], $18::text[], $19::bytea[], $20::text[]) AS x(e, t, k, p, o)
			WHERE EXISTS (SELECT 1 FROM ins))`

// recordKnownEmitSQL is recordEmitSQL for a payment the map holds.
const recordKnownEmitSQL = insCTE + obCTE + recordKnownResult

// rowQuerier is what reads one row: the pool, or a transaction.
type rowQuerier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// lookupRef fills u's payment id from the learned map.
func lookupRef(ctx context.Context, q rowQuerier, u *events.GatewayUpdate) error {
	var pid string
	err := q.QueryRow(ctx, `SELECT payment_id FROM webhook_payment_refs WHERE gateway = $1 AND gateway_payment_id = $2`,
		u.Gateway, u.GatewayPaymentID).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err == nil {
		u.PaymentID = &pid
	}
	return err
}

// ReleaseParked emits the parked deliveries whose payment became known
// without releasing them (the release after learning failed): tick work.
func (s *Store) ReleaseParked(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT e.gateway, e.gateway_payment_id, r.payment_id::text
		FROM webhook_events e JOIN webhook_payment_refs r USING (gateway, gateway_payment_id)
		WHERE e.status = 'parked' LIMIT 100`)
	if err != nil {
		return err
	}
	type ref struct{ gateway, gpid, pid string }
	refs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ref, error) {
		var x ref
		return x, r.Scan(&x.gateway, &x.gpid, &x.pid)
	})
	if err != nil {
		return err
	}
	for _, r := range refs {
		if err := postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
			return s.unpark(ctx, tx, r.gateway, r.gpid, r.pid, s.now())
		}); err != nil {
			return err
		}
	}
	return nil
}

// unpark normalizes again and emits the webhooks parked for a gateway
// payment object whose billfn payment is now known.
func (s *Store) unpark(ctx context.Context, tx pgx.Tx, gateway, gatewayPaymentID, paymentID string, now time.Time) error {
	rows, err := tx.Query(ctx, `SELECT id, body FROM webhook_events
		WHERE status = 'parked' AND gateway = $1 AND gateway_payment_id = $2 ORDER BY id FOR UPDATE`, gateway, gatewayPaymentID)
	if err != nil {
		return err
	}
	type parkedRow struct {
		id   string
		body []byte
	}
	parked, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (parkedRow, error) {
		var p parkedRow
		return p, r.Scan(&p.id, &p.body)
	})
	if err != nil || len(parked) == 0 {
		return err
	}
	var msgs []outbox.Message
	ids := make([]string, 0, len(parked))
	for _, p := range parked {
		pr, err := webhooks.Parse(p.body)
		if err != nil {
			continue // verified when it came; cannot happen
		}
		u, handled := webhooks.Normalize(gateway, pr)
		if !handled {
			continue
		}
		u.PaymentID = &paymentID
		m, err := updateMessage(ctx, &u, "")
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
		ids = append(ids, p.id)
	}
	if err := s.out.Add(ctx, tx, msgs...); err != nil {
		return err
	}
	if s.Unparked != nil {
		s.Unparked(gateway, len(ids))
	}
	_, err = tx.Exec(ctx, `UPDATE webhook_events SET status = 'processed', payment_id = $2, processed_at = $3
		WHERE id = ANY($1::uuid[])`, ids, paymentID, now)
	return err
}

// learnSQL is Learn's statement: the references ($1–$4, learned at $5)
// new to the payment map and, for each, whether webhooks are parked on it.
const learnSQL = `WITH learned AS (
			INSERT INTO webhook_payment_refs (gateway, gateway_payment_id, payment_id, learned_from, created_at)
			SELECT g, gp, p::uuid, f, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(g, gp, p, f)
			ON CONFLICT DO NOTHING RETURNING gateway, gateway_payment_id, payment_id)
		SELECT l.gateway, l.gateway_payment_id, l.payment_id::text, EXISTS (SELECT 1 FROM webhook_events e
			WHERE e.status = 'parked' AND e.gateway = l.gateway AND e.gateway_payment_id = l.gateway_payment_id)
		FROM learned l`

// Learn records, in the delivery's transaction tx, the payment references
// capture-payment's events taught: one statement learns every reference
// and says which of the new ones webhooks are parked on (rare); only those
// are released one by one. It answers how many references it released webhooks
// of (each release writes outbox events).
func (s *Store) Learn(ctx context.Context, tx pgx.Tx, refs []webhooks.PaymentRef) (unparked int, err error) {
	if len(refs) == 0 {
		return 0, nil
	}
	// One order for every batch: concurrent batches that share a key wait
	// for each other instead of deadlocking.
	slices.SortStableFunc(refs, func(a, b webhooks.PaymentRef) int {
		return cmp.Or(strings.Compare(a.Gateway, b.Gateway), strings.Compare(a.GatewayPaymentID, b.GatewayPaymentID))
	})
	cols := [4][]string{}
	for _, r := range refs {
		cols[0], cols[1] = append(cols[0], r.Gateway), append(cols[1], r.GatewayPaymentID)
		cols[2], cols[3] = append(cols[2], r.PaymentID), append(cols[3], r.From)
	}
	// The references new to the map and, for each, whether webhooks are
	// parked on it (rare): one statement, one round trip. Its generic plan
	// (postgres.GenericPlans, pipelined before it) is the one its custom
	// plans are, and Postgres kept planning it on every delivery (its
	// generic plan estimates ten references to a delivery's one or two).
	b := &pgx.Batch{}
	b.Queue(postgres.GenericPlans)
	b.Queue(learnSQL, cols[0], cols[1], cols[2], cols[3], s.now())
	br := tx.SendBatch(ctx, b)
	_, err = br.Exec()
	var rows pgx.Rows
	if err == nil {
		rows, err = br.Query()
	}
	if err != nil {
		_ = br.Close()
		return 0, err
	}
	waiting := map[[2]string]bool{} // references with parked webhooks
	learned, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (webhooks.PaymentRef, error) {
		var (
			ref    webhooks.PaymentRef
			parked bool
		)
		err := r.Scan(&ref.Gateway, &ref.GatewayPaymentID, &ref.PaymentID, &parked)
		waiting[[2]string{ref.Gateway, ref.GatewayPaymentID}] = parked
		return ref, err
	})
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil || len(learned) == 0 {
		return 0, err
	}
	for _, r := range learned {
		if waiting[[2]string{r.Gateway, r.GatewayPaymentID}] {
			if err := s.unpark(ctx, tx, r.Gateway, r.GatewayPaymentID, r.PaymentID, s.now()); err != nil {
				return 0, err
			}
			unparked++
		}
	}
	return unparked, nil
}

// Interest is what decides whether an event can change anything here
// (api's Receiver.Wanted): the event patterns of the enabled endpoints,
// and which of refs the payment map holds. What the replica's copy
// (Interests) answers is not read: with the listener connected and every
// reference known here, no round trip at all; otherwise the rest is read
// in one round trip, outside any transaction (the read writes nothing).
// A reference whose first[i] is true is named by the first event about
// its object (billfn.payment.created): when the copy does not hold it, it
// is answered unknown without a read, which would find nothing but for a
// gateway's webhook having taught it first (then the transaction that
// learns it learns nothing; issue 20).
func (s *Store) Interest(ctx context.Context, refs []webhooks.PaymentRef, first []bool) (subscribed [][]string, known map[[2]string]bool, err error) {
	c := s.Interests
	known = map[[2]string]bool{}
	subscribed, cached := c.subscribed()
	missing := c.knows(refs, known)
	if len(missing) > 0 && slices.Contains(first, true) {
		fresh := map[[2]string]bool{}
		for i, r := range refs {
			if i < len(first) && first[i] {
				fresh[[2]string{r.Gateway, r.GatewayPaymentID}] = true
			}
		}
		missing = slices.DeleteFunc(missing, func(r webhooks.PaymentRef) bool { return fresh[[2]string{r.Gateway, r.GatewayPaymentID}] })
	}
	if cached && len(missing) == 0 {
		return subscribed, known, nil
	}
	var gws, gpids []string
	if len(missing) > 0 {
		gws, gpids = make([]string, len(missing)), make([]string, len(missing))
		for i, r := range missing {
			gws[i], gpids[i] = r.Gateway, r.GatewayPaymentID
		}
	}
	if cached {
		// The references alone (the common case: a payment's first
		// events): one query, not a batch of one.
		rows, err := s.pool.Query(ctx, refsSQL, gws, gpids)
		if err != nil {
			return nil, nil, err
		}
		return subscribed, known, c.found(rows, known)
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT events FROM webhook_endpoints WHERE NOT disabled`)
	if len(missing) > 0 {
		b.Queue(refsSQL, gws, gpids)
	}
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, nil, err
	}
	if subscribed, err = pgx.CollectRows(rows, pgx.RowTo[[]string]); err != nil {
		return nil, nil, err
	}
	if len(missing) > 0 {
		rows, err := br.Query()
		if err != nil {
			return nil, nil, err
		}
		if err := c.found(rows, known); err != nil {
			return nil, nil, err
		}
	}
	return subscribed, known, br.Close()
}

// refsSQL is which of the references ($1, $2) the payment map holds.
const refsSQL = `SELECT gateway, gateway_payment_id FROM webhook_payment_refs
	WHERE (gateway, gateway_payment_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`

// found notes the references refsSQL answered in known, and remembers them.
func (c *Interests) found(rows pgx.Rows, known map[[2]string]bool) error {
	var (
		key   [2]string
		found [][2]string
	)
	if _, err := pgx.ForEachRow(rows, []any{&key[0], &key[1]}, func() error {
		known[key] = true
		found = append(found, key)
		return nil
	}); err != nil {
		return err
	}
	c.learn(found)
	return nil
}

// Replay runs the normalization of stored delivery id again, under its
// row lock, and, when its payment is known, emits the result as a new
// event (capture-payment applies it monotonically, so a replay is always
// harmless). answer is the idempotent response stored with the change, in
// the same transaction. emitted says whether an event was written.
func (s *Store) Replay(ctx context.Context, id string, answer func(*webhooks.Delivery) idempotency.Response) (d *webhooks.Delivery, emitted bool, err error) {
	err = postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		emitted = false
		if d, err = get(ctx, tx, id, true); err != nil {
			return err
		}
		p, err := webhooks.Parse(d.Body)
		if err != nil {
			return err
		}
		u, handled := webhooks.Normalize(d.Gateway, p)
		webhooks.CheckPaymentID(&u)
		if handled && u.PaymentID == nil && u.GatewayPaymentID != "" {
			if err := lookupRef(ctx, tx, &u); err != nil {
				return err
			}
		}
		now := s.now()
		d.Replays++
		d.Status = webhooks.StatusOf(&u, handled)
		if d.Status == webhooks.Processed {
			evID, _ := uuid.NewV7()
			m, err := updateMessage(ctx, &u, evID.String())
			if err != nil {
				return err
			}
			if err := s.out.Add(ctx, tx, m); err != nil {
				return err
			}
			d.PaymentID, d.ProcessedAt, emitted = u.PaymentID, &now, true
		}
		if _, err := tx.Exec(ctx, `UPDATE webhook_events SET status = $2, payment_id = $3, processed_at = $4,
			replays = $5 WHERE id = $1`, d.ID, d.Status, d.PaymentID, d.ProcessedAt, d.Replays); err != nil {
			return err
		}
		return idempotency.Complete(ctx, tx, answer(d))
	})
	return d, emitted, err
}

const deliveryCols = `id, gateway, gateway_event_id, type, status, object_type, gateway_object_id, gateway_payment_id,
	payment_id, occurred_at, received_at, processed_at, replays`

func scanDelivery(row pgx.Row, withBody bool) (*webhooks.Delivery, error) {
	d := &webhooks.Delivery{}
	dest := []any{&d.ID, &d.Gateway, &d.GatewayEventID, &d.Type, &d.Status, &d.ObjectType, &d.GatewayObjectID,
		&d.GatewayPaymentID, &d.PaymentID, &d.OccurredAt, &d.ReceivedAt, &d.ProcessedAt, &d.Replays}
	var body []byte
	if withBody {
		dest = append(dest, &body)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	if withBody {
		d.Body = body
	}
	return d, nil
}

// Get is delivery id with its body (webhooks.ErrNoDelivery when none).
func (s *Store) Get(ctx context.Context, id string) (*webhooks.Delivery, error) {
	return get(ctx, s.pool, id, false)
}

func get(ctx context.Context, q rowQuerier, id string, lock bool) (*webhooks.Delivery, error) {
	sql := `SELECT ` + deliveryCols + `, body FROM webhook_events WHERE id = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	d, err := scanDelivery(q.QueryRow(ctx, sql, id), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, webhooks.ErrNoDelivery
	}
	return d, err
}

// List is a page of deliveries (f.Limit+1 rows, to tell whether there is
// a next page), newest first, without their bodies.
func (s *Store) List(ctx context.Context, f webhooks.Filter) ([]*webhooks.Delivery, error) {
	var w postgres.Where
	w.Filter("gateway", f.Gateway)
	w.Filter("type", f.Type)
	w.Filter("status", f.Status)
	if f.Status != "" && f.Status != webhooks.Processed {
		// Said in the statement, so that even its generic plan may read
		// the partial index of the rare statuses (migration 00044).
		w.And("status <> 'processed'")
	}
	if f.After != "" {
		w.And("id < ?::uuid", f.After)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+deliveryCols+` FROM webhook_events`+w.SQL()+` ORDER BY id DESC LIMIT `+w.Arg(f.Limit+1), w.Args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*webhooks.Delivery, error) { return scanDelivery(r, false) })
}

// Tx is a delivery's transaction as the event handlers see it: what they
// may do there (Enqueue, Learn), without SQL.
type Tx struct {
	s  *Store
	tx pgx.Tx
}

// Enqueue is Store.Enqueue in the delivery's transaction.
func (t Tx) Enqueue(ctx context.Context, evs []events.Event) (int, error) {
	return t.s.Enqueue(ctx, t.tx, evs)
}

// Learn is Store.Learn in the delivery's transaction.
func (t Tx) Learn(ctx context.Context, refs []webhooks.PaymentRef) (int, error) {
	return t.s.Learn(ctx, t.tx, refs)
}

// Handler adapts an event handler on a Tx to the receiver's.
func (s *Store) Handler(fn func(ctx context.Context, tx Tx, ev events.Event) error) events.Handler {
	return func(ctx context.Context, tx pgx.Tx, ev events.Event) error { return fn(ctx, Tx{s, tx}, ev) }
}

// Batch adapts a batch handler on a Tx to the receiver's.
func (s *Store) Batch(fn func(ctx context.Context, tx Tx, evs []events.Event) error) events.BatchHandler {
	return func(ctx context.Context, tx pgx.Tx, evs []events.Event) error { return fn(ctx, Tx{s, tx}, evs) }
}
