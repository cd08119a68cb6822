package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/store"
	"github.com/billfn/billfn/shared/egress"
	"github.com/billfn/billfn/shared/events"
)

// The sender: posts each due delivery to its endpoint, signed as Standard
// Webhooks says, one delivery in flight per endpoint (store.Claim), and
// records the outcome (outgoing.Record: the next retry, or the endpoint
// disabled when the schedule is spent).

const (
	// maxResponse is how much of an endpoint's answer is read; the rest is
	// dropped (the status code decides).
	maxResponse = 64 << 10
	// keptResponse is how much of it the delivery log keeps.
	keptResponse = 1 << 10
	// claimBatch is how many endpoints one round sends to at once.
	claimBatch = 32
	// perEndpoint is how many deliveries of an endpoint one round sends
	// (in order, one after the other, recorded in one transaction).
	perEndpoint = 50
)

var (
	outgoingTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "billfn_webhook_deliveries_total",
		Help: "Attempts to deliver events to merchants' webhook endpoints, by outcome (succeeded, retrying, failed).",
	}, []string{"outcome"})
	deliveriesPruned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "billfn_webhook_deliveries_pruned_total",
		Help: "Finished outgoing webhook deliveries deleted from the delivery log after WEBHOOK_DELIVERY_RETENTION.",
	})
	endpointsDisabled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "billfn_webhook_endpoints_disabled_total",
		Help: "Webhook endpoints disabled after their retry schedule was spent.",
	})
)

// kick wakes the sender loop (when it runs).
func (a *API) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// SendDue sends every delivery due at the clock's now until none is due
// and none is in flight; it answers how many attempts it made. Up to
// claimBatch endpoints are sent to at once, each by its own goroutine;
// as soon as one is done (its next deliveries may be due) or deliveries
// are queued (kick), it claims again: a slow endpoint holds no other
// (before, a round waited for its slowest endpoint, up to perEndpoint
// answers of WEBHOOK_SEND_TIMEOUT, before anything else was claimed).
func (a *API) SendDue(ctx context.Context) (int, error) {
	lease := time.Duration(a.cfg.SendTimeout)*perEndpoint + time.Minute
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex // total and errs, written by the sends
		total    int
		errs     []error
		inFlight int
	)
	finished := make(chan struct{}, claimBatch)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(errs) > 0
	}
	for ctx.Err() == nil && !failed() {
		if free := claimBatch - inFlight; free > 0 {
			now := a.now()
			claims, err := a.store.Claim(ctx, now, now.Add(lease), free, perEndpoint)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				break
			}
			for _, c := range claims {
				inFlight++
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := a.send(ctx, c)
					mu.Lock()
					total += n
					if err != nil {
						errs = append(errs, err)
					}
					mu.Unlock()
					finished <- struct{}{}
				}()
			}
			if inFlight == 0 {
				break // nothing due, nothing in flight
			}
		}
		select {
		case <-finished:
			inFlight--
		case <-a.wake:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return total, err
	}
	return total, ctx.Err()
}

// send attempts c's deliveries in order, stopping at the first that
// fails (it holds the rest), and records them in one transaction.
func (a *API) send(ctx context.Context, c store.Claim) (int, error) {
	var (
		done     []*outgoing.Delivery
		disabled *events.WebhookEndpointDisabled
	)
	for _, d := range c.Deliveries {
		if ctx.Err() != nil {
			break
		}
		o := a.post(ctx, c.Endpoint, d)
		disable := outgoing.Record(d, o, a.now())
		done = append(done, d)
		if d.Status == outgoing.Succeeded {
			outgoingTotal.WithLabelValues("succeeded").Inc()
			continue
		}
		if disable != nil {
			disabled = outgoing.Notice(c.Endpoint, d, *disable, a.now())
			outgoingTotal.WithLabelValues("failed").Inc()
		} else {
			outgoingTotal.WithLabelValues("retrying").Inc()
			slog.InfoContext(ctx, "webhook delivery failed; will retry", "endpoint_id", d.EndpointID, "delivery_id", d.ID,
				"attempts", d.Attempts, "next_attempt_at", d.NextAttemptAt, "outcome", o.Describe())
		}
		break
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// Finish says whether it disabled the endpoint: not when a retry by
	// hand was asked during the last attempt, nor when an admin did first.
	newly, err := a.store.Finish(rctx, c.Endpoint.ID, done, disabled)
	if err != nil {
		return len(done), err
	}
	if newly {
		endpointsDisabled.Inc()
		slog.WarnContext(ctx, "webhook endpoint disabled", "endpoint_id", c.Endpoint.ID, "url", egress.DisplayURL(c.Endpoint.URL), "reason", disabled.Reason)
		a.d.Publisher.Kick() // the notice leaves now, as every event does, not at the next sweep
	}
	return len(done), nil
}

// post sends d to e: the CloudEvent JSON with webhook-id (the delivery's
// id, the same on every attempt), webhook-timestamp and webhook-signature
// (one v1 per active secret).
func (a *API) post(ctx context.Context, e *outgoing.Endpoint, d *outgoing.Delivery) outgoing.Outcome {
	ts := a.now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return outgoing.Outcome{Err: "request: " + egress.ErrorText(err)}
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("User-Agent", "billfn-webhooks/1")
	req.Header.Set("webhook-id", d.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", outgoing.Sign(e.Secrets(ts), d.ID, ts, d.Payload))
	start := time.Now()
	res, err := a.client.Do(req)
	if err != nil {
		return outgoing.Outcome{Latency: time.Since(start), Err: egress.ErrorText(err)}
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	if len(body) > keptResponse {
		body = body[:keptResponse]
	}
	body = bytes.ReplaceAll(body, []byte{0}, nil) // text in Postgres holds no NUL
	for len(body) > 0 && !utf8.Valid(body) {
		body = body[:len(body)-1]
	}
	return outgoing.Outcome{Status: res.StatusCode, Body: string(body), Latency: time.Since(start)}
}

// RunSender sends deliveries until ctx ends: when events brought new ones
// (kick), when the earliest retry is due, and at least every minute. Its
// first pass, which sends what an earlier process left due, waits for
// WEBHOOK_START_DELAY or a kick: at start-up the function's one
// Postgres connection is the readiness probe's, and two passes' queries
// beside it would each fork a PostgreSQL backend more before ready.
func (a *API) RunSender(ctx context.Context) {
	if a.startDelay > 0 {
		t := time.NewTimer(a.startDelay)
		select {
		case <-ctx.Done():
		case <-a.wake:
		case <-t.C:
		}
		t.Stop()
	}
	for ctx.Err() == nil {
		if _, err := a.SendDue(ctx); err != nil && ctx.Err() == nil {
			slog.WarnContext(ctx, "webhook sender", "err", err.Error())
		}
		wait := time.Minute
		if next, ok, err := a.store.NextDue(ctx); err == nil && ok {
			wait = min(wait, max(next.Sub(a.now()), 100*time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-a.wake:
		case <-t.C:
		}
		t.Stop()
	}
}
