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
}

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
	for {
		select {
		case <-g.stop:
			return
		case job := <-g.queue:
			g.runJob(job)
		}
	}
}

// runJob invokes the function for a queued request and posts the result to
// the callback URL. Like the OpenFaaS queue-worker it does not retry a
// function's own error; unlike the CE one it retries while the function is
// unavailable, since a function being restarted is routine locally.
func (g *Gateway) runJob(job *asyncJob) {
	var (
		status int
		header http.Header
		body   []byte
	)
	for attempt := 0; attempt < asyncAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-g.stop:
				return
			case <-time.After(asyncBackoff << (attempt - 1)):
			}
		}
		b := g.backend(job.name)
		if b == nil {
			status, header, body = http.StatusNotFound, nil, nil
			break
		}
		status, header, body = g.callOnce(b, job)
		if status != http.StatusTooManyRequests && status != http.StatusBadGateway &&
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
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), callbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, job.callback.String(), bytes.NewReader(body))
	if err != nil {
		return
	}
	copyHeader(req.Header, header)
	req.Header.Set("X-Duration-Seconds", strconv.FormatFloat(took.Seconds(), 'f', 6, 64))
	req.Header.Set("X-Function-Status", strconv.Itoa(status))
	req.Header.Set("X-Function-Name", job.name)
	req.Header.Set("X-Call-Id", job.callID)
	res, err := g.callbackClient.Do(req)
	if err != nil {
		g.log.Warn("async callback failed", "function", job.name, "call_id", job.callID, "callback", job.callback.Redacted(), "err", err.Error())
		return
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

// callOnce performs one invocation and reads the whole response. A
// function that cannot be reached counts as 503.
func (g *Gateway) callOnce(b *backend, job *asyncJob) (int, http.Header, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.UpstreamTimeout)
	defer cancel()
	r := g.replicaFor(ctx, b)
	if r == nil {
		g.metrics.observe(job.name, http.StatusServiceUnavailable, 0)
		return http.StatusServiceUnavailable, nil, nil
	}
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	u := &url.URL{Scheme: "http", Host: r.up.addr, Path: job.path, RawPath: job.rawPath, RawQuery: job.query}
	req, err := http.NewRequestWithContext(ctx, job.method, u.String(), bytes.NewReader(job.body))
	if err != nil {
		return http.StatusBadRequest, nil, nil
	}
	for k, v := range job.header {
		req.Header[k] = v
	}
	req.Header.Set("X-Start-Time", strconv.FormatInt(time.Now().UnixNano(), 10))
	b.invocations.Add(1)
	start := time.Now()
	res, err := g.transport.RoundTrip(req)
	if err != nil {
		status := http.StatusServiceUnavailable
		if ctx.Err() != nil {
			status = http.StatusGatewayTimeout
		}
		g.metrics.observe(job.name, status, time.Since(start))
		return status, nil, nil
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 10<<20))
	g.metrics.observe(job.name, res.StatusCode, time.Since(start))
	if err != nil {
		return http.StatusBadGateway, res.Header, body
	}
	return res.StatusCode, res.Header, body
}
