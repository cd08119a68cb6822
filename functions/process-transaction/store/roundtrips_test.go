package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/functions/process-transaction/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestAGroupIsTwoRoundTripsAndFiveStatements holds what a group commit asks
// of PostgreSQL, whatever the group holds: one round trip that reads
// (BEGIN, the transaction's generic plans, the accounts locked: a
// statement that saves planning the others on every group, see
// TestAGroupIsPlannedOncePerConnection) and one that writes and commits, where the
// transfers, their postings, the balances and the outbox events are ONE
// statement (data-modifying CTEs) and COMMIT the other. Each statement
// costs the server a bind, a portal and an executor start and end, whatever
// its rows; a group of five transfers paid for eight of them (issue 20).
// The idempotency keys are not read first: the unique index refuses a used
// one, and only then is the group decided again reading them, so a replay
// costs its group a second transaction and the common case nothing.
func TestAGroupIsTwoRoundTripsAndFiveStatements(t *testing.T) {
	ctx := context.Background()
	rt := &testenv.RoundTrips{}
	pool, c, caller, accounts := oneConnectionCommitter(t, rt)
	group := func(n int) *ledger.Unit {
		u := &ledger.Unit{}
		for i := range n {
			u.Ops = append(u.Ops, &ledger.Op{Req: ledger.TransferRequest{FromAccountID: accounts[i%4], ToAccountID: accounts[(i+1)%4],
				Amount: int64(10 + i), Currency: "USD"}, Caller: caller, Scope: caller.Subject, Key: uuid.NewString(), Hash: []byte{1}, ID: uuid.NewString()})
		}
		return u
	}
	if err := c.Submit(ctx, group(2)); err != nil { // statements prepared
		t.Fatal(err)
	}
	n0, _ := rt.Count()
	u := group(5)
	if err := c.Submit(ctx, u); err != nil {
		t.Fatal(err)
	}
	for _, o := range u.Ops {
		if o.Res.Err != nil || o.Res.Transfer == nil || o.Res.Transfer.Status != ledger.TransferPosted {
			t.Fatalf("transfer: %+v", o.Res)
		}
	}
	n, sql := rt.Count()
	statements := 0
	for _, s := range sql[n0:] {
		statements += len(strings.Split(strings.TrimPrefix(s, "batch: "), "; "))
	}
	if n-n0 != 2 || statements != 5 {
		t.Errorf("a group of 5 transfers: %d round trips and %d statements, want 2 and 5:\n%s", n-n0, statements, strings.Join(sql[n0:], "\n"))
	}
	// POST /transfers's own keys are locked and looked up in the
	// idempotency table too (a capture's or a void's key is not a
	// transfer's): two statements more in the first round trip, not a
	// round trip more.
	own := group(5)
	for _, o := range own.Ops {
		o.OwnKey = true
	}
	n0, _ = rt.Count()
	if err := c.Submit(ctx, own); err != nil {
		t.Fatal(err)
	}
	n, sql = rt.Count()
	statements = 0
	for _, s := range sql[n0:] {
		statements += len(strings.Split(strings.TrimPrefix(s, "batch: "), "; "))
	}
	if n-n0 != 2 || statements != 7 {
		t.Errorf("a group of 5 transfers with their own keys: %d round trips and %d statements, want 2 and 7:\n%s", n-n0, statements, strings.Join(sql[n0:], "\n"))
	}

	// A group holding a used key: the first attempt is refused by the
	// unique index, the second reads the keys and replays that op; the
	// other op of the group is posted once.
	again := group(2)
	again.Ops[0].Req, again.Ops[0].Key, again.Ops[0].Hash = u.Ops[0].Req, u.Ops[0].Key, u.Ops[0].Hash
	if err := c.Submit(ctx, again); err != nil {
		t.Fatal(err)
	}
	if r := again.Ops[0].Res; r.Err != nil || !r.Replayed || r.Transfer == nil || r.Transfer.ID != u.Ops[0].Res.Transfer.ID {
		t.Errorf("a used key: %+v, want the replay of %s", r, u.Ops[0].Res.Transfer.ID)
	}
	if r := again.Ops[1].Res; r.Err != nil || r.Replayed || r.Transfer == nil || r.Transfer.Status != ledger.TransferPosted {
		t.Errorf("a new key beside a used one: %+v, want posted", r)
	}
	if r := u.Ops[0].Res.Transfer; again.Ops[0].Res.Transfer != nil && *again.Ops[0].Res.Transfer.FromBalance != *r.FromBalance {
		t.Errorf("the replay answers a from_balance of %d, the transfer was answered %d", *again.Ops[0].Res.Transfer.FromBalance, *r.FromBalance)
	}
	var rows [3]int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM transfers), (SELECT count(*) FROM postings),
		(SELECT count(*) FROM outbox)`).Scan(&rows[0], &rows[1], &rows[2]); err != nil {
		t.Fatal(err)
	}
	if rows != [3]int{13, 26, 13} {
		t.Errorf("transfers, postings, outbox rows: %v, want [13 26 13]", rows)
	}
	var sum, versions int64
	if err := pool.QueryRow(ctx, `SELECT sum(balance), sum(version) FROM accounts`).Scan(&sum, &versions); err != nil || sum != 0 || versions != 4+26 {
		t.Errorf("balances sum to %d, versions to %d (%v), want 0 and 30", sum, versions, err)
	}
}

// TestAGroupIsPlannedOncePerConnection holds the group's statements to
// their generic plans: Postgres plans a prepared statement for each of its
// first five runs on a connection, then keeps a custom plan as long as the
// generic one looks dearer, which a statement over arrays always does with
// the few elements a group holds (the generic plan estimates ten). The
// group's write, a CTE of five bulk statements, was planned again on every
// group: 854 µs of PostgreSQL's time a group in the payments bench, and
// the accounts' lock 380 µs (issue 20).
func TestAGroupIsPlannedOncePerConnection(t *testing.T) {
	ctx := context.Background()
	pool, c, caller, accounts := oneConnectionCommitter(t, nil) // every group and the count below on one connection
	const groups = 8
	for g := range groups {
		u := &ledger.Unit{}
		for i := range 1 + g%3 {
			u.Ops = append(u.Ops, &ledger.Op{Req: ledger.TransferRequest{FromAccountID: accounts[i%4], ToAccountID: accounts[(i+1)%4],
				Amount: int64(10 + i), Currency: "USD"}, Caller: caller, Scope: caller.Subject, Key: uuid.NewString(), Hash: []byte{1}, ID: uuid.NewString()})
		}
		if err := c.Submit(ctx, u); err != nil {
			t.Fatal(err)
		}
		for _, o := range u.Ops {
			if o.Res.Err != nil || o.Res.Transfer == nil || o.Res.Transfer.Status != ledger.TransferPosted {
				t.Fatalf("group %d: %+v", g, o.Res)
			}
		}
	}
	got := testenv.PreparedPlans(t, pool, "%new_transfers%", "%FROM accounts%FOR UPDATE%")
	if len(got) != 2 {
		t.Fatalf("the group's write and its accounts' lock among the prepared statements: %+v", got)
	}
	for _, p := range got {
		if p.Custom != 0 || p.Generic != groups {
			t.Errorf("%q over %d groups: %d custom plans, %d runs of the generic plan; want 0 and %d", p.Statement, groups, p.Custom, p.Generic, groups)
		}
	}
}

// oneConnectionCommitter runs a committer on a pool of one connection to a
// fresh database (tracer, when not nil, sees its statements), with four
// accounts of one customer that may go negative, until the test ends.
func oneConnectionCommitter(t *testing.T, tracer pgx.QueryTracer) (*pgxpool.Pool, *store.Committer, auth.Principal, []string) {
	t.Helper()
	pool := testenv.OneConnectionPool(t, tracer)
	const source = "/functions/process-transaction"
	user := uuid.NewString()
	accounts := make([]string, 4)
	for i := range accounts {
		accounts[i] = uuid.NewString()
		if _, err := pool.Exec(context.Background(), `INSERT INTO accounts (id, user_id, account_number, currency, allow_negative)
			VALUES ($1, $2, $3, 'USD', true)`, accounts[i], user, "RT-"+strings.ToUpper(accounts[i][:8])); err != nil {
			t.Fatal(err)
		}
	}
	c := store.NewCommitter(pool, outbox.Writer{Source: source, Signer: testenv.OriginSigner(source)}, time.Now, nil)
	run, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go c.Run(run)
	return pool, c, auth.Principal{Subject: user, Role: auth.RoleCustomer}, accounts
}

// A group's lookup of its own keys in the idempotency table is an index
// lookup of each key however the table grows after its plan was made. The
// generic plan is made once per connection, often on a near-empty table
// (a fresh deployment, and on a machine without autovacuum no ANALYZE
// ever makes it again): a join it planned then as a scan of every key of
// the last 24 hours (the created_at index) and a hash join cost the
// make bench run of 2026-12-07 07:26 UTC 2,411 µs of PostgreSQL per sync
// transfer after a day of business, against 200 before it.
func TestAGroupsOwnKeysAreLookedUpByIndexAsTheTableGrows(t *testing.T) {
	ctx := context.Background()
	pool, c, caller, accounts := oneConnectionCommitter(t, nil)
	group := func() {
		u := &ledger.Unit{Ops: []*ledger.Op{{Req: ledger.TransferRequest{FromAccountID: accounts[0], ToAccountID: accounts[1], Amount: 10, Currency: "USD"},
			Caller: caller, Scope: caller.Subject, Key: uuid.NewString(), Hash: []byte{1}, ID: uuid.NewString(), OwnKey: true}}}
		if err := c.Submit(ctx, u); err != nil || u.Ops[0].Res.Err != nil {
			t.Fatalf("%v %+v", err, u.Ops[0].Res)
		}
	}
	group() // planned now, on an empty idempotency table
	if _, err := pool.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, method, path, state, response_status)
		SELECT 'grown', g::text, '\x01', 'POST', '/accounts', 'done', 201 FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	group()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var name string
	if err := conn.QueryRow(ctx, `SELECT name FROM pg_prepared_statements WHERE statement LIKE '%FROM idempotency_keys%' AND generic_plans > 0`).Scan(&name); err != nil {
		t.Fatalf("the group's key lookup among the connection's prepared statements: %v", err)
	}
	// The plan the groups ran: the generic one, as GenericPlans asks.
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) EXECUTE `+pgx.Identifier{name}.Sanitize()+
		`('{grown}'::text[], '{77}'::text[], '24 hours'::interval)`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, "Index Scan using idempotency_keys_pkey") {
		t.Errorf("the key lookup does not go through the primary key:\n%s", plan)
	}
	for _, scan := range []string{"Hash Join", "Seq Scan on idempotency_keys", "idempotency_keys_created_at_idx"} {
		if strings.Contains(plan, scan) {
			t.Errorf("the key lookup reads the table beyond its keys (%s):\n%s", scan, plan)
		}
	}
}
