package store

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
)

// The outgoing webhooks' SQL: the merchant's endpoints
// (webhook_endpoints) and one delivery per event per endpoint
// (webhook_deliveries), written in the transaction that applies the event.

const endpointCols = `id, url, events, description, disabled, disabled_reason, secret, coalesce(previous_secret, ''),
	previous_secret_expires_at, created_at, updated_at`

func (s *Store) scanEndpoint(row pgx.Row) (*outgoing.Endpoint, error) {
	e := &outgoing.Endpoint{}
	var cur, prev string
	if err := row.Scan(&e.ID, &e.URL, &e.Events, &e.Description, &e.Disabled, &e.DisabledReason, &cur, &prev,
		&e.PreviousSecretEnds, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return nil, err
	}
	return e, s.openSecrets(e, cur, prev)
}

// openSecrets sets e's secrets from what the row holds (sealed or not).
func (s *Store) openSecrets(e *outgoing.Endpoint, cur, prev string) error {
	c, err := s.Secrets.Open(e.ID, cur)
	if err != nil {
		return err
	}
	p, err := s.Secrets.Open(e.ID, prev)
	if err != nil {
		return err
	}
	e.SetSecrets(c, p)
	return nil
}

// CreateEndpoint stores a new endpoint e (its id, secret and times set)
// and, in the same transaction, the request's Idempotency-Key answer
// (completeSealed: the secret in it sealed).
func (s *Store) CreateEndpoint(ctx context.Context, e *outgoing.Endpoint, answer func(sealed *outgoing.Endpoint) idempotency.Response) error {
	secret, err := s.Secrets.Seal(e.ID, e.CurrentSecret())
	if err != nil {
		return err
	}
	err = postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_endpoints (id, url, events, description, secret, disabled, disabled_reason,
			created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			e.ID, e.URL, e.Events, e.Description, secret, e.Disabled, e.DisabledReason, e.CreatedAt, e.UpdatedAt); err != nil {
			return err
		}
		return completeSealed(ctx, tx, e, secret, answer)
	})
	s.Interests.drop()
	return err
}

// completeSealed stores in tx the request's Idempotency-Key answer about
// endpoint e (idempotency.Complete; nothing without a key, or without
// answer): answer is given a copy of e whose shown Secret (the current
// one, at its creation or rotation) is sealed, as the row holds it, so
// the idempotency table keeps no signing secret in clear; the replay
// opens it (api.openReplayedSecret).
func completeSealed(ctx context.Context, tx pgx.Tx, e *outgoing.Endpoint, sealedCurrent string,
	answer func(sealed *outgoing.Endpoint) idempotency.Response) error {
	if answer == nil {
		return nil
	}
	sealed := *e
	if sealed.Secret != "" {
		sealed.Secret = sealedCurrent
	}
	return idempotency.Complete(ctx, tx, answer(&sealed))
}

// Endpoint is endpoint id (outgoing.ErrNoEndpoint when none).
func (s *Store) Endpoint(ctx context.Context, id string) (*outgoing.Endpoint, error) {
	e, err := s.scanEndpoint(s.pool.QueryRow(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, outgoing.ErrNoEndpoint
	}
	return e, err
}

// Endpoints is a page of endpoints (limit+1 rows), newest first.
func (s *Store) Endpoints(ctx context.Context, limit int, after string) ([]*outgoing.Endpoint, error) {
	var w postgres.Where
	if after != "" {
		w.And("id < ?::uuid", after)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints`+w.SQL()+` ORDER BY id DESC LIMIT `+w.Arg(limit+1), w.Args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*outgoing.Endpoint, error) { return s.scanEndpoint(r) })
}

// UpdateEndpoint locks endpoint id, lets change alter it and saves it, in
// one transaction with, when answer is not nil, the request's
// Idempotency-Key answer (completeSealed: a rotation's new secret in it
// sealed).
func (s *Store) UpdateEndpoint(ctx context.Context, id string, change func(*outgoing.Endpoint) error,
	answer func(sealed *outgoing.Endpoint) idempotency.Response) (*outgoing.Endpoint, error) {
	var (
		e        *outgoing.Endpoint
		interest bool // what it subscribes to or whether it is enabled changed
	)
	err := postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		e, err = s.scanEndpoint(tx.QueryRow(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return outgoing.ErrNoEndpoint
		}
		if err != nil {
			return err
		}
		subscribed, disabled := slices.Clone(e.Events), e.Disabled
		if err := change(e); err != nil {
			return err
		}
		interest = disabled != e.Disabled || !slices.Equal(subscribed, e.Events)
		prev := &e.PreviousSecretEnds
		var previous *string
		if p := e.PreviousSecret(); p != "" {
			sealed, err := s.Secrets.Seal(e.ID, p)
			if err != nil {
				return err
			}
			previous = &sealed
		}
		// Written sealed every time: a secret stored before a key was
		// configured is sealed at its endpoint's next change.
		current, err := s.Secrets.Seal(e.ID, e.CurrentSecret())
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET url = $2, events = $3, description = $4, disabled = $5,
			disabled_reason = $6, secret = $7, previous_secret = $8, previous_secret_expires_at = $9, updated_at = $10
			WHERE id = $1`, e.ID, e.URL, e.Events, e.Description, e.Disabled, e.DisabledReason, current,
			previous, *prev, e.UpdatedAt); err != nil {
			return err
		}
		return completeSealed(ctx, tx, e, current, answer)
	})
	if err == nil && interest {
		s.Interests.drop()
	}
	return e, err
}

// DeleteEndpoint deletes endpoint id and its delivery log.
func (s *Store) DeleteEndpoint(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id)
	s.Interests.drop()
	if err == nil && tag.RowsAffected() == 0 {
		return outgoing.ErrNoEndpoint
	}
	return err
}

// Enqueue writes, in tx (the receiver's transaction, which records the
// events as processed), one pending delivery per event per enabled
// endpoint that subscribed to its type: at most one per (endpoint, event)
// whatever the redeliveries. It answers how many it wrote. When the
// replica's copy of the endpoints (Interests) is usable and no endpoint in
// it subscribes to the events' types, it reads nothing: the events are
// here to teach the payment map (a payment's first event), and wanted
// judged from that copy that no endpoint wants them, as it judges the
// events it ignores.
func (s *Store) Enqueue(ctx context.Context, tx pgx.Tx, evs []events.Event) (int, error) {
	var wanted []events.Event
	for _, ev := range evs {
		if outgoing.IsDeliverable(ev.Type()) {
			wanted = append(wanted, ev)
		}
	}
	if len(wanted) == 0 {
		return 0, nil
	}
	if subs, ok := s.Interests.subscribed(); ok && !slices.ContainsFunc(wanted, func(ev events.Event) bool {
		return outgoing.AnyWants(subs, ev.Type())
	}) {
		return 0, nil
	}
	rows, err := tx.Query(ctx, `SELECT id::text, events FROM webhook_endpoints WHERE NOT disabled`)
	if err != nil {
		return 0, err
	}
	type sub struct {
		id     string
		events []string
	}
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sub, error) {
		var x sub
		return x, r.Scan(&x.id, &x.events)
	})
	if err != nil || len(subs) == 0 {
		return 0, err
	}
	now := s.now()
	var cols struct {
		ids, endpoints, sources, eventIDs, types []string
		payloads                                 [][]byte
	}
	for _, ev := range wanted {
		var payload []byte
		for _, e := range subs {
			if !outgoing.Matches(e.events, ev.Type()) {
				continue
			}
			if payload == nil {
				if payload, err = Payload(ev); err != nil {
					return 0, err
				}
			}
			id, err := uuid.NewV7()
			if err != nil {
				return 0, err
			}
			cols.ids, cols.endpoints = append(cols.ids, id.String()), append(cols.endpoints, e.id)
			cols.sources, cols.eventIDs = append(cols.sources, ev.Source()), append(cols.eventIDs, ev.ID())
			cols.types, cols.payloads = append(cols.types, ev.Type()), append(cols.payloads, payload)
		}
	}
	if len(cols.ids) == 0 {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_source, event_id, event_type, payload,
			status, next_attempt_at, created_at)
		SELECT i::uuid, e::uuid, s, ev, t, p, 'pending', $7, $7
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[]) AS x(i, e, s, ev, t, p)
		ON CONFLICT (endpoint_id, event_source, event_id) DO NOTHING`,
		cols.ids, cols.endpoints, cols.sources, cols.eventIDs, cols.types, cols.payloads, now)
	return int(tag.RowsAffected()), err
}

// Payload is the CloudEvent JSON an endpoint receives for ev: the event
// as it travelled, without billfn's internal origin proof.
func Payload(ev events.Event) ([]byte, error) {
	return events.Marshal(events.WithoutOrigin(ev))
}

// EnqueueTest writes a delivery of the test event ev to endpoint id, sent
// in its turn whatever the endpoint subscribed to, and, in the same
// transaction, the request's Idempotency-Key answer about it
// (idempotency.Complete; nothing without a key): a retried request finds
// that answer and queues no second test event.
func (s *Store) EnqueueTest(ctx context.Context, endpointID string, ev events.Event,
	answer func(*outgoing.Delivery) idempotency.Response) (*outgoing.Delivery, error) {
	payload, err := Payload(ev)
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	now := s.now()
	var d *outgoing.Delivery
	err = postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_source, event_id, event_type, payload,
			status, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)`,
			id, endpointID, ev.Source(), ev.ID(), ev.Type(), payload, now); err != nil {
			return err
		}
		var err error
		if d, err = delivery(ctx, tx, id.String()); err != nil {
			return err
		}
		return idempotency.Complete(ctx, tx, answer(d))
	})
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) && pg.SQLState() == "23503" { // the endpoint went away
		return nil, outgoing.ErrNoEndpoint
	}
	return d, err
}

// Claim is an endpoint leased for sending, with its next deliveries in
// order (the oldest pending first).
type Claim struct {
	Endpoint   *outgoing.Endpoint
	Deliveries []*outgoing.Delivery
}

// Claim leases, until `until`, up to limit enabled endpoints whose oldest
// pending delivery is due at now, and answers, for each, up to perEndpoint
// of its pending deliveries in order, as far as they are due: one sender
// at a time per endpoint, the oldest first, so an endpoint gets its events
// in order and a failing one holds those after it. A lease another sender
// holds is left alone; an expired one (a sender that died) is taken over,
// and its deliveries are sent again with the same ids.
func (s *Store) Claim(ctx context.Context, now, until time.Time, limit, perEndpoint int) ([]Claim, error) {
	rows, err := s.pool.Query(ctx, `WITH due AS (
			SELECT e.id FROM webhook_endpoints e
			CROSS JOIN LATERAL (`+headOf+`) h
			WHERE NOT e.disabled AND h.next_attempt_at <= $1 AND (e.lease_until IS NULL OR e.lease_until <= $1)
			ORDER BY h.next_attempt_at LIMIT $3),
		leased AS (
			UPDATE webhook_endpoints e SET lease_until = $2 FROM due
			WHERE e.id = due.id AND NOT e.disabled AND (e.lease_until IS NULL OR e.lease_until <= $1)
			RETURNING e.id, e.url, e.events, e.description, e.disabled, e.disabled_reason, e.secret,
				coalesce(e.previous_secret, '') AS previous_secret, e.previous_secret_expires_at, e.created_at, e.updated_at)
		SELECT `+prefixed("d.", deliveryOutCols)+`, d.payload, `+prefixed("l.", endpointColNames)+`
		FROM leased l CROSS JOIN LATERAL (
			SELECT * FROM webhook_deliveries d WHERE d.endpoint_id = l.id AND d.status = 'pending' ORDER BY d.id LIMIT $4) d
		ORDER BY l.id, d.id`, now, until, limit, perEndpoint)
	if err != nil {
		return nil, err
	}
	type row struct {
		d    *outgoing.Delivery
		e    *outgoing.Endpoint
		open error // its secrets do not open
	}
	flat, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		d := &outgoing.Delivery{}
		e := &outgoing.Endpoint{}
		var cur, prev string
		dest := append(deliveryDest(d), &d.Payload, &e.ID, &e.URL, &e.Events, &e.Description, &e.Disabled, &e.DisabledReason,
			&cur, &prev, &e.PreviousSecretEnds, &e.CreatedAt, &e.UpdatedAt)
		if err := r.Scan(dest...); err != nil {
			return row{}, err
		}
		return row{d, e, s.openSecrets(e, cur, prev)}, nil
	})
	if err != nil {
		return nil, err
	}
	var out []Claim
	stopped := false // the current endpoint's next delivery is not due
	refused := map[string]bool{}
	for _, x := range flat {
		if x.open != nil {
			// Nothing is sent unsigned, and the other endpoints of the
			// round are not held: this one keeps its lease, so it is tried
			// again when the lease ends (the key may be back by then).
			if !refused[x.e.ID] {
				refused[x.e.ID] = true
				slog.ErrorContext(ctx, "webhook endpoint skipped: its signing secret does not open", "endpoint_id", x.e.ID,
					"err", x.open.Error(), "retry_after", until.Sub(now).String())
			}
			continue
		}
		if len(out) == 0 || out[len(out)-1].Endpoint.ID != x.e.ID {
			out = append(out, Claim{Endpoint: x.e})
			stopped = false
		}
		c := &out[len(out)-1]
		if stopped || x.d.NextAttemptAt == nil || x.d.NextAttemptAt.After(now) {
			stopped = true // in order: nothing after a delivery that is not due
			continue
		}
		c.Deliveries = append(c.Deliveries, x.d)
	}
	return out, nil
}

// Finish records the attempts of a claim's deliveries (each as the domain
// updated it: outgoing.Record) and releases the endpoint's lease; disabled,
// when set, disables the endpoint (a schedule is spent) and writes its
// billfn.webhook_endpoint.disabled to the outbox, in the same transaction:
// the notice exists exactly when the endpoint was disabled, which Finish
// answers. A delivery retried by hand since its claim keeps the retry (its
// attempt is not recorded, and does not disable the endpoint). An
// endpoint an admin disabled meanwhile keeps its reason, and no notice is
// written.
func (s *Store) Finish(ctx context.Context, endpointID string, ds []*outgoing.Delivery, disabled *events.WebhookEndpointDisabled) (bool, error) {
	var newly bool // this transaction disabled the endpoint (it was enabled)
	err := postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		newly = false
		b := &pgx.Batch{}
		for _, d := range ds {
			// Only over the state it was claimed in: a retry by hand asked
			// while the attempt was in flight (retries moved on) stands.
			b.Queue(`UPDATE webhook_deliveries SET status = $2, attempts = $3, next_attempt_at = $4,
				last_attempt_at = $5, response_status = $6, response_body = $7, latency_ms = $8, error = $9
				WHERE id = $1 AND status = 'pending' AND retries = $10`, d.ID, d.Status, d.Attempts, d.NextAttemptAt, d.LastAttemptAt,
				d.ResponseStatus, d.ResponseBody, d.LatencyMS, d.Error, d.Retries)
		}
		var (
			reason  *string
			failing *string // the delivery whose spent schedule disables the endpoint
		)
		if disabled != nil {
			reason, failing = &disabled.Reason, &disabled.DeliveryID
		}
		// spent: the failing delivery's record above applied (it is failed
		// now), so its schedule is spent; a retry asked meanwhile kept it
		// pending, and the endpoint is not disabled. newly: this
		// transaction disabled the endpoint (it was enabled).
		b.Queue(`WITH old AS (SELECT id, disabled FROM webhook_endpoints WHERE id = $1 FOR UPDATE),
			spent AS (SELECT $2::boolean AND EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $5::uuid AND status = 'failed') AS yes)
			UPDATE webhook_endpoints e SET lease_until = NULL,
				disabled = old.disabled OR spent.yes,
				disabled_reason = CASE WHEN spent.yes AND NOT old.disabled THEN $3 ELSE e.disabled_reason END,
				updated_at = CASE WHEN spent.yes AND NOT old.disabled THEN $4 ELSE e.updated_at END
			FROM old, spent WHERE e.id = old.id RETURNING spent.yes AND NOT old.disabled`,
			endpointID, disabled != nil, reason, s.now(), failing)
		br := tx.SendBatch(ctx, b)
		for range ds {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return err
			}
		}
		if err := br.QueryRow().Scan(&newly); err != nil && !errors.Is(err, pgx.ErrNoRows) { // deleted meanwhile
			br.Close()
			return err
		}
		if err := br.Close(); err != nil || !newly {
			return err
		}
		ev, err := webhooks.DisabledEvent(ctx, disabled)
		if err != nil {
			return err
		}
		return s.out.Add(ctx, tx, outbox.Message{Topic: events.TopicPayment, Key: disabled.EndpointID, Event: ev})
	})
	if err == nil && newly {
		s.Interests.drop()
	}
	return newly && err == nil, err
}

// headOf is the oldest pending delivery of endpoint e: the one it is
// sent next (one index lookup per endpoint, whatever the backlog).
const headOf = `SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
	WHERE d.endpoint_id = e.id AND d.status = 'pending' ORDER BY d.id LIMIT 1`

// NextDue is when the next delivery of an enabled endpoint is due — its
// oldest pending one, not before another sender's lease ends (false when
// none is pending).
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var t *time.Time
	err := s.pool.QueryRow(ctx, `SELECT min(greatest(h.next_attempt_at, e.lease_until)) FROM webhook_endpoints e
		CROSS JOIN LATERAL (`+headOf+`) h WHERE NOT e.disabled`).Scan(&t)
	if err != nil || t == nil {
		return time.Time{}, false, err
	}
	return *t, true, nil
}

const deliveryOutCols = `id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at, last_attempt_at,
	response_status, response_body, latency_ms, error, created_at, retries`

const endpointColNames = `id, url, events, description, disabled, disabled_reason, secret, previous_secret,
	previous_secret_expires_at, created_at, updated_at`

// prefixed qualifies each column of a list with p.
func prefixed(p, cols string) string {
	out := []byte{}
	start := true
	for i := 0; i < len(cols); i++ {
		c := cols[i]
		if start && c != ' ' && c != '\t' && c != '\n' {
			out = append(out, p...)
			start = false
		}
		out = append(out, c)
		if c == ',' {
			start = true
		}
	}
	return string(out)
}

func deliveryDest(d *outgoing.Delivery) []any {
	return []any{&d.ID, &d.EndpointID, &d.EventID, &d.EventType, &d.Status, &d.Attempts, &d.NextAttemptAt, &d.LastAttemptAt,
		&d.ResponseStatus, &d.ResponseBody, &d.LatencyMS, &d.Error, &d.CreatedAt, &d.Retries}
}

// Delivery is outgoing delivery id (outgoing.ErrNoDelivery when none).
func (s *Store) Delivery(ctx context.Context, id string) (*outgoing.Delivery, error) {
	return delivery(ctx, s.pool, id)
}

func delivery(ctx context.Context, q rowQuerier, id string) (*outgoing.Delivery, error) {
	d := &outgoing.Delivery{}
	err := q.QueryRow(ctx, `SELECT `+deliveryOutCols+` FROM webhook_deliveries WHERE id = $1`, id).Scan(deliveryDest(d)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, outgoing.ErrNoDelivery
	}
	return d, err
}

// Deliveries is a page of an endpoint's delivery log (f.Limit+1 rows),
// newest first.
func (s *Store) Deliveries(ctx context.Context, f outgoing.Filter) ([]*outgoing.Delivery, error) {
	var w postgres.Where
	w.And("endpoint_id = ?::uuid", f.EndpointID)
	w.Filter("status", f.Status)
	if f.After != "" {
		w.And("id < ?::uuid", f.After)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+deliveryOutCols+` FROM webhook_deliveries`+w.SQL()+` ORDER BY id DESC LIMIT `+w.Arg(f.Limit+1), w.Args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*outgoing.Delivery, error) {
		d := &outgoing.Delivery{}
		return d, r.Scan(deliveryDest(d)...)
	})
}

// Retry makes delivery id pending again, due now, with a fresh schedule
// (its attempts counted from zero again): it is sent in its turn, once its
// endpoint is enabled. It counts the retry, so an attempt in flight, whose
// claim read the count before, is not recorded over it (Finish). The
// request's Idempotency-Key answer about it is stored in the same
// transaction (idempotency.Complete; nothing without a key): a retried
// request finds that answer and retries nothing twice.
func (s *Store) Retry(ctx context.Context, id string, answer func(*outgoing.Delivery) idempotency.Response) (*outgoing.Delivery, error) {
	var d *outgoing.Delivery
	err := postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2, attempts = 0,
			retries = retries + 1 WHERE id = $1`, id, s.now())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return outgoing.ErrNoDelivery
		}
		if d, err = delivery(ctx, tx, id); err != nil {
			return err
		}
		return idempotency.Complete(ctx, tx, answer(d))
	})
	return d, err
}

// PruneDeliveries deletes up to limit finished deliveries (succeeded or
// failed) whose last attempt is before cutoff, oldest first, and answers
// how many it deleted. Pending ones are never pruned, whatever their age.
func (s *Store) PruneDeliveries(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_deliveries WHERE id IN (
		SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND last_attempt_at < $1
		ORDER BY last_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff, limit)
	return int(tag.RowsAffected()), err
}
