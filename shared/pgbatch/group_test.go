package pgbatch_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/testenv"
)

// groupRig is a table of deliveries (id unique) and their outbox rows,
// each row with the transaction that wrote it.
func groupRig(t *testing.T) (*pgxpool.Pool, context.Context) {
	t.Helper()
	pool := testenv.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS grp_d, grp_o, grp_gate;
		CREATE TABLE grp_d (id int PRIMARY KEY, xid bigint NOT NULL DEFAULT txid_current());
		CREATE TABLE grp_o (id int PRIMARY KEY, xid bigint NOT NULL DEFAULT txid_current());
		CREATE TABLE grp_gate (id int PRIMARY KEY); INSERT INTO grp_gate VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	return pool, ctx
}

// delivery is a write as handle-webhook's: the guard inserts the delivery
// unless it exists, the rest writes its outbox row (outboxID).
func delivery(id, outboxID int, inserted *int) pgbatch.Write {
	rest := &pgx.Batch{}
	rest.Queue(`INSERT INTO grp_o (id) VALUES ($1)`, outboxID)
	return pgbatch.Write{Guard: pgbatch.Guard{
		SQL:  `WITH ins AS (INSERT INTO grp_d (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*)::int FROM ins`,
		Args: []any{id}, Dest: []any{inserted}, Proceed: func() bool { return *inserted == 1 },
	}, Rest: rest}
}

// heldGroup runs writes through g while its first group is held on a row
// lock, so the others queue and commit together in the next group. It
// returns each write's outcome.
func heldGroup(t *testing.T, pool *pgxpool.Pool, g *pgbatch.Group, first pgbatch.Write, writes []pgbatch.Write) ([]bool, []error) {
	t.Helper()
	ctx := context.Background()
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT 1 FROM grp_gate WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// The first write waits for the gate inside its group's transaction.
	first.Guard = pgbatch.Guard{SQL: `SELECT id FROM grp_gate WHERE id = 1 FOR UPDATE`,
		Args: nil, Dest: []any{new(int)}, Proceed: func() bool { return true }}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := g.Do(ctx, first); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, func() bool { // first's group waits for the gate
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n == 1
	})
	oks, errs := make([]bool, len(writes)), make([]error, len(writes))
	for i, w := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			oks[i], errs[i] = g.Do(ctx, w)
		}()
	}
	waitFor(t, func() bool { return g.Queued() == len(writes) })
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	return oks, errs
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the group never reached the expected state")
		}
	}
}

func TestGroupCommitsConcurrentWritesInOneTransaction(t *testing.T) {
	pool, ctx := groupRig(t)
	g := pgbatch.NewGroup(pool, "test")
	defer g.Close()
	n := 10
	ins := make([]int, n+1)
	var writes []pgbatch.Write
	for i := 1; i <= n; i++ {
		writes = append(writes, delivery(i, i, &ins[i]))
	}
	var dup int
	writes = append(writes, delivery(3, 1003, &dup))
	oks, errs := heldGroup(t, pool, g, delivery(0, 0, &ins[0]), writes)
	// The same delivery twice in one group: whichever came second is a
	// duplicate (callers queue in no set order).
	if oks[2] == oks[n] || errs[2] != nil || errs[n] != nil {
		t.Fatalf("delivery 3 twice: ok=%v,%v err=%v,%v, want one written and one duplicate", oks[2], oks[n], errs[2], errs[n])
	}
	for i := range n {
		if i == 2 {
			continue
		}
		if errs[i] != nil || !oks[i] {
			t.Fatalf("write %d: ok=%v err=%v", i+1, oks[i], errs[i])
		}
	}
	var rows, outbox, xids int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM grp_d WHERE id > 0), (SELECT count(*) FROM grp_o WHERE id > 0),
		(SELECT count(DISTINCT xid) FROM (SELECT xid FROM grp_d WHERE id > 0 UNION ALL SELECT xid FROM grp_o WHERE id > 0) x)`).
		Scan(&rows, &outbox, &xids); err != nil {
		t.Fatal(err)
	}
	if rows != n || outbox != n || xids != 1 {
		t.Fatalf("%d deliveries, %d outbox rows in %d transactions: want %d, %d in 1", rows, outbox, xids, n, n)
	}
}

func TestGroupFailingWriteFailsOnlyItsCaller(t *testing.T) {
	pool, ctx := groupRig(t)
	g := pgbatch.NewGroup(pool, "test")
	defer g.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO grp_o (id) VALUES (999)`); err != nil {
		t.Fatal(err)
	}
	ins := make([]int, 6)
	var writes []pgbatch.Write
	for i := 1; i <= 5; i++ {
		o := i
		if i == 3 {
			o = 999 // its outbox row exists: the rest fails
		}
		writes = append(writes, delivery(i, o, &ins[i]))
	}
	// A write without a guard, in the same group.
	plain := &pgx.Batch{}
	plain.Queue(`INSERT INTO grp_o (id) VALUES (50)`)
	writes = append(writes, pgbatch.Write{Rest: plain})
	var first int
	oks, errs := heldGroup(t, pool, g, delivery(0, 0, &first), writes)
	for i, err := range errs {
		if i == 2 {
			if err == nil || oks[i] {
				t.Fatalf("the failing write: ok=%v err=%v, want an error", oks[i], err)
			}
			continue
		}
		if err != nil || !oks[i] {
			t.Fatalf("write %d: ok=%v err=%v", i+1, oks[i], err)
		}
	}
	var got []int
	rows, _ := pool.Query(ctx, `SELECT id FROM grp_d WHERE id > 0 ORDER BY id`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 2 4 5]" {
		t.Fatalf("deliveries %v: want [1 2 4 5] (nothing of the failing one)", got)
	}
	var plainRow int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM grp_o WHERE id = 50`).Scan(&plainRow)
	if plainRow != 1 {
		t.Fatal("the unguarded write was lost")
	}
}

func TestAsyncGroupWritesAndAnswersAlone(t *testing.T) {
	pool, ctx := groupRig(t)
	g := pgbatch.NewAsyncGroup(pool, "test")
	defer g.Close()
	var ins int
	ok, err := g.Do(ctx, delivery(7, 7, &ins))
	if err != nil || !ok {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	ok, err = g.Do(ctx, delivery(7, 8, &ins))
	if err != nil || ok {
		t.Fatalf("a redelivery: ok=%v err=%v, want false nil", ok, err)
	}
	var n int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM grp_o`).Scan(&n)
	if n != 1 {
		t.Fatalf("%d outbox rows, want 1", n)
	}
	var sc string
	_ = pool.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&sc)
	if sc != "on" {
		t.Fatalf("synchronous_commit %s after an async group: it must stay local to its transaction", sc)
	}
}

// The events a group's writes left unsigned are signed together before the
// group runs, once: what each write commits verifies, the events of the
// group share one signature, and when a failing write splits the group,
// the writes run again alone with what they were signed with.
func TestGroupSignsItsWritesEventsTogether(t *testing.T) {
	pool, ctx := groupRig(t)
	if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS grp_e; CREATE TABLE grp_e (id int PRIMARY KEY, payload bytea NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	signer := testenv.OriginSigner(events.Source("handle-webhook"))
	write := func(id int) pgbatch.Write {
		_, p, msg, err := events.EncodeLater("", "", "handle-webhook", "billfn.payment.gateway_updated", fmt.Sprint(id), map[string]any{"n": id})
		if err != nil {
			t.Fatal(err)
		}
		payloads := [][]byte{p}
		u := signer.Unsigned(payloads)
		u.Add(0, msg)
		rest := &pgx.Batch{}
		rest.Queue(`INSERT INTO grp_e (id, payload) SELECT $1, p FROM unnest($2::bytea[]) AS x(p)`, id, payloads)
		return pgbatch.Write{Rest: rest, Events: []*events.Unsigned{u}}
	}
	for _, split := range []bool{false, true} {
		if _, err := pool.Exec(ctx, `TRUNCATE grp_e`); err != nil {
			t.Fatal(err)
		}
		g := pgbatch.NewGroup(pool, "test")
		var writes []pgbatch.Write
		for id := 1; id <= 5; id++ {
			writes = append(writes, write(id))
		}
		if split { // a sixth write whose id is another's: it fails, and the group splits
			writes = append(writes, write(3))
		}
		_, errs := heldGroup(t, pool, g, write(100), writes)
		g.Close()
		failed := 0
		for _, err := range errs {
			if err != nil {
				failed++
			}
		}
		if want := map[bool]int{false: 0, true: 1}[split]; failed != want {
			t.Fatalf("split=%v: %d writes failed, want %d: %v", split, failed, want, errs)
		}
		rows, err := pool.Query(ctx, `SELECT payload FROM grp_e WHERE id < 100 ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		payloads, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatal(err)
		}
		sigs := map[string]bool{}
		for _, p := range payloads {
			ev, err := events.Unmarshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := testenv.OriginKeys().Verify(ev); err != nil {
				t.Fatalf("split=%v: a committed event does not verify: %v", split, err)
			}
			sig, _ := ev.Extensions()[events.OriginSigExt].(string)
			sigs[sig] = true
		}
		if len(payloads) != 5 || len(sigs) != 1 {
			t.Errorf("split=%v: %d events committed under %d signatures, want 5 under 1", split, len(payloads), len(sigs))
		}
	}
}
