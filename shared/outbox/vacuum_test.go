package outbox_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

// passPages is how many pages of shared buffers a pass's SELECT of
// source's rows reads (EXPLAIN ANALYZE's, its second run: the first after
// a delete also marks the dead index entries it steps over).
func passPages(t *testing.T, pool *pgxpool.Pool, source string) int {
	t.Helper()
	var pages int
	for range 2 {
		var plan []struct {
			Plan struct {
				Hit  int `json:"Shared Hit Blocks"`
				Read int `json:"Shared Read Blocks"`
			}
		}
		var out []byte
		if err := pool.QueryRow(context.Background(), "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+outbox.PassSQL,
			source, 500).Scan(&out); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &plan); err != nil || len(plan) != 1 {
			t.Fatalf("EXPLAIN: %v %s", err, out)
		}
		pages = plan[0].Plan.Hit + plan[0].Plan.Read
	}
	return pages
}

// A pass reads its source's oldest rows by the primary key, and every row
// relayed before it leaves a dead entry there that only VACUUM removes:
// until then each pass steps over them all (before the publisher vacuumed,
// this test's pass read 183 pages, an empty outbox's 2). The publisher
// vacuums the outbox every few thousand rows it deletes, so a pass stays
// as cheap whatever autovacuum does (this machine's PostgreSQL runs
// without it; elsewhere it looks at a database once a minute).
func TestTheRelayKeepsTheOutboxLean(t *testing.T) {
	ctx := context.Background()
	pool := testenv.FreshPool(t)
	_, brokers := testenv.Kafka(t)
	source := "lean-" + uuid.NewString()[:8]
	pub := outbox.NewPublisher(pool, source, brokers)
	empty := passPages(t, pool, source)
	const rows = 40000
	for sent := 0; sent < rows; sent += 2000 {
		write(t, pool, source, 2000)
		if n, err := pub.Sweep(ctx); err != nil || n != 2000 {
			t.Fatalf("sweep: %d %v", n, err)
		}
	}
	outbox.Vacuumed(pub)
	// Fewer dead entries than one vacuum interval's: some 200 fit on an
	// index page, and a pass reads the table's root and a leaf besides.
	limit := empty + outbox.VacuumEvery/200 + 4
	got := passPages(t, pool, source)
	t.Logf("after %d rows relayed a pass reads %d pages, an empty outbox's %d", rows, got, empty)
	// A transaction open elsewhere on the server, in any database (another
	// test package's, beside this one in make test), holds back what a
	// VACUUM may remove: a session holding its transaction id in database
	// postgres made this test read 100 pages. The vacuums then ran but
	// removed nothing; relay more intervals, whose vacuums find the horizon
	// free once that transaction ends, as a publisher's next ones would.
	for try := 0; got > limit && try < 20; try++ {
		sent := 0
		for ; sent < outbox.VacuumEvery; sent += 2000 {
			write(t, pool, source, 2000)
			if n, err := pub.Sweep(ctx); err != nil || n != 2000 {
				t.Fatalf("sweep: %d %v", n, err)
			}
		}
		outbox.Vacuumed(pub)
		got = passPages(t, pool, source)
		t.Logf("another %d rows relayed: a pass reads %d pages", sent, got)
	}
	pub.Close(ctx)
	if got > limit {
		t.Fatalf("after %d rows relayed a pass reads %d pages, an empty outbox's %d: want at most %d", rows, got, empty, limit)
	}
}
