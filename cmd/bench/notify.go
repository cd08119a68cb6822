package main

// The scenarios of issue 18 — telling people — run by the bench itself
// rather than by loadgen, because what they measure ends outside billfn:
//
//   - emails: invoices finalized by batches of 100, each one an email to
//     its customer with the invoice PDF attached, until every email is in
//     the stack's Mailpit. emails/s = emails / (first request → last email
//     in Mailpit); latency per email = the log's queued → sent (SMTP 250).
//   - deliveries: the merchant's 4 bulk webhook endpoints on a receiver run
//     here, which verifies every Standard Webhooks signature, each with a
//     backlog of test deliveries queued while it was disabled (untimed);
//     the timed phase enables them and pays invoices (POST
//     /invoices/{id}/pay), whose billfn.invoice.paid go to a 5th endpoint.
//     deliveries/s = verified deliveries / (enable → last delivery); the
//     latency is billfn.invoice.paid's, from the event's time (set when
//     generate-invoice wrote it) to its arrival at the endpoint, while the
//     backlog drains.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/mailpit"
)

// The bench stack's Mailpit, away from make run's 1025/8025.
const (
	mailpitSMTPAddr = "127.0.0.1:28025"
	mailpitUIAddr   = "127.0.0.1:28026"
)

// hookEndpoints is how many endpoints the merchant registers in the
// deliveries scenario (all on the bench's receiver).
const hookEndpoints = 4

func notifyRuns(gw, secretsDir string, quick bool) []*run {
	emails, backlog, invoices := 2000, 5000, 1000
	if quick {
		emails, backlog, invoices = 100, 250, 100
	}
	return []*run{
		{Name: "emails", Title: fmt.Sprintf("emails (%d invoices finalized by batches of 100, each an email with its PDF, to Mailpit)", emails),
			Target: "≥ 200 emails/s",
			Do: func(ctx context.Context, at phases) (*loadResult, error) {
				d, err := newDriver(gw, secretsDir)
				if err != nil {
					return nil, err
				}
				return d.emails(ctx, emails, at)
			}},
		{Name: "deliveries", Title: fmt.Sprintf("outgoing webhook deliveries (a backlog of %d × %d released to %d endpoints, %d invoices paid meanwhile to a 5th; latency: invoice.paid → endpoint)",
			hookEndpoints, backlog, hookEndpoints, invoices),
			Target: "≥ 2,000 deliveries/s, invoice.paid p99 < 1 s", Check: func(r *loadResult) bool { _, _, p99 := r.Main(); return r.OpsPerSec >= 2000 && p99 < 1000 },
			Do: func(ctx context.Context, at phases) (*loadResult, error) {
				d, err := newDriver(gw, secretsDir)
				if err != nil {
					return nil, err
				}
				return d.deliveries(ctx, backlog, invoices, at)
			}},
	}
}

// driver calls the stack through its gateway with the stack's own tokens.
type driver struct {
	gw     string // http://…/function/
	signer *auth.Signer
	http   *http.Client
	admin  string
	svc    string
}

func newDriver(gw, secretsDir string) (*driver, error) {
	// The stack's jwt-private-key, read through SECRETS_DIR for this load
	// only: the bench's later subprocesses (go test -bench) must not
	// inherit the stack's secrets.
	prev, had := os.LookupEnv(config.SecretsDirEnv)
	if err := os.Setenv(config.SecretsDirEnv, secretsDir); err != nil {
		return nil, err
	}
	var cfg auth.SignerConfig
	err := config.Load(&cfg)
	if had {
		_ = os.Setenv(config.SecretsDirEnv, prev)
	} else {
		_ = os.Unsetenv(config.SecretsDirEnv)
	}
	if err != nil {
		return nil, err
	}
	s, err := auth.SignerFor(cfg)
	if err != nil {
		return nil, err
	}
	d := &driver{gw: gw, signer: s, http: &http.Client{Timeout: time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	if d.admin, err = s.Sign(uuid.NewString(), auth.RoleAdmin, 2*time.Hour); err != nil {
		return nil, err
	}
	d.svc, err = s.Sign(uuid.NewString(), auth.RoleService, 2*time.Hour)
	return d, err
}

// call sends body as JSON to the function's path and decodes the answer
// into out; a status other than want is an error.
func (d *driver) call(ctx context.Context, method, path, token string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.gw+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if method == http.MethodPost {
		req.Header.Set("Idempotency-Key", uuid.NewString())
	}
	res, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		return fmt.Errorf("%s %s: %d %.300s", method, path, res.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

type billedAccount struct{ id, owner string }

// accounts opens n accounts in process-transaction, each of its own owner
// (an invoice names an account its user owns).
func (d *driver) accounts(ctx context.Context, n int) ([]billedAccount, error) {
	out := make([]billedAccount, n)
	for i := range out {
		owner := uuid.NewString()
		var a struct {
			ID string `json:"id"`
		}
		if err := d.call(ctx, "POST", "process-transaction/accounts", d.admin, map[string]any{"currency": "USD", "user_id": owner}, &a, 201); err != nil {
			return nil, err
		}
		out[i] = billedAccount{a.ID, owner}
	}
	return out, nil
}

// invoiceBatches creates n finalized invoices of three lines by batches of
// 100, four batches at a time; email(i) is the i-th customer's address
// ("" for none). It answers the invoices' ids.
func (d *driver) invoiceBatches(ctx context.Context, accts []billedAccount, n int, email func(i int) string) ([]string, error) {
	const size = 100
	var (
		mu   sync.Mutex
		ids  []string
		errs = make(chan error, 1)
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := int(next.Add(size)) - size
				if from >= n || ctx.Err() != nil {
					return
				}
				var items []map[string]any
				for i := from; i < min(from+size, n); i++ {
					a := accts[i%len(accts)]
					cust := map[string]any{"name": "Bench Customer " + strconv.Itoa(i)}
					if e := email(i); e != "" {
						cust["email"] = e
					}
					items = append(items, map[string]any{"account_id": a.id, "user_id": a.owner, "currency": "USD", "customer": cust,
						"auto_finalize": true, "net_terms_days": 30, "collection_method": "send_invoice", "line_items": []map[string]any{
							{"description": "Seats", "quantity": "3", "unit_amount": 1200},
							{"description": "Storage", "quantity": "1", "unit_amount": 450},
							{"description": "Support", "quantity": "1", "unit_amount": 2500}}})
				}
				var res struct {
					Data []struct {
						InvoiceID string `json:"invoice_id"`
					} `json:"data"`
				}
				if err := d.call(ctx, "POST", "generate-invoice/invoices/batch", d.svc, map[string]any{"invoices": items}, &res, 201); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				mu.Lock()
				for _, x := range res.Data {
					ids = append(ids, x.InvoiceID)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return ids, err
	default:
		return ids, nil
	}
}

// ---- emails ----

func (d *driver) emails(ctx context.Context, n int, at phases) (*loadResult, error) {
	accts, err := d.accounts(ctx, 8)
	if err != nil {
		return nil, err
	}
	tag := "bench-" + uuid.NewString()[:8]
	email := func(i int) string { return fmt.Sprintf("%s-%d@example.com", tag, i) }
	// Mailpit holds at most --max messages and prunes the oldest once a
	// minute, thousands in one transaction once earlier scenarios have
	// filled it: emptied here, before the window, it never prunes in it
	// (the likely cause of the run of 2026-12-06 00:02 waiting 55 s past its
	// last e-mail).
	if err := benchMailpit.DeleteAll(ctx); err != nil {
		return nil, fmt.Errorf("empty Mailpit: %w", err)
	}
	base, err := benchMailpit.Count(ctx, "")
	if err != nil {
		return nil, err
	}
	at.start(os.Getpid())
	start := time.Now()
	if _, err := d.invoiceBatches(ctx, accts, n, email); err != nil {
		at.end()
		return nil, err
	}
	got, last, err := waitMailpit(ctx, tag, base, n, 5*time.Minute)
	at.end()
	if err != nil {
		return nil, err
	}
	secs := last.Sub(start).Seconds()
	res := &loadResult{Scenario: "emails", Concurrency: 4, Operations: got, Seconds: secs, OpsPerSec: float64(got) / secs,
		Units: 1, Failed: int64(n - got)}
	lat, err := d.sentLatencies(ctx, tag, got)
	if err != nil {
		return nil, err
	}
	res.Endpoints = append(res.Endpoints, endpointFigures("email queued → sent (SMTP 250)", lat, secs))
	said(res)
	return res, nil
}

// waitMailpit waits until Mailpit holds want messages to the addresses
// tagged tag, or until within passed (then it answers how many arrived);
// last is when the mailbox last grew while they arrived.
//
// It polls Mailpit's message count (GET /api/v1/messages?limit=1: a
// COUNT(*)) every 20 ms, and runs the search by tag only once the mailbox
// has grown by want since before the load (base), then every 250 ms. The
// search API reads and decodes every matching message on each call
// (whatever its limit): polled every 20 ms over a run, it cost Mailpit
// more CPU than storing the emails, and the bench charged it to each email.
func waitMailpit(ctx context.Context, tag string, base, want int, within time.Duration) (got int, last time.Time, err error) {
	deadline := time.Now().Add(within)
	last = time.Now()
	total, searched := base, time.Time{}
	for {
		n, err := benchMailpit.Count(ctx, "")
		if err != nil {
			return got, last, err
		}
		if n > total {
			last = time.Now()
		}
		if n < total { // pruned (--max): the count no longer says anything
			base = -want
		}
		total = n
		if total-base >= want && time.Since(searched) >= 250*time.Millisecond || time.Now().After(deadline) {
			searched = time.Now()
			if got, err = benchMailpit.Count(ctx, "to:"+tag); err != nil {
				return got, last, err
			}
		}
		if got >= want || time.Now().After(deadline) || ctx.Err() != nil {
			return got, last, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// benchMailpit is the bench stack's Mailpit API.
var benchMailpit = mailpit.Client{Base: "http://" + mailpitUIAddr, HTTP: &http.Client{Timeout: 10 * time.Second}}

// sentLatencies reads the delivery log (newest first) until it has seen
// the n sent notifications to tag's addresses: each one's queued → sent.
func (d *driver) sentLatencies(ctx context.Context, tag string, n int) ([]time.Duration, error) {
	var out []time.Duration
	cursor := ""
	for len(out) < n {
		var page struct {
			Data []struct {
				Recipient string     `json:"recipient"`
				CreatedAt time.Time  `json:"created_at"`
				SentAt    *time.Time `json:"sent_at"`
			} `json:"data"`
			HasMore    bool   `json:"has_more"`
			NextCursor string `json:"next_cursor"`
		}
		if err := d.call(ctx, "GET", "generate-invoice/notifications?status=sent&limit=100&cursor="+cursor, d.admin, nil, &page, 200); err != nil {
			return nil, err
		}
		for _, x := range page.Data {
			if strings.HasPrefix(x.Recipient, tag) && x.SentAt != nil {
				out = append(out, x.SentAt.Sub(x.CreatedAt))
			}
		}
		if !page.HasMore {
			break
		}
		cursor = page.NextCursor
	}
	return out, nil
}

// ---- outgoing webhook deliveries ----

func (d *driver) deliveries(ctx context.Context, backlog, invoices int, at phases) (*loadResult, error) {
	accts, err := d.accounts(ctx, 8)
	if err != nil {
		return nil, err
	}
	rc, err := startHookReceiver()
	if err != nil {
		return nil, err
	}
	defer rc.close()
	var endpointIDs []string
	defer func() {
		for _, id := range endpointIDs {
			_ = d.call(context.WithoutCancel(ctx), "DELETE", "handle-webhook/endpoints/"+id, d.admin, nil, nil, 204)
		}
	}()
	register := func(path string, types ...string) (string, error) {
		var e struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		}
		if err := d.call(ctx, "POST", "handle-webhook/endpoints", d.admin, map[string]any{"url": rc.url + path,
			"events": types, "description": "make bench"}, &e, 201); err != nil {
			return "", err
		}
		endpointIDs = append(endpointIDs, e.ID)
		rc.secret(path, e.Secret)
		return e.ID, nil
	}
	// The merchant's integration endpoint: every invoice.paid, measured.
	if _, err := register("/merchant/paid", "billfn.invoice.paid"); err != nil {
		return nil, err
	}
	// The bulk endpoints, disabled while their backlog is queued.
	var bulk []string
	for k := range hookEndpoints {
		id, err := register("/merchant/"+strconv.Itoa(k), "billfn.invoice.voided")
		if err != nil {
			return nil, err
		}
		if err := d.call(ctx, "PATCH", "handle-webhook/endpoints/"+id, d.admin, map[string]any{"disabled": true}, nil, 200); err != nil {
			return nil, err
		}
		bulk = append(bulk, id)
	}
	if err := d.parallel(ctx, 8, backlog*len(bulk), func(i int) error {
		return d.call(ctx, "POST", "handle-webhook/endpoints/"+bulk[i%len(bulk)]+"/test", d.admin, nil, nil, 202)
	}); err != nil {
		return nil, err
	}
	ids, err := d.invoiceBatches(ctx, accts, invoices, func(int) string { return "" })
	if err != nil {
		return nil, err
	}
	at.start(os.Getpid())
	start := time.Now()
	for _, id := range bulk {
		if err := d.call(ctx, "PATCH", "handle-webhook/endpoints/"+id, d.admin, map[string]any{"disabled": false}, nil, 200); err != nil {
			at.end()
			return nil, err
		}
	}
	if err := d.parallel(ctx, 8, len(ids), func(i int) error {
		return d.call(ctx, "POST", "generate-invoice/invoices/"+ids[i]+"/pay", d.admin, map[string]any{"reference": "bench"}, nil, 200)
	}); err != nil {
		at.end()
		return nil, err
	}
	want := backlog*len(bulk) + invoices
	rc.wait(ctx, want, invoices, 3*time.Minute)
	at.end()
	st := rc.stats()
	secs := st.last.Sub(start).Seconds()
	res := &loadResult{Scenario: "deliveries", Concurrency: len(bulk) + 1, Operations: st.verified, Seconds: secs,
		OpsPerSec: float64(st.verified) / secs, Units: 1, Failed: int64(st.bad + max(want-st.verified, 0))}
	res.Endpoints = append(res.Endpoints, endpointFigures("billfn.invoice.paid → endpoint", st.paid, secs))
	said(res)
	if st.bad > 0 {
		return res, fmt.Errorf("%d deliveries failed the Standard Webhooks verification (%s)", st.bad, st.firstBad)
	}
	return res, nil
}

// parallel runs fn(0..n-1) from workers goroutines; the first error stops
// it.
func (d *driver) parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, 1)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil || len(errs) > 0 {
					return
				}
				if err := fn(i); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// hookReceiver is the merchant's side: an HTTP server that checks every
// request as the Standard Webhooks specification says, written from the
// spec (not with billfn's signer): HMAC-SHA256, keyed by the base64 after
// "whsec_", over "<webhook-id>.<webhook-timestamp>.<body>", one of the
// space-separated "v1,<base64>" matching, the timestamp within five
// minutes; each webhook-id counted once.
type hookReceiver struct {
	url  string
	srv  *http.Server
	mu   sync.Mutex
	keys map[string][]byte // path → HMAC key
	seen map[string]bool   // webhook-ids verified
	st   hookStats
}

type hookStats struct {
	verified, bad int
	firstBad      string
	paid          []time.Duration // billfn.invoice.paid: event time → arrival
	paidCount     int
	last          time.Time
}

func startHookReceiver() (*hookReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &hookReceiver{url: "http://" + ln.Addr().String(), keys: map[string][]byte{}, seen: map[string]bool{}}
	rc.srv = &http.Server{Handler: http.HandlerFunc(rc.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

func (rc *hookReceiver) close() { _ = rc.srv.Close() }

func (rc *hookReceiver) secret(path, secret string) {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	rc.mu.Lock()
	rc.keys[path] = key
	rc.mu.Unlock()
}

func (rc *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	rc.mu.Lock()
	key := rc.keys[r.URL.Path]
	rc.mu.Unlock()
	err := verifyWebhook(key, id, ts, r.Header.Get("webhook-signature"), body, now)
	var ev struct {
		Type string    `json:"type"`
		Time time.Time `json:"time"`
	}
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	switch {
	case err != nil:
		rc.st.bad++
		if rc.st.firstBad == "" {
			rc.st.firstBad = err.Error()
		}
		w.WriteHeader(http.StatusUnauthorized)
		return
	case !rc.seen[id]:
		rc.seen[id] = true
		rc.st.verified++
		rc.st.last = now
		if ev.Type == "billfn.invoice.paid" {
			rc.st.paid = append(rc.st.paid, now.Sub(ev.Time))
			rc.st.paidCount++
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func verifyWebhook(key []byte, id, ts, sigs string, body []byte, now time.Time) error {
	if len(key) == 0 {
		return errors.New("an unknown endpoint path")
	}
	if id == "" || ts == "" || sigs == "" {
		return errors.New("a webhook-* header is missing")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp is not a number")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("webhook-timestamp outside the tolerance")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, part := range strings.Split(sigs, " ") {
		if v, sig, ok := strings.Cut(part, ","); ok && v == "v1" {
			if got, err := base64.StdEncoding.DecodeString(sig); err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return errors.New("no v1 signature matches")
}

// wait returns once want deliveries and paid invoice.paid deliveries have
// been verified, or after within.
func (rc *hookReceiver) wait(ctx context.Context, want, paid int, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		rc.mu.Lock()
		done := rc.st.verified >= want && rc.st.paidCount >= paid
		rc.mu.Unlock()
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (rc *hookReceiver) stats() hookStats {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	s := rc.st
	s.paid = append([]time.Duration(nil), rc.st.paid...)
	return s
}

// endpointFigures is a line of the report's latency columns.
func endpointFigures(name string, lat []time.Duration, secs float64) (e endpointResult) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(int(p*float64(len(lat))), len(lat)-1)].Microseconds()) / 1000
	}
	e.Endpoint, e.Requests = name, len(lat)
	if secs > 0 {
		e.PerSecond = float64(len(lat)) / secs
	}
	e.P50ms, e.P95ms, e.P99ms = at(0.50), at(0.95), at(0.99)
	return e
}

// said prints a scenario's figures as soon as it ends (the report comes
// after every scenario and pgbench).
func said(r *loadResult) {
	p50, p95, p99 := r.Main()
	fmt.Fprintf(os.Stderr, "   %s: %d in %.1f s = %.0f/s, %d failed; %s p50 %.1f ms, p95 %.1f ms, p99 %.1f ms\n",
		r.Scenario, r.Operations, r.Seconds, r.OpsPerSec, r.Failed, r.Endpoints[0].Endpoint, p50, p95, p99)
}
