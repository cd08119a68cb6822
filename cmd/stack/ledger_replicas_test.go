package main

// Two process-transaction replicas committing on the same accounts, as
// every cluster runs them: each replica group-commits on its own, so their
// transactions meet on the same account rows in Postgres.

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Sixteen clients send transfers in both directions between four hot
// accounts through the gateway, which spreads them over two replicas of
// process-transaction. No answer is a 500 (a deadlock or serialization
// failure is decided again inside the group commit, or answered 503 with
// a problem document and retried with the same key); both replicas commit
// transfers; afterwards the currency sums to zero, every balance is its
// funding plus what the accepted transfers brought in minus what they took
// out, every 201 is one posted transfer and every refusal one rejected
// transfer without postings.
func TestTwoLedgerReplicasOnHotAccounts(t *testing.T) {
	e := startStack(t, stackOptions{env: []string{"RATE_LIMIT=off"}})
	const fn = "process-transaction"
	if r := e.sys(http.MethodPost, "/system/scale-function/"+fn, map[string]any{"serviceName": fn, "replicas": 2}); r.status != http.StatusAccepted {
		t.Fatalf("scale %s to 2: %s", fn, r)
	}
	e.eventually("two ready replicas of "+fn, 2*time.Minute, func() bool {
		st, code := e.functionStatus(fn)
		return code == http.StatusOK && st.AvailableReplicas == 2 && len(e.processesOf(fn)) == 2
	})
	// Each replica's own /metrics, by its PORT.
	var replicas []string
	for _, env := range e.processesOf(fn) {
		for _, kv := range env {
			if port, ok := strings.CutPrefix(kv, "PORT="); ok {
				replicas = append(replicas, "http://127.0.0.1:"+port+"/metrics")
			}
		}
	}
	slices.Sort(replicas)
	if len(replicas) != 2 {
		t.Fatalf("replica metrics %v", replicas)
	}
	posts := func(url, code string) float64 {
		return metric(t, url, "billfn_http_requests_total", `method="POST"`, `/transfers"`, `code="`+code+`"`)
	}
	before := []float64{posts(replicas[0], "201"), posts(replicas[1], "201")}

	const hot, funding = 4, 20_000
	var accts []customer
	for i := 0; i < hot; i++ {
		c := e.newCustomer("USD")
		e.fund(c, funding, "USD")
		accts = append(accts, c)
	}
	deadlocks0 := e.scalar(`SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`)

	type outcome struct {
		from, to int
		amount   int64
		status   int
		key, id  string
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		fivexx   []string // every 5xx answer, retried or not
		retried  int
	)
	const clients, perClient = 16, 60
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; i < perClient; i++ {
				from := rng.IntN(hot)
				to := (from + 1 + rng.IntN(hot-1)) % hot
				// Now and then more than the account holds: refused, kept as rejected.
				amount := int64(1 + rng.IntN(3000))
				key := uuid.NewString()
				body := map[string]any{"from_account_id": accts[from].account, "to_account_id": accts[to].account, "amount": amount, "currency": "USD"}
				deadline := time.Now().Add(time.Minute)
				for {
					r, err := e.try(http.MethodPost, "/function/"+fn+"/transfers", body,
						"Authorization", "Bearer "+accts[from].token, "Idempotency-Key", key)
					retry := err != nil || r.status >= 500 || r.status == http.StatusTooManyRequests ||
						r.status == http.StatusConflict && str(r.body, "code") == "idempotency_key_in_use"
					if err == nil && r.status >= 500 {
						mu.Lock()
						fivexx = append(fivexx, fmt.Sprintf("%d %s %s", r.status, r.header.Get("Content-Type"), truncate(string(r.raw), 300)))
						mu.Unlock()
					}
					if !retry || time.Now().After(deadline) {
						mu.Lock()
						id := str(r.body, "id")
						if id == "" {
							id = str(r.body, "transfer_id")
						}
						outcomes = append(outcomes, outcome{from, to, amount, r.status, key, id})
						mu.Unlock()
						break
					}
					mu.Lock()
					retried++
					mu.Unlock()
					time.Sleep(100 * time.Millisecond)
				}
			}
		}(w)
	}
	wg.Wait()
	e.quiesce(2 * time.Minute)

	// No deadlock or serialization failure reached a client as a 500; a
	// 503 (the group could not commit after its retries) must be a
	// problem document the client can act on.
	for _, f := range fivexx {
		if strings.HasPrefix(f, "500 ") || !strings.Contains(f, "application/problem+json") {
			t.Errorf("answered %s", f)
		}
	}
	want := make([]int64, hot)
	for i := range want {
		want[i] = funding
	}
	var postedIDs, rejectedIDs []string
	var postedSum int64
	for _, o := range outcomes {
		switch o.status {
		case http.StatusCreated:
			want[o.from] -= o.amount
			want[o.to] += o.amount
			postedIDs = append(postedIDs, o.id)
			postedSum += o.amount
		case http.StatusUnprocessableEntity:
			rejectedIDs = append(rejectedIDs, o.id)
		default:
			t.Errorf("transfer %s of %d: final answer %d", o.key, o.amount, o.status)
		}
	}
	if len(outcomes) != clients*perClient {
		t.Fatalf("%d outcomes for %d transfers", len(outcomes), clients*perClient)
	}
	if len(postedIDs) == 0 || len(rejectedIDs) == 0 {
		t.Errorf("%d posted and %d refused: the mix should hold both", len(postedIDs), len(rejectedIDs))
	}
	if p := e.ledgerProblems(); len(p) > 0 {
		t.Errorf("ledger: %v", p)
	}
	for i, c := range accts {
		if b := e.balance(c.account); b != want[i] {
			t.Errorf("account %s: balance %d, the accepted transfers make it %d", c.number, b, want[i])
		}
	}
	if n := e.scalar(`SELECT count(*) FROM transfers WHERE id::text = ANY($1) AND status = 'posted'`, postedIDs); n != int64(len(postedIDs)) {
		t.Errorf("%d of %d accepted transfers are posted", n, len(postedIDs))
	}
	if got := e.scalar(`SELECT coalesce(sum(amount), 0) FROM transfers WHERE id::text = ANY($1)`, postedIDs); got != postedSum {
		t.Errorf("accepted transfers sum to %d in the ledger, %d answered", got, postedSum)
	}
	if n := e.scalar(`SELECT count(*) FROM transfers WHERE id::text = ANY($1) AND status = 'rejected'
		AND NOT EXISTS (SELECT 1 FROM postings p WHERE p.transfer_id = transfers.id)`, rejectedIDs); n != int64(len(rejectedIDs)) {
		t.Errorf("%d of %d refusals are kept as rejected without postings", n, len(rejectedIDs))
	}
	// Every transfer of the hot accounts is one the clients were answered for.
	ids := make([]string, hot)
	for i, c := range accts {
		ids[i] = c.account
	}
	if n := e.scalar(`SELECT count(*) FROM transfers WHERE (from_account_id::text = ANY($1) AND to_account_id::text = ANY($1))`, ids); n != int64(len(outcomes)) {
		t.Errorf("%d transfers between the hot accounts, %d answered", n, len(outcomes))
	}
	// Both replicas committed transfers.
	for i, url := range replicas {
		if d := posts(url, "201") - before[i]; d < 1 {
			t.Errorf("replica %s answered no 201 to a transfer (%v)", url, d)
		}
	}
	var retries float64
	for _, url := range replicas {
		retries += metric(t, url, "billfn_ledger_group_retries_total")
	}
	deadlocks := e.scalar(`SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`) - deadlocks0
	t.Logf("%d transfers from %d clients over %d hot accounts on 2 replicas: %d posted (%d), %d refused; %d 5xx answers retried by the clients (%d retries); "+
		"group commits decided again after a conflict: %.0f; deadlocks Postgres detected: %d; 201s per replica: %.0f and %.0f",
		len(outcomes), clients, hot, len(postedIDs), postedSum, len(rejectedIDs), len(fivexx), retried, retries, deadlocks,
		posts(replicas[0], "201")-before[0], posts(replicas[1], "201")-before[1])
}
