// Package idempotency implements Stripe's Idempotency-Key semantics over
// Postgres for every write endpoint:
//
//   - same key + same request (method, path, body bytes) → the stored
//     response, with header Idempotent-Replayed: true;
//   - same key + a different request → 422 idempotency_key_reused;
//   - same key while the first request still runs → 409
//     idempotency_key_in_use with Retry-After;
//   - keys are scoped to the function and the caller (JWT subject) and
//     expire after 24 hours.
//
// Exactly-once needs the response to commit with the effect: a handler calls
// Complete inside its business transaction, so the stored response and the
// effect commit or roll back together. Handlers that do not call Complete
// get their response stored right after they return.
//
// Not stored, as with Stripe: responses to requests that never started
// executing (400 malformed, 413, 415, 422 validation_failed), and 5xx/429/408
// answers, whose transaction rolled back; the key is released and a retry
// runs again.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

// Header is the request header carrying the key.
const Header = "Idempotency-Key"

// ReplayedHeader marks a replayed response.
const ReplayedHeader = "Idempotent-Replayed"

// TTL is how long a key is remembered.
const TTL = 24 * time.Hour

// Store keeps keys in the idempotency_keys table.
type Store struct {
	pool     *pgxpool.Pool
	function string
	// LockTTL is how long an in-flight claim blocks retries before a retry
	// with the same request may take it over (the first attempt crashed).
	LockTTL time.Duration
	// Group, when set, commits claims together with the other writes of
	// its group (concurrent requests' claims and, in capture-payment, their
	// finishing records): one commit for many instead of one per request.
	Group *pgbatch.Group
}

// New returns a store for one function.
func New(pool *pgxpool.Pool, function string) *Store {
	return &Store{pool: pool, function: function, LockTTL: time.Minute}
}

type claim struct {
	scope, key string
	completed  bool

	// A deferred claim (Store.Deferred) is taken by the handler: in its
	// first write's own statement (ClaimIn), or by Take before anything
	// else. pending: not taken yet; lost: the key was not free, the
	// middleware answers (a replay, 409 or 422) and the handler wrote
	// nothing.
	s             *Store
	method, path  string
	sum           []byte
	pending, lost bool
}

type ctxKey struct{}

// Response is what Complete stores.
type Response struct {
	Status   int
	Body     any    // encoded with encoding/json, as httpx.WriteJSON does
	Location string // optional Location header
}

// Complete stores resp as the key's response inside tx, so it commits with
// the handler's effect. It is a no-op when the request carries no key.
func Complete(ctx context.Context, tx pgx.Tx, resp Response) error {
	c, ok := ctx.Value(ctxKey{}).(*claim)
	if !ok {
		return nil
	}
	if c.pending || c.lost {
		return errors.New("idempotency: an answer stored before the request's deferred claim was taken")
	}
	body, err := json.Marshal(resp.Body)
	if err != nil {
		return err
	}
	hdr := storedHeaders{ContentType: "application/json", Location: resp.Location}
	if err := save(ctx, tx, c, resp.Status, hdr, body); err != nil {
		return err
	}
	c.completed = true
	return nil
}

// KeyFrom returns the request's key ("" when absent).
func KeyFrom(ctx context.Context) string {
	if c, ok := ctx.Value(ctxKey{}).(*claim); ok {
		return c.key
	}
	return ""
}

type storedHeaders struct {
	ContentType string `json:"content_type,omitempty"`
	Location    string `json:"location,omitempty"`
}

// execer is what pgx.Tx and *pgxpool.Pool have in common.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func save(ctx context.Context, db execer, c *claim, status int, hdr storedHeaders, body []byte) error {
	h, _ := json.Marshal(hdr)
	_, err := db.Exec(ctx, `UPDATE idempotency_keys
		SET state = 'done', response_status = $3, response_headers = $4, response_body = $5, locked_until = NULL
		WHERE scope = $1 AND key = $2`, c.scope, c.key, status, h, body)
	return err
}

// Middleware applies idempotency to the wrapped handler. With required, a
// request without the header is rejected with 400. It must run after the
// auth middleware (keys are scoped per caller).
func (s *Store) Middleware(required bool) func(http.Handler) http.Handler {
	return s.middleware(required, false)
}

// Deferred is Middleware for a handler that takes the request's claim
// itself, saving the claim its own round trip and commit: in its first
// write's statement (ClaimIn, Took), or with Take before it does anything
// else, and always before it answers. A handler that finds the claim lost
// (Took or Take false, or ErrClaimLost) writes nothing: the middleware
// answers as Middleware would have (the stored answer, 409 or 422), or,
// when the key is free again, takes it and runs the handler once more.
func (s *Store) Deferred(required bool) func(http.Handler) http.Handler {
	return s.middleware(required, true)
}

func (s *Store) middleware(required, deferred bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key := r.Header.Get(Header)
			if key == "" {
				if required {
					problem.Write(w, r, &problem.Error{Code: problem.IdempotencyRequired,
						Detail: "send an Idempotency-Key header (a UUID is a good key) so a retry cannot apply twice",
						Errors: []problem.FieldError{problem.Header(Header, "required")}})
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			if err := ValidKey(key); err != nil {
				problem.Write(w, r, err)
				return
			}
			body, err := httpx.ReadBody(r)
			if err != nil {
				problem.Write(w, r, err)
				return
			}
			sum := Hash(r.Method, r.URL.Path, body)
			c := &claim{scope: s.Scope(r.Context()), key: key, s: s, method: r.Method, path: r.URL.Path, sum: sum, pending: deferred}
			if deferred {
				r.Body = io.NopCloser(bytes.NewReader(body))
				if s.serve(w, r, next, c) {
					return
				}
				// Lost: answer as a claim before the handler would have.
				c = &claim{scope: c.scope, key: key}
			}
			stored, err := s.claim(r.Context(), c, r.Method, r.URL.Path, sum)
			if err != nil {
				problem.Write(w, r, err)
				return
			}
			if stored != nil {
				stored.replay(w)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			s.serve(w, r, next, c)
		})
	}
}

// serve runs next holding claim c (or with c deferred) and stores or
// releases its key; it reports false, having written nothing, when the
// handler found a deferred claim lost.
func (s *Store) serve(w http.ResponseWriter, r *http.Request, next http.Handler, c *claim) bool {
	cw := &captureWriter{ResponseWriter: w}
	// A handler that fails or panics must not leave the key locked.
	defer func() {
		if !cw.finished && !c.pending && !c.lost {
			s.release(c)
		}
	}()
	next.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	if c.lost {
		cw.finished = true
		// A handler that answered all the same keeps its answer, unstored.
		return cw.status != 0
	}
	if c.pending {
		// Answered without taking its claim (a handler's mistake): take it
		// now, so the answer is stored as it would have been.
		if won, err := s.take(r.Context(), c, c.method, c.path, c.sum); err != nil || !won {
			cw.finished = true
			return true
		}
		c.pending = false
	}
	s.finish(r.Context(), c, cw)
	cw.finished = true
	return true
}

// ErrClaimLost is a deferred claim that found its key taken: the handler
// writes nothing and answers nothing, the middleware answers.
var ErrClaimLost = errors.New("idempotency: the key is not free")

// ClaimCTE is a deferred claim as a data-modifying CTE for a write's own
// statement: "<name> AS (…)", whose rows are the keys it took (one, or
// none: taken by another request, and then it wrote nothing), its seven
// arguments (ClaimIn's) numbered from first. The statement must write
// nothing else when <name> is empty, and its caller reports the count
// with Took.
func ClaimCTE(name string, first int) string {
	return name + " AS (" + claimInsert(first) + ")"
}

// ClaimIn returns the arguments of ClaimCTE for the request's deferred
// claim, not taken yet; ok is false when the request has none pending (no
// key, a Middleware route, or taken already).
func ClaimIn(ctx context.Context) (args []any, ok bool) {
	c, ok := ctx.Value(ctxKey{}).(*claim)
	if !ok || !c.pending {
		return nil, false
	}
	return c.s.claimArgs(c, c.method, c.path, c.sum), true
}

// Took records the outcome of the claim ClaimIn gave the arguments of (n: the rows of its
// CTE, once its statement committed); false means the claim is lost.
func Took(ctx context.Context, n int) bool {
	c, ok := ctx.Value(ctxKey{}).(*claim)
	if !ok || !c.pending {
		return true
	}
	c.pending, c.lost = false, n != 1
	return !c.lost
}

// Take takes the request's deferred claim now, as Middleware would have
// before the handler (nothing to do when there is none pending). false:
// the claim is lost, the handler answers nothing.
func Take(ctx context.Context) (bool, error) {
	c, ok := ctx.Value(ctxKey{}).(*claim)
	if !ok || !c.pending {
		return !ok || !c.lost, nil
	}
	won, err := c.s.take(ctx, c, c.method, c.path, c.sum)
	if err != nil {
		return false, fmt.Errorf("idempotency claim: %w", err)
	}
	c.pending, c.lost = false, !won
	return won, nil
}

// ValidKey checks a key's form (1-255 printable ASCII characters, the
// README's rule) and answers the 422 naming the header when it breaks it;
// a handler that reads the key itself (process-transaction's transfers)
// checks it with this, as the middleware does.
func ValidKey(k string) error {
	if len(k) > 255 {
		return problem.Invalid(problem.Header(Header, "must be at most 255 characters"))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return problem.Invalid(problem.Header(Header, "must be printable ASCII without spaces"))
		}
	}
	return nil
}

// Scope is the key namespace of the caller: function + principal.
func (s *Store) Scope(ctx context.Context) string {
	if p, ok := auth.FromContext(ctx); ok {
		return s.function + ":" + p.Subject
	}
	return s.function + ":anonymous"
}

// Hash fingerprints a request.
func Hash(method, path string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{'\n'})
	h.Write([]byte(path))
	h.Write([]byte{'\n'})
	h.Write(body)
	return h.Sum(nil)
}

type storedResponse struct {
	status int
	hdr    storedHeaders
	body   []byte
}

func (sr *storedResponse) replay(w http.ResponseWriter) {
	h := w.Header()
	if sr.hdr.ContentType != "" {
		h.Set("Content-Type", sr.hdr.ContentType)
	}
	if sr.hdr.Location != "" {
		h.Set("Location", sr.hdr.Location)
	}
	h.Set(ReplayedHeader, "true")
	w.WriteHeader(sr.status)
	_, _ = w.Write(sr.body)
}

// claim takes the key for this request, or returns the stored response to
// replay, or a problem (reused key, in flight).
func (s *Store) claim(ctx context.Context, c *claim, method, path string, sum []byte) (*storedResponse, error) {
	for attempt := 0; attempt < 3; attempt++ {
		won, err := s.take(ctx, c, method, path, sum)
		if err != nil {
			return nil, fmt.Errorf("idempotency claim: %w", err)
		}
		if won {
			return nil, nil
		}
		var (
			hash     []byte
			state    string
			status   *int
			hdrJSON  []byte
			body     []byte
			prevPath string
			prevVerb string
		)
		err = s.pool.QueryRow(ctx, `SELECT request_hash, method, path, state, response_status, response_headers, response_body
			FROM idempotency_keys WHERE scope = $1 AND key = $2`, c.scope, c.key).
			Scan(&hash, &prevVerb, &prevPath, &state, &status, &hdrJSON, &body)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // released between our two statements: try again
		}
		if err != nil {
			return nil, fmt.Errorf("idempotency lookup: %w", err)
		}
		if !bytes.Equal(hash, sum) {
			return nil, apperr.KeyReused("request (" + prevVerb + " " + prevPath + ")")
		}
		if state == "in_flight" || status == nil {
			return nil, &problem.Error{Code: problem.IdempotencyInFlight,
				Detail: "a request with this Idempotency-Key is still being processed; retry shortly", RetryAfter: time.Second}
		}
		sr := &storedResponse{status: *status, body: body}
		_ = json.Unmarshal(hdrJSON, &sr.hdr)
		return sr, nil
	}
	return nil, &problem.Error{Code: problem.IdempotencyInFlight, Detail: "the Idempotency-Key is contended; retry shortly", RetryAfter: time.Second}
}

// claimSQL takes a key that is free, expired, or in flight past its lock
// with the same request; its row counts the keys it took (0: taken by
// another request, and then it wrote nothing, as a group's guard must).
var claimSQL = `WITH c AS (` + claimInsert(1) + `) SELECT count(*)::int FROM c`

// claimInsert is the claim's INSERT, its seven arguments (claimArgs)
// numbered from first.
func claimInsert(first int) string {
	a := func(i int) string { return "$" + strconv.Itoa(first+i-1) }
	return `INSERT INTO idempotency_keys AS k (scope, key, request_hash, method, path, state, locked_until)
	VALUES (` + a(1) + `, ` + a(2) + `, ` + a(3) + `, ` + a(4) + `, ` + a(5) + `, 'in_flight', now() + ` + a(6) + `::interval)
	ON CONFLICT (scope, key) DO UPDATE
	SET request_hash = EXCLUDED.request_hash, method = EXCLUDED.method, path = EXCLUDED.path,
	    state = 'in_flight', locked_until = EXCLUDED.locked_until, created_at = now(),
	    response_status = NULL, response_headers = NULL, response_body = NULL
	WHERE k.created_at < now() - ` + a(7) + `::interval
	   OR (k.state = 'in_flight' AND k.locked_until < now() AND k.request_hash = EXCLUDED.request_hash)
	RETURNING 1`
}

func (s *Store) claimArgs(c *claim, method, path string, sum []byte) []any {
	return []any{c.scope, c.key, sum, method, path, s.LockTTL, TTL}
}

// take runs claimSQL, in the store's group when it has one.
func (s *Store) take(ctx context.Context, c *claim, method, path string, sum []byte) (bool, error) {
	args := s.claimArgs(c, method, path, sum)
	var n int
	if s.Group != nil {
		return s.Group.Do(ctx, pgbatch.Write{Guard: pgbatch.Guard{SQL: claimSQL, Args: args, Dest: []any{&n},
			Proceed: func() bool { return n == 1 }}})
	}
	err := s.pool.QueryRow(ctx, claimSQL, args...).Scan(&n)
	return n == 1, err
}

// finish stores or releases the key after the handler answered.
func (s *Store) finish(ctx context.Context, c *claim, cw *captureWriter) {
	// The answer is given: storing it must complete even if the client left.
	ctx, cancel := postgres.Detached(ctx)
	defer cancel()
	status := cw.status
	if status == 0 {
		status = http.StatusOK
	}
	switch {
	case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		s.release(c)
	case c.completed:
		// stored in the handler's transaction
	case notStarted(status, cw.buf.Bytes()):
		s.release(c)
	default:
		hdr := storedHeaders{ContentType: cw.Header().Get("Content-Type"), Location: cw.Header().Get("Location")}
		if err := save(ctx, s.pool, c, status, hdr, cw.buf.Bytes()); err != nil {
			s.release(c)
		}
	}
}

func notStarted(status int, body []byte) bool {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return true
	case http.StatusUnprocessableEntity:
		return bytes.Contains(body, []byte(`"code":"`+problem.ValidationFailed+`"`))
	}
	return false
}

func (s *Store) release(c *claim) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'in_flight'`, c.scope, c.key)
}

// Sweep deletes expired keys in batches and returns how many it deleted.
// The schedule tick calls it; it is idempotent.
func Sweep(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var total int64
	for {
		tag, err := pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM idempotency_keys WHERE created_at < now() - $1::interval LIMIT 5000))`, TTL)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

// captureWriter writes through and keeps a copy of the body.
type captureWriter struct {
	http.ResponseWriter
	status   int
	buf      bytes.Buffer
	finished bool
}

func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *captureWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.buf.Write(b)
	return w.ResponseWriter.Write(b)
}

func (w *captureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
