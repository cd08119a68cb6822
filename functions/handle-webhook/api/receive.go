package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/sandbox"
)

// Gateways.
const (
	gwStripe  = "stripe"
	gwSandbox = "sandbox"
)

// webhooksTotal counts deliveries by gateway and outcome: processed,
// parked, ignored, duplicate, unparked, and the rejections (the only trace
// a rejected delivery leaves).
var webhooksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "billfn_webhooks_total",
	Help: "Gateway webhook deliveries by gateway and outcome (processed, parked, ignored, duplicate, unparked, rejected_<code>, rate_limited).",
}, []string{"gateway", "outcome"})

// bodies recycles request body buffers: the hot path reads every body once.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (s *service) receiveStripe(w http.ResponseWriter, r *http.Request) {
	s.receive(w, r, gwStripe)
}

func (s *service) receiveSandbox(w http.ResponseWriter, r *http.Request) {
	s.receive(w, r, gwSandbox)
}

// receipts are the answers to a gateway: {"received":true,"status":…}.
var receipts = map[string][]byte{}

func init() {
	for _, st := range []string{stProcessed, stParked, stIgnored, stDuplicate} {
		receipts[st] = []byte(`{"received":true,"status":"` + st + `"}`)
	}
}

// receive reads the raw body once (size-limited by the runtime), verifies
// it before parsing anything, stores it with its normalized event in one
// transaction, and only then answers 200.
func (s *service) receive(w http.ResponseWriter, r *http.Request, gateway string) {
	if (gateway == gwStripe && len(s.stripe) == 0) || (gateway == gwSandbox && len(s.sandbox) == 0) {
		problem.Write(w, r, &problem.Error{Code: codeNotConfigured, RetryAfter: time.Minute,
			Detail: "no signing secret is configured for " + gateway + " webhooks (STRIPE_WEBHOOK_SECRET / SANDBOX_WEBHOOK_SECRET)"})
		return
	}
	buf := bodies.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			bodies.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(r.Body); err != nil {
		webhooksTotal.WithLabelValues(gateway, "rejected_read").Inc()
		problem.Write(w, r, err)
		return
	}
	body := buf.Bytes()
	now := s.now()
	tol := s.cfg.Tolerance.D()
	var err error
	if gateway == gwStripe {
		err = verifyStripe(s.stripe, r.Header.Get(StripeSignatureHeader), body, now, tol)
	} else {
		err = verifySandbox(s.sandbox, r.Header.Get(sandbox.SignatureHeader), body, now, tol)
	}
	if err != nil {
		s.reject(w, r, gateway, err)
		return
	}
	p, err := parse(body)
	if err != nil {
		s.reject(w, r, gateway, err)
		return
	}
	u, handled := normalize(gateway, p)
	checkPaymentID(&u)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	outcome, err := s.record(ctx, &u, handled, body, now)
	if err != nil {
		// Not stored: the gateway retries (never lost).
		problem.Write(w, r, &problem.Error{Code: problem.Unavailable, Detail: "the webhook could not be stored; retry", RetryAfter: time.Second, Err: err})
		return
	}
	webhooksTotal.WithLabelValues(gateway, outcome).Inc()
	if outcome == stProcessed {
		s.d.Publisher.Kick()
	}
	httpx.WriteRaw(w, http.StatusOK, receipts[outcome])
}

// checkPaymentID drops a metadata payment id that is not a UUID (it can
// name no billfn payment) and writes one in canonical form: uuid.Parse
// also reads braces and urn:uuid:, which the uuid column refuses (the
// delivery could never be stored, a 503 the gateway retries for days).
func checkPaymentID(u *events.GatewayUpdate) {
	if u.PaymentID != nil {
		id, err := uuid.Parse(*u.PaymentID)
		if err != nil {
			u.PaymentID = nil
			return
		}
		s := id.String()
		u.PaymentID = &s
	}
}

func (s *service) reject(w http.ResponseWriter, r *http.Request, gateway string, err error) {
	code := "error"
	var pe *problem.Error
	if errors.As(err, &pe) {
		code = string(pe.Code)
	}
	webhooksTotal.WithLabelValues(gateway, "rejected_"+code).Inc()
	if pe != nil && pe.Status() == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Signature realm="billfn-webhooks"`)
	}
	problem.Write(w, r, err)
}

// limiter is a per-source-address rate limit in Redis: a counter per
// address and second. Redis down lets everything through: a gateway's
// webhook must never be lost to our cache being away.
type limiter struct {
	rdb    *goredis.Client
	prefix string
	limit  int
	now    func() time.Time
	warned atomic.Int64
}

func (l *limiter) allow(ctx context.Context, addr string) bool {
	if l.limit <= 0 {
		return true
	}
	sec := l.now().Unix()
	key := make([]byte, 0, len(l.prefix)+len(addr)+24)
	key = append(append(append(key, l.prefix...), addr...), ':')
	key = strconv.AppendInt(key, sec, 10)
	n, err := countScript.Run(ctx, l.rdb, []string{string(key)}).Int64()
	if err != nil {
		if last := l.warned.Load(); sec-last >= 60 && l.warned.CompareAndSwap(last, sec) {
			slog.WarnContext(ctx, "rate limit skipped: Redis unavailable", "err", err.Error())
		}
		return true
	}
	return n <= int64(l.limit)
}

// countScript counts a delivery in its address's one-second window: one
// command (EVALSHA), the window expiring on its own.
var countScript = goredis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 2000) end
return n`)

// clientAddr is the delivery's source address: httpx.ClientIP, which
// believes X-Forwarded-For only as far as the trusted proxies appended it
// (the OpenFaaS gateway, the local gateway on loopback), never the
// leftmost entry a sender can write; the peer when trustForwarded is off.
func clientAddr(r *http.Request, trusted []netip.Prefix, trustForwarded bool) string {
	if !trustForwarded {
		trusted = nil
	}
	a := httpx.ClientIP(r, trusted)
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}

// limited applies the rate limit before anything else is read.
func (s *service) limited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.limiter.allow(r.Context(), clientAddr(r, s.d.Proxies, s.cfg.TrustForwardedFor)) {
			gateway := strings.TrimPrefix(r.URL.Path, "/")
			webhooksTotal.WithLabelValues(gateway, "rate_limited").Inc()
			problem.Write(w, r, &problem.Error{Code: problem.RateLimited, RetryAfter: time.Second,
				Detail: "too many webhook deliveries from this address; retry after a second"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

var statuses = map[string]bool{stProcessed: true, stParked: true, stIgnored: true}

// pageCursor is the keyset position of the deliveries list.
type pageCursor struct {
	ID string `json:"id"`
}

func (s *service) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := deliveryFilter{Gateway: q.Get("gateway"), Type: q.Get("type"), Status: q.Get("status")}
	var bad []problem.FieldError
	if f.Gateway != "" && f.Gateway != gwStripe && f.Gateway != gwSandbox {
		bad = append(bad, problem.Param("gateway", "must be stripe or sandbox"))
	}
	if f.Status != "" && !statuses[f.Status] {
		bad = append(bad, problem.Param("status", "must be processed, parked or ignored"))
	}
	if len(f.Type) > 100 {
		bad = append(bad, problem.Param("type", "must be at most 100 characters"))
	}
	limit, err := httpx.Limit(r, 20, 100)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if len(bad) > 0 {
		problem.Write(w, r, problem.Invalid(bad...))
		return
	}
	var cur pageCursor
	ok, err := httpx.DecodeCursor(r, &cur)
	if err == nil && ok {
		if _, perr := uuid.Parse(cur.ID); perr != nil {
			err = problem.Invalid(problem.Param("cursor", "is not a cursor this endpoint returned"))
		}
		f.After = cur.ID
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	f.Limit = limit
	ds, err := listDeliveries(r.Context(), s.d.Pool, f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(ds, limit, func(d *delivery) any { return pageCursor{ID: d.ID} }))
}

func (s *service) getEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		problem.Write(w, r, errNoDelivery)
		return
	}
	d, err := getDelivery(r.Context(), s.d.Pool, id, false)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, d)
}

// replay runs the normalization of a stored delivery again and, when its
// payment is known, emits the result as a new event (capture-payment
// applies it monotonically, so a replay is always harmless).
func (s *service) replay(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		problem.Write(w, r, errNoDelivery)
		return
	}
	var d *delivery
	emitted := false
	err := postgres.Tx(r.Context(), s.d.Pool, func(tx pgx.Tx) error {
		var err error
		emitted = false
		if d, err = getDelivery(r.Context(), tx, id, true); err != nil {
			return err
		}
		p, err := parse(d.Body)
		if err != nil {
			return err
		}
		u, handled := normalize(d.Gateway, p)
		checkPaymentID(&u)
		if handled && u.PaymentID == nil && u.GatewayPaymentID != "" {
			if err := lookupRef(r.Context(), tx, &u); err != nil {
				return err
			}
		}
		now := s.now()
		d.Replays++
		switch {
		case !handled:
			d.Status = stIgnored
		case u.PaymentID == nil:
			d.Status = stParked
		default:
			evID, _ := uuid.NewV7()
			m, err := updateMessage(r.Context(), &u, evID.String())
			if err != nil {
				return err
			}
			if err := outbox.Add(r.Context(), tx, name, m); err != nil {
				return err
			}
			d.Status, d.PaymentID, d.ProcessedAt, emitted = stProcessed, u.PaymentID, &now, true
		}
		if _, err := tx.Exec(r.Context(), `UPDATE webhook_events SET status = $2, payment_id = $3, processed_at = $4,
			replays = $5 WHERE id = $1`, d.ID, d.Status, d.PaymentID, d.ProcessedAt, d.Replays); err != nil {
			return err
		}
		return idempotency.Complete(r.Context(), tx, idempotency.Response{Status: http.StatusOK, Body: d})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if emitted {
		s.d.Publisher.Kick()
	}
	httpx.WriteJSON(w, http.StatusOK, d)
}

// learnTypes are capture-payment's events that name a payment's gateway
// object: each teaches the payment map and releases parked webhooks.
var learnTypes = []string{
	"billfn.payment.created", "billfn.payment.updated", "billfn.payment.authorized", "billfn.payment.captured",
	"billfn.payment.failed", "billfn.payment.canceled", "billfn.payment.disputed",
	"billfn.refund.succeeded", "billfn.refund.failed",
}

// paymentRef is what a capture-payment event teaches: which billfn payment
// a gateway object is. ok is false when the event names no gateway object
// (yet) or one of a gateway this function does not receive webhooks from.
type paymentRef struct{ gateway, gatewayPaymentID, paymentID, from string }

func refOf(ev events.Event) (ref paymentRef, ok bool, err error) {
	var p struct {
		PaymentID        string  `json:"payment_id"`
		Gateway          *string `json:"gateway"`
		GatewayPaymentID *string `json:"gateway_payment_id"`
	}
	if err := events.Decode(ev, &p); err != nil {
		return ref, false, err
	}
	if p.Gateway == nil || p.GatewayPaymentID == nil || *p.GatewayPaymentID == "" {
		return ref, false, nil // not at a gateway yet
	}
	if _, err := uuid.Parse(p.PaymentID); err != nil {
		return ref, false, events.Permanent(errors.New("event " + ev.ID() + ": payment_id is not a payment id"))
	}
	if *p.Gateway != gwStripe && *p.Gateway != gwSandbox {
		return ref, false, nil
	}
	return paymentRef{*p.Gateway, *p.GatewayPaymentID, p.PaymentID, ev.Type()}, true, nil
}

// onPaymentEvent learns payment id ↔ gateway object from capture-payment.
func (s *service) onPaymentEvent(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	return s.onPaymentEvents(ctx, tx, []events.Event{ev})
}

// onPaymentEvents learns from a delivery of capture-payment's events, in
// its one transaction: one statement learns every reference, one looks for
// webhooks parked on the new ones (rare), and only those are unparked one
// by one. A poison event fails a batch permanently; the receiver then
// applies the events one by one and parks that one alone.
func (s *service) onPaymentEvents(ctx context.Context, tx pgx.Tx, evs []events.Event) error {
	var refs []paymentRef
	for _, ev := range evs {
		if !slices.Contains(learnTypes, ev.Type()) {
			continue
		}
		ref, ok, err := refOf(ev)
		if err != nil {
			return err
		}
		if ok {
			refs = append(refs, ref)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	// One order for every batch: concurrent batches that share a key wait
	// for each other instead of deadlocking.
	slices.SortStableFunc(refs, func(a, b paymentRef) int {
		return cmp.Or(strings.Compare(a.gateway, b.gateway), strings.Compare(a.gatewayPaymentID, b.gatewayPaymentID))
	})
	cols := [4][]string{}
	for _, r := range refs {
		cols[0], cols[1] = append(cols[0], r.gateway), append(cols[1], r.gatewayPaymentID)
		cols[2], cols[3] = append(cols[2], r.paymentID), append(cols[3], r.from)
	}
	rows, err := tx.Query(ctx, `INSERT INTO webhook_payment_refs (gateway, gateway_payment_id, payment_id, learned_from, created_at)
		SELECT g, gp, p::uuid, f, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(g, gp, p, f)
		ON CONFLICT DO NOTHING RETURNING gateway, gateway_payment_id, payment_id::text`,
		cols[0], cols[1], cols[2], cols[3], s.now())
	if err != nil {
		return err
	}
	learned, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (paymentRef, error) {
		var ref paymentRef
		return ref, r.Scan(&ref.gateway, &ref.gatewayPaymentID, &ref.paymentID)
	})
	if err != nil || len(learned) == 0 {
		return err
	}
	gws, gpids := make([]string, len(learned)), make([]string, len(learned))
	for i, r := range learned {
		gws[i], gpids[i] = r.gateway, r.gatewayPaymentID
	}
	rows, err = tx.Query(ctx, `SELECT DISTINCT gateway, gateway_payment_id FROM webhook_events
		WHERE status = 'parked' AND (gateway, gateway_payment_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, gws, gpids)
	if err != nil {
		return err
	}
	waiting := map[[2]string]bool{} // references with parked webhooks
	var key [2]string
	if _, err := pgx.ForEachRow(rows, []any{&key[0], &key[1]}, func() error { waiting[key] = true; return nil }); err != nil {
		return err
	}
	for _, r := range learned {
		if waiting[[2]string{r.gateway, r.gatewayPaymentID}] {
			if err := s.unpark(ctx, tx, r.gateway, r.gatewayPaymentID, r.paymentID, s.now()); err != nil {
				return err
			}
		}
	}
	return nil
}
