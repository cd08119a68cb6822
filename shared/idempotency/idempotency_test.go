package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const secret = "test-secret-test-secret-test-secret-0123"

// fixture is a tiny "create a note" endpoint whose effect is a row in a
// table, written in the same transaction as idempotency.Complete.
type fixture struct {
	pool   *pgxpool.Pool
	srv    *httptest.Server
	signer *auth.Signer
	user   string
	table  string
	fail   func() error // injected failure before commit
	store  *idempotency.Store
}

func newFixture(t *testing.T) *fixture { return newFixtureOf(t, false) }

// newDeferredFixture is newFixture whose route defers its claim
// (Store.Deferred) to the note's own statement: one statement claims the
// key and inserts the note only if it took it.
func newDeferredFixture(t *testing.T) *fixture { return newFixtureOf(t, true) }

func newFixtureOf(t *testing.T, deferred bool) *fixture {
	t.Helper()
	pool := testenv.Pool(t)
	f := &fixture{pool: pool, signer: auth.NewHS256Signer(secret, "billfn", "billfn"), user: uuid.NewString(),
		table: "notes_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")}
	if _, err := pool.Exec(context.Background(), `CREATE TABLE `+f.table+` (id uuid PRIMARY KEY, text text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Alg: "HS256", Secret: secret, Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()})
	if err != nil {
		t.Fatal(err)
	}
	store := idempotency.New(pool, "notes-fn")
	f.store = store
	create := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Text string `json:"text"`
		}
		if err := httpx.DecodeJSON(r, &in); err != nil {
			problem.Write(w, r, err)
			return
		}
		if in.Text == "" {
			if ok, err := idempotency.Take(r.Context()); err != nil || !ok {
				return
			}
			problem.Write(w, r, problem.Invalid(problem.Field("text", "required")))
			return
		}
		if in.Text == "forbidden" {
			problem.Write(w, r, problem.New(problem.Conflict, "rule violation"))
			return
		}
		out := map[string]string{"id": uuid.NewString(), "text": in.Text}
		err := postgres.Tx(r.Context(), pool, func(tx pgx.Tx) error {
			time.Sleep(5 * time.Millisecond) // keep the request in flight a little
			if args, ok := idempotency.ClaimIn(r.Context()); ok {
				var took int
				if err := tx.QueryRow(r.Context(), `WITH `+idempotency.ClaimCTE("k", 3)+`,
					n AS (INSERT INTO `+f.table+` SELECT $1, $2 WHERE EXISTS (SELECT FROM k))
					SELECT count(*)::int FROM k`, append([]any{out["id"], out["text"]}, args...)...).Scan(&took); err != nil {
					return err
				}
				if !idempotency.Took(r.Context(), took) {
					return idempotency.ErrClaimLost
				}
			} else if _, err := tx.Exec(r.Context(), `INSERT INTO `+f.table+` VALUES ($1, $2)`, out["id"], out["text"]); err != nil {
				return err
			}
			if f.fail != nil {
				if err := f.fail(); err != nil {
					return err
				}
			}
			return idempotency.Complete(r.Context(), tx, idempotency.Response{Status: 201, Body: out, Location: "/notes/" + out["id"]})
		})
		if errors.Is(err, idempotency.ErrClaimLost) {
			return // the middleware answers
		}
		if err != nil {
			if ok, terr := idempotency.Take(r.Context()); terr != nil || !ok {
				return
			}
			problem.Write(w, r, err)
			return
		}
		w.Header().Set("Location", "/notes/"+out["id"])
		httpx.WriteJSON(w, http.StatusCreated, out)
	})
	mux := http.NewServeMux()
	mw := store.Middleware(true)
	if deferred {
		mw = store.Deferred(true)
	}
	mux.Handle("POST /notes", v.Middleware()(mw(create)))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) post(t *testing.T, user, key, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/notes", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	tok, _ := f.signer.Sign(user, auth.RoleCustomer, time.Hour)
	req.Header.Set("Authorization", "Bearer "+tok)
	if key != "" {
		req.Header.Set(idempotency.Header, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (f *fixture) effects(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+f.table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func problemCode(t *testing.T, body string) string {
	t.Helper()
	var d struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("not a problem document: %s", body)
	}
	return d.Code
}

func TestSameKeySameRequestReplaysTheStoredResponse(t *testing.T) {
	f := newFixture(t)
	key := uuid.NewString()
	r1, b1 := f.post(t, f.user, key, `{"text":"hello"}`)
	if r1.StatusCode != 201 || r1.Header.Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("first: %d %s (replayed=%q)", r1.StatusCode, b1, r1.Header.Get(idempotency.ReplayedHeader))
	}
	r2, b2 := f.post(t, f.user, key, `{"text":"hello"}`)
	if r2.StatusCode != 201 || r2.Header.Get(idempotency.ReplayedHeader) != "true" {
		t.Fatalf("replay: %d replayed=%q", r2.StatusCode, r2.Header.Get(idempotency.ReplayedHeader))
	}
	if b1 != b2 || r1.Header.Get("Location") != r2.Header.Get("Location") {
		t.Fatalf("replay differs:\n%s\n%s", b1, b2)
	}
	if n := f.effects(t); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
}

func TestSameKeyDifferentBodyIs422(t *testing.T) {
	f := newFixture(t)
	key := uuid.NewString()
	f.post(t, f.user, key, `{"text":"a"}`)
	r, b := f.post(t, f.user, key, `{"text":"b"}`)
	if r.StatusCode != 422 || problemCode(t, b) != string(problem.IdempotencyKeyReused) {
		t.Fatalf("got %d %s", r.StatusCode, b)
	}
	if n := f.effects(t); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
}

func TestMissingKeyIsRejectedWhenRequired(t *testing.T) {
	f := newFixture(t)
	r, b := f.post(t, f.user, "", `{"text":"a"}`)
	if r.StatusCode != 400 || problemCode(t, b) != string(problem.IdempotencyRequired) {
		t.Fatalf("got %d %s", r.StatusCode, b)
	}
	r, b = f.post(t, f.user, "has space", `{"text":"a"}`)
	if r.StatusCode != 422 {
		t.Fatalf("bad key: got %d %s", r.StatusCode, b)
	}
	if n := f.effects(t); n != 0 {
		t.Fatalf("effects = %d, want 0", n)
	}
}

func TestFiftyConcurrentRequestsWithOneKeyHaveOneEffect(t *testing.T) {
	fiftyWithOneKey(t, newFixture(t))
}

// With a group commit, claims of concurrent requests share transactions:
// still one effect, the others in flight or replays.
func TestFiftyConcurrentRequestsWithOneKeyHaveOneEffectInAGroupCommit(t *testing.T) {
	f := newFixture(t)
	f.store.Group = pgbatch.NewGroup(f.pool, "idempotency test")
	t.Cleanup(f.store.Group.Close)
	fiftyWithOneKey(t, f)
	// And a new key in the group is claimed and replayed as without.
	key := uuid.NewString()
	r1, b1 := f.post(t, f.user, key, `{"text":"grouped"}`)
	r2, b2 := f.post(t, f.user, key, `{"text":"grouped"}`)
	if r1.StatusCode != 201 || r2.StatusCode != 201 || b1 != b2 || r2.Header.Get(idempotency.ReplayedHeader) != "true" {
		t.Fatalf("first %d, replay %d (replayed %q), bodies equal %v", r1.StatusCode, r2.StatusCode,
			r2.Header.Get(idempotency.ReplayedHeader), b1 == b2)
	}
}

func fiftyWithOneKey(t *testing.T, f *fixture) {
	t.Helper()
	key := uuid.NewString()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	bodies := map[string]bool{}
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, b := f.post(t, f.user, key, `{"text":"once"}`)
			mu.Lock()
			statuses[r.StatusCode]++
			if r.StatusCode == 201 {
				bodies[b] = true
			} else if r.StatusCode == 409 && r.Header.Get("Retry-After") == "" {
				t.Errorf("409 without Retry-After")
			}
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if n := f.effects(t); n != 1 {
		t.Fatalf("effects = %d, want exactly 1 (statuses %v)", n, statuses)
	}
	if statuses[201]+statuses[409] != 50 || statuses[201] < 1 {
		t.Fatalf("statuses = %v, want only 201 (first + replays) and 409 (in flight)", statuses)
	}
	if len(bodies) != 1 {
		t.Fatalf("%d different 201 bodies, want 1 (replays are identical)", len(bodies))
	}
}

// A deferred claim, taken in the note's own statement, answers as a claim
// before the handler: one effect for fifty concurrent requests with one
// key, replays, 422 for another body with the key, a failure that
// releases the key, validation failures not stored.
func TestADeferredClaimTakenInTheWritesStatementAnswersAsBefore(t *testing.T) {
	f := newDeferredFixture(t)
	fiftyWithOneKey(t, f)
	key := uuid.NewString()
	r1, b1 := f.post(t, f.user, key, `{"text":"deferred"}`)
	r2, b2 := f.post(t, f.user, key, `{"text":"deferred"}`)
	if r1.StatusCode != 201 || r2.StatusCode != 201 || b1 != b2 || r2.Header.Get(idempotency.ReplayedHeader) != "true" {
		t.Fatalf("first %d, replay %d (replayed %q), bodies equal %v", r1.StatusCode, r2.StatusCode,
			r2.Header.Get(idempotency.ReplayedHeader), b1 == b2)
	}
	if r, b := f.post(t, f.user, key, `{"text":"other"}`); r.StatusCode != 422 || problemCode(t, b) != string(problem.IdempotencyKeyReused) {
		t.Fatalf("another body: %d %s", r.StatusCode, b)
	}
	if r, b := f.post(t, f.user, key, `{"text":""}`); r.StatusCode != 422 || problemCode(t, b) != string(problem.IdempotencyKeyReused) {
		t.Fatalf("another, invalid body: %d %s", r.StatusCode, b)
	}
	fresh := uuid.NewString()
	if r, _ := f.post(t, f.user, fresh, `{"text":""}`); r.StatusCode != 422 {
		t.Fatalf("invalid: %d", r.StatusCode)
	}
	f.fail = func() error { return fmt.Errorf("database hiccup") }
	if r, _ := f.post(t, f.user, fresh, `{"text":"x"}`); r.StatusCode != 500 {
		t.Fatalf("failure: %d, want 500", r.StatusCode)
	}
	f.fail = nil
	if r, b := f.post(t, f.user, fresh, `{"text":"x"}`); r.StatusCode != 201 || r.Header.Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("after a validation failure and a 500 the key runs again: %d %s", r.StatusCode, b)
	}
	if n := f.effects(t); n != 3 {
		t.Fatalf("effects = %d, want 3", n)
	}
}

func TestFailedAttemptReleasesTheKey(t *testing.T) {
	f := newFixture(t)
	key := uuid.NewString()
	f.fail = func() error { return fmt.Errorf("database hiccup") }
	r, _ := f.post(t, f.user, key, `{"text":"x"}`)
	if r.StatusCode != 500 {
		t.Fatalf("got %d, want 500", r.StatusCode)
	}
	f.fail = nil
	r, b := f.post(t, f.user, key, `{"text":"x"}`)
	if r.StatusCode != 201 || r.Header.Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("retry after 500: %d %s (it must run again, not replay the 500)", r.StatusCode, b)
	}
	if n := f.effects(t); n != 1 {
		t.Fatalf("effects = %d, want 1", n)
	}
}

func TestValidationFailuresAreNotStoredButRuleViolationsAre(t *testing.T) {
	f := newFixture(t)
	key := uuid.NewString()
	if r, _ := f.post(t, f.user, key, `{"text":""}`); r.StatusCode != 422 {
		t.Fatalf("got %d", r.StatusCode)
	}
	// The request never started: the same key with a corrected body runs.
	if r, b := f.post(t, f.user, key, `{"text":"fixed"}`); r.StatusCode != 201 {
		t.Fatalf("corrected body: %d %s", r.StatusCode, b)
	}
	key2 := uuid.NewString()
	r1, b1 := f.post(t, f.user, key2, `{"text":"forbidden"}`)
	r2, b2 := f.post(t, f.user, key2, `{"text":"forbidden"}`)
	if r1.StatusCode != 409 || r2.StatusCode != 409 || r2.Header.Get(idempotency.ReplayedHeader) != "true" || b1 != b2 {
		t.Fatalf("rule violation not replayed: %d/%d replayed=%q", r1.StatusCode, r2.StatusCode, r2.Header.Get(idempotency.ReplayedHeader))
	}
}

func TestKeysAreScopedPerCaller(t *testing.T) {
	f := newFixture(t)
	key := uuid.NewString()
	other := uuid.NewString()
	r1, _ := f.post(t, f.user, key, `{"text":"mine"}`)
	r2, b2 := f.post(t, other, key, `{"text":"theirs"}`)
	if r1.StatusCode != 201 || r2.StatusCode != 201 || r2.Header.Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("second caller with the same key: %d %s", r2.StatusCode, b2)
	}
	if n := f.effects(t); n != 2 {
		t.Fatalf("effects = %d, want 2", n)
	}
}

func TestExpiredKeysRunAgainAndAreSwept(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := uuid.NewString()
	f.post(t, f.user, key, `{"text":"old"}`)
	if _, err := f.pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = $1`, key); err != nil {
		t.Fatal(err)
	}
	r, _ := f.post(t, f.user, key, `{"text":"new"}`)
	if r.StatusCode != 201 || r.Header.Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("expired key: got %d replayed=%q", r.StatusCode, r.Header.Get(idempotency.ReplayedHeader))
	}
	if _, err := f.pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = $1`, key); err != nil {
		t.Fatal(err)
	}
	n, err := idempotency.Sweep(ctx, f.pool)
	if err != nil || n < 1 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	var left int
	f.pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE key = $1`, key).Scan(&left)
	if left != 0 {
		t.Fatal("expired key not swept")
	}
}
