package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/billfn/billfn/shared/egress"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/requestid"
)

// asyncJob is one queued invocation.
type asyncJob struct {
	name     string
	method   string
	path     string
	rawPath  string
	query    string
	header   http.Header
	body     []byte
	callback *url.URL
	callID   string
	accepted time.Time
	id       int64 // in the durable queue; 0 in memory
}

// Queue keeps accepted /async-function calls until they are delivered, so
// they survive a crash of the gateway (cmd/stack keeps them in Postgres).
// Without one (Config.Queue nil) the queue is in memory.
type Queue interface {
	// Put stores a call before the gateway answers 202.
	Put(ctx context.Context, c QueuedCall) error
	// Claim leases up to n calls that are due (never leased, or whose
	// lease ran out) for lease, oldest first.
	Claim(ctx context.Context, n int, lease time.Duration) ([]QueuedCall, error)
	// Done forgets a call that was delivered (or failed for good).
	Done(ctx context.Context, id int64) error
}

// QueuedCall is one accepted call as a Queue keeps it.
type QueuedCall struct {
	ID       int64 // the queue's
	CallID   string
	Function string
	Method   string
	Path     string
	RawPath  string
	Query    string
	Header   http.Header
	Body     []byte
	Callback string // "" when none
	Accepted time.Time
}

// asyncLease is how long a claimed call stays with the gateway that
// claimed it: longer than every attempt, pause and callback together.
const asyncLease = 10 * time.Minute

// Attempts of a queued invocation that found the function unavailable
// (not running, 429, 502, 503, 504), with a doubling pause from asyncBackoff.
const (
	asyncAttempts = 5
	asyncBackoff  = 500 * time.Millisecond
)

func (g *Gateway) enqueue(w http.ResponseWriter, r *http.Request) {
	callID := requestid.FirstUsable(r.Header.Get("X-Call-Id"))
	start := time.Now()
	w.Header().Set("X-Call-Id", callID)
	w.Header().Set("X-Start-Time", strconv.FormatInt(start.UnixNano(), 10))
	b, name, path, rawPath := g.route(r, "/async-function/")
	if b == nil {
		g.fail(w, r, callID, problem.New(problem.NotFound, "function %q is not deployed", name))
		return
	}
	var callback *url.URL
	if v := r.Header.Get("X-Callback-Url"); v != "" {
		u, err := url.Parse(v)
		if err == nil {
			err = g.checkCallback(r.Context(), u)
		} else {
			err = errors.New("not an absolute http(s) URL")
		}
		if err != nil {
			g.fail(w, r, callID, &problem.Error{Code: problem.BadRequest,
				Detail: "X-Callback-Url must be an absolute http(s) URL to a public host, or to one in CALLBACK_ALLOWED_HOSTS",
				Errors: []problem.FieldError{problem.Header("X-Callback-Url", err.Error())}})
			return
		}
		callback = u
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.AsyncMaxBody))
	if err != nil {
		g.fail(w, r, callID, err)
		return
	}
	h := make(http.Header, len(r.Header))
	copyHeader(h, r.Header)
	h.Del("X-Callback-Url")
	h.Set("X-Call-Id", callID)
	if r.Host != "" && h.Get("X-Forwarded-Host") == "" {
		h.Set("X-Forwarded-Host", r.Host)
	}
	h.Set("X-Forwarded-For", clientIP(r))
	job := &asyncJob{name: name, method: r.Method, path: path, rawPath: rawPath, query: r.URL.RawQuery,
		header: h, body: body, callback: callback, callID: callID, accepted: start}
	select {
	case <-g.stop:
		g.fail(w, r, callID, &problem.Error{Code: problem.Unavailable, Detail: "the gateway is stopping", RetryAfter: time.Second})
		return
	default:
	}
	if q := g.cfg.Queue; q != nil {
		c := QueuedCall{CallID: callID, Function: name, Method: r.Method, Path: path, RawPath: rawPath,
			Query: r.URL.RawQuery, Header: h, Body: body, Accepted: start}
		if callback != nil {
			c.Callback = callback.String()
		}
		if err := q.Put(r.Context(), c); err != nil {
			g.metrics.async.WithLabelValues(name, "rejected").Inc()
			g.log.Warn("async queue", "err", err.Error())
			g.fail(w, r, callID, &problem.Error{Code: problem.Unavailable, Detail: "the async queue cannot take the call now; retry", RetryAfter: time.Second, Err: err})
			return
		}
		g.metrics.async.WithLabelValues(name, "accepted").Inc()
		w.WriteHeader(http.StatusAccepted)
		select {
		case g.wake <- struct{}{}:
		default:
		}
		return
	}
	select {
	case g.queue <- job:
		g.metrics.async.WithLabelValues(name, "accepted").Inc()
		w.WriteHeader(http.StatusAccepted)
	default:
		g.metrics.async.WithLabelValues(name, "rejected").Inc()
		g.fail(w, r, callID, &problem.Error{Code: problem.Unavailable, Detail: "the async queue is full; retry", RetryAfter: time.Second})
	}
}

func (g *Gateway) asyncWorker() {
	defer g.workers.Done()
	if g.cfg.Queue != nil {
		g.durableWorker()
		return
	}
	for {
		select {
		case <-g.stop:
			return
		case job := <-g.queue:
			g.runJob(job)
		}
	}
}

// durableWorker delivers the calls of the durable queue: those accepted
// since, and those an earlier gateway accepted and did not deliver.
func (g *Gateway) durableWorker() {
	select {
	case <-g.started:
	case <-g.stop:
		return
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		calls, err := g.cfg.Queue.Claim(ctx, 1, asyncLease)
		cancel()
		if err != nil {
			g.log.Warn("async queue: claim", "err", err.Error())
		}
		for _, c := range calls {
			job := &asyncJob{id: c.ID, name: c.Function, method: c.Method, path: c.Path, rawPath: c.RawPath, query: c.Query,
				header: c.Header, body: c.Body, callID: c.CallID, accepted: c.Accepted}
			if c.Callback != "" {
				job.callback, _ = url.Parse(c.Callback)
			}
			if !g.runJob(job) {
				return // stopping: the call stays queued for the next gateway
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := g.cfg.Queue.Done(ctx, c.ID); err != nil {
				g.log.Warn("async queue: done", "call_id", c.CallID, "err", err.Error())
			}
			cancel()
		}
		if len(calls) > 0 {
			continue
		}
		select {
		case <-g.stop:
			return
		case <-g.wake:
		case <-time.After(time.Second):
		}
	}
}

// runJob invokes the function for a queued request and posts the result to
// the callback URL. Like the OpenFaaS queue-worker it does not retry a
// function's own error; unlike the CE one it retries while the function is
// unavailable, since a function being restarted is routine locally — a
// call that failed in flight only when it may be repeated (callOnce).
// It reports false when the gateway stopped before the call was done.
func (g *Gateway) runJob(job *asyncJob) bool {
	var (
		status int
		header http.Header
		body   []byte
	)
	for attempt := 0; attempt < asyncAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-g.stop:
				return false
			case <-time.After(asyncBackoff << (attempt - 1)):
			}
		}
		b := g.backend(job.name)
		if b == nil {
			status, header, body = http.StatusNotFound, nil, nil
			break
		}
		var again bool
		status, header, body, again = g.callOnce(b, job)
		if !again || status != http.StatusTooManyRequests && status != http.StatusBadGateway &&
			status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout {
			break
		}
	}
	result := "delivered"
	if status >= 400 {
		result = "failed"
	}
	g.metrics.async.WithLabelValues(job.name, result).Inc()
	took := time.Since(job.accepted)
	g.log.Info("async invocation", "function", job.name, "call_id", job.callID, "status", status, "seconds", took.Seconds())
	if job.callback == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, job.callback.String(), bytes.NewReader(body))
	if err != nil {
		return true
	}
	copyHeader(req.Header, header)
	req.Header.Set("X-Duration-Seconds", strconv.FormatFloat(took.Seconds(), 'f', 6, 64))
	req.Header.Set("X-Function-Status", strconv.Itoa(status))
	req.Header.Set("X-Function-Name", job.name)
	req.Header.Set("X-Call-Id", job.callID)
	res, err := g.callbackClient.Do(req)
	if err != nil {
		g.log.Warn("async callback failed", "function", job.name, "call_id", job.callID, "callback", egress.DisplayURL(job.callback.String()), "err", egress.ErrorText(err))
		return true
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return true
}

// callOnce performs one invocation and reads the whole response. A
// function that cannot be reached counts as 503. again reports whether
// the call may be made once more: always when the function answered (its
// 5xx or 429 is an answer whose work was rolled back) or was never
// reached; when it failed with the call in flight (it died, or ran out of
// time and may still commit) only when the call is replayable, as a
// synchronous call goes to another replica only then.
func (g *Gateway) callOnce(b *backend, job *asyncJob) (status int, header http.Header, body []byte, again bool) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.UpstreamTimeout)
	defer cancel()
	r := g.replicaFor(ctx, b)
	if r == nil {
		g.metrics.observe(job.name, http.StatusServiceUnavailable, 0)
		return http.StatusServiceUnavailable, nil, nil, true
	}
	b.rs.begin(r)
	defer r.inflight.Add(-1)
	u := &url.URL{Scheme: "http", Host: r.up.addr, Path: job.path, RawPath: job.rawPath, RawQuery: job.query}
	req, err := http.NewRequestWithContext(ctx, job.method, u.String(), bytes.NewReader(job.body))
	if err != nil {
		return http.StatusBadRequest, nil, nil, false
	}
	for k, v := range job.header {
		req.Header[k] = v
	}
	req.Header.Set("X-Start-Time", strconv.FormatInt(time.Now().UnixNano(), 10))
	b.invocations.Add(1)
	start := time.Now()
	res, err := g.transport.RoundTrip(req)
	if err != nil {
		status, again := http.StatusServiceUnavailable, true
		switch {
		case ctx.Err() != nil:
			status, again = http.StatusGatewayTimeout, replayable(req)
		case !isDialError(err):
			status, again = http.StatusBadGateway, replayable(req)
		}
		g.metrics.observe(job.name, status, time.Since(start))
		return status, nil, nil, again
	}
	defer res.Body.Close()
	body, err = io.ReadAll(io.LimitReader(res.Body, 10<<20))
	g.metrics.observe(job.name, res.StatusCode, time.Since(start))
	if err != nil {
		return http.StatusBadGateway, res.Header, body, false // answered: its effect is done
	}
	return res.StatusCode, res.Header, body, true
}
