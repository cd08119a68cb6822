package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

// Delivery statuses (webhook_events.status), and "duplicate" for a
// redelivery (nothing stored).
const (
	stProcessed = "processed" // normalized and emitted
	stParked    = "parked"    // about a payment not known yet: emitted when it is
	stIgnored   = "ignored"   // a type billfn does not act on: stored and acknowledged
	stDuplicate = "duplicate"
)

// updateNS namespaces the ids of normalized events: one gateway event
// always becomes the same CloudEvent id, so nothing downstream applies it
// twice even if it were emitted twice.
var updateNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/handle-webhook/gateway_updated"))

// updateMessage builds the outbox message of u (key and subject = the
// payment id); id "" derives the CloudEvent id from the gateway event.
func updateMessage(ctx context.Context, u *events.GatewayUpdate, id string) (outbox.Message, error) {
	ev, err := events.New(ctx, name, events.TypeGatewayUpdated, *u.PaymentID, u)
	if err != nil {
		return outbox.Message{}, err
	}
	if id == "" {
		id = uuid.NewSHA1(updateNS, []byte(u.Gateway+":"+u.GatewayEventID)).String()
	}
	ev.SetID(id)
	return outbox.Message{Topic: events.TopicPayment, Key: *u.PaymentID, Event: ev}, nil
}

// record stores one verified webhook and, in the same transaction, its
// normalized event in the outbox: one pipeline, one round trip, one commit.
// A redelivery changes nothing.
func (s *service) record(ctx context.Context, u *events.GatewayUpdate, handled bool, body []byte, now time.Time) (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	if handled && u.PaymentID == nil && u.GatewayPaymentID != "" {
		if err := lookupRef(ctx, s.d.Pool, u); err != nil {
			return "", err
		}
	}
	status := stIgnored
	if handled {
		status = stParked
		if u.PaymentID != nil {
			status = stProcessed
		}
	}
	var processedAt *time.Time
	if status != stParked {
		processedAt = &now
	}
	learn := handled && u.PaymentID != nil && u.GatewayPaymentID != ""
	b := &pgx.Batch{}
	// The delivery, the payment it teaches (from its metadata), and how
	// many parked deliveries wait for that payment. A redelivery makes the
	// first expression divide by zero, which aborts the whole pipeline.
	b.Queue(`WITH ins AS (
			INSERT INTO webhook_events (id, gateway, gateway_event_id, type, status, object_type, gateway_object_id,
				gateway_payment_id, payment_id, body, occurred_at, received_at, processed_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (gateway, gateway_event_id) DO NOTHING RETURNING 1),
		ref AS (
			INSERT INTO webhook_payment_refs (gateway, gateway_payment_id, payment_id, learned_from, created_at)
			SELECT $2, $8, $9, 'metadata', $12 WHERE $14 AND EXISTS (SELECT 1 FROM ins)
			ON CONFLICT DO NOTHING RETURNING 1)
		SELECT 1 / (SELECT count(*)::int FROM ins), EXISTS (SELECT 1 FROM ref),
			(SELECT count(*) FROM webhook_events WHERE $14 AND status = 'parked' AND gateway = $2 AND gateway_payment_id = $8)`,
		id, u.Gateway, u.GatewayEventID, u.GatewayEventType, status, u.ObjectType, u.GatewayObjectID,
		u.GatewayPaymentID, u.PaymentID, body, u.OccurredAt, now, processedAt, learn)
	if status == stProcessed {
		m, err := updateMessage(ctx, u, "")
		if err != nil {
			return "", err
		}
		if err := outbox.Add(ctx, pgbatch.Queue(b), name, m); err != nil {
			return "", err
		}
	}
	var (
		one     int
		learned bool
		parked  int64
	)
	err = pgbatch.SendScan(ctx, s.d.Pool, b, &one, &learned, &parked)
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "22012" {
		return stDuplicate, nil
	}
	if err != nil {
		return "", err
	}
	if learned && parked > 0 {
		// Parked deliveries wait for this payment: release them now (the
		// tick releases them too, should this fail).
		if err := postgres.Tx(ctx, s.d.Pool, func(tx pgx.Tx) error {
			return s.unpark(ctx, tx, u.Gateway, u.GatewayPaymentID, *u.PaymentID, now)
		}); err != nil {
			slog.WarnContext(ctx, "parked webhooks not released yet", "gateway_payment_id", u.GatewayPaymentID, "err", err.Error())
		}
	}
	return status, nil
}

// lookupRef fills u's payment id from the learned map.
func lookupRef(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, u *events.GatewayUpdate) error {
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

// releaseParked emits the parked deliveries whose payment became known
// without releasing them (the release after learning failed): tick work.
func (s *service) releaseParked(ctx context.Context) error {
	rows, err := s.d.Pool.Query(ctx, `SELECT DISTINCT e.gateway, e.gateway_payment_id, r.payment_id::text
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
		if err := postgres.Tx(ctx, s.d.Pool, func(tx pgx.Tx) error {
			return s.unpark(ctx, tx, r.gateway, r.gpid, r.pid, s.now())
		}); err != nil {
			return err
		}
	}
	return nil
}

// unpark normalizes again and emits the webhooks parked for a gateway
// payment object whose billfn payment is now known.
func (s *service) unpark(ctx context.Context, tx pgx.Tx, gateway, gatewayPaymentID, paymentID string, now time.Time) error {
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
		pr, err := parse(p.body)
		if err != nil {
			continue // verified when it came; cannot happen
		}
		u, handled := normalize(gateway, pr)
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
	if err := outbox.Add(ctx, tx, name, msgs...); err != nil {
		return err
	}
	webhooksTotal.WithLabelValues(gateway, "unparked").Add(float64(len(ids)))
	_, err = tx.Exec(ctx, `UPDATE webhook_events SET status = 'processed', payment_id = $2, processed_at = $3
		WHERE id = ANY($1::uuid[])`, ids, paymentID, now)
	return err
}

// delivery is a stored webhook as the admin API shows it.
type delivery struct {
	ID               string          `json:"id"`
	Gateway          string          `json:"gateway"`
	GatewayEventID   string          `json:"gateway_event_id"`
	Type             string          `json:"type"`
	Status           string          `json:"status"`
	ObjectType       string          `json:"object_type"`
	GatewayObjectID  string          `json:"gateway_object_id"`
	GatewayPaymentID string          `json:"gateway_payment_id"`
	PaymentID        *string         `json:"payment_id"`
	OccurredAt       time.Time       `json:"occurred_at"`
	ReceivedAt       time.Time       `json:"received_at"`
	ProcessedAt      *time.Time      `json:"processed_at"`
	Replays          int             `json:"replays"`
	Body             json.RawMessage `json:"body,omitempty"`
}

const deliveryCols = `id, gateway, gateway_event_id, type, status, object_type, gateway_object_id, gateway_payment_id,
	payment_id, occurred_at, received_at, processed_at, replays`

func scanDelivery(row pgx.Row, withBody bool) (*delivery, error) {
	d := &delivery{}
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

var errNoDelivery = problem.New(problem.NotFound, "no such webhook delivery")

func getDelivery(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id string, lock bool) (*delivery, error) {
	sql := `SELECT ` + deliveryCols + `, body FROM webhook_events WHERE id = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	d, err := scanDelivery(q.QueryRow(ctx, sql, id), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoDelivery
	}
	return d, err
}

// deliveryFilter selects a page of deliveries, newest first.
type deliveryFilter struct {
	Gateway, Type, Status string
	After                 string // the last id of the previous page
	Limit                 int
}

func listDeliveries(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, f deliveryFilter) ([]*delivery, error) {
	var w postgres.Where
	if f.Gateway != "" {
		w.And("gateway = ?", f.Gateway)
	}
	if f.Type != "" {
		w.And("type = ?", f.Type)
	}
	if f.Status != "" {
		w.And("status = ?", f.Status)
	}
	if f.After != "" {
		w.And("id < ?::uuid", f.After)
	}
	rows, err := q.Query(ctx, `SELECT `+deliveryCols+` FROM webhook_events`+w.SQL()+` ORDER BY id DESC LIMIT `+w.Arg(f.Limit+1), w.Args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*delivery, error) { return scanDelivery(r, false) })
}
