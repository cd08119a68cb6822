package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/testenv"
	"github.com/jackc/pgx/v5"
)

// statFile is parseStat of the file at path, failing the test on any error.
func statFile(t *testing.T, path string) procStat {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestParseStatCountsFieldsFromTheLastParenthesis(t *testing.T) {
	st := statFile(t, "testdata/stat-odd-comm")
	want := procStat{Comm: "my (odd) proc", PPid: 1, Ticks: 1234 + 567, MinorFaults: 120}
	if st != want {
		t.Fatalf("parseStat = %+v, want %+v", st, want)
	}
}

func TestParseStatReadsARealProcessLine(t *testing.T) {
	// A PostgreSQL WAL writer's stat, copied from /proc.
	st := statFile(t, "testdata/stat-walwriter")
	if st.Comm != "postgres" || st.PPid != 2216 || st.Ticks != 53+165 {
		t.Fatalf("parseStat = %+v", st)
	}
}

func TestParseStatRejectsTruncatedLines(t *testing.T) {
	for _, s := range []string{"", "12 (x S 1 2", "12 x) S 1 2", "12 (x) S 1 2 3"} {
		if _, err := parseStat([]byte(s)); err == nil {
			t.Errorf("parseStat(%q) succeeded", s)
		}
	}
}

func TestParseStatOfThisProcess(t *testing.T) {
	st := statFile(t, "/proc/self/stat")
	if st.PPid != os.Getppid() {
		t.Fatalf("ppid %d, want %d", st.PPid, os.Getppid())
	}
}

func TestPgGroupTellsBackendsOfTheDatabaseFromTheServerAndOthers(t *testing.T) {
	const db = "billfn_bench"
	for _, c := range []struct {
		cmdline, want string
		known         bool
	}{
		{"postgres: 15/main: postgres billfn_bench 127.0.0.1(36152) idle\x00", groupBackends(db), true},
		{"postgres: postgres billfn_bench [local] INSERT", groupBackends(db), true},
		{"postgres: 15/main: postgres billfn_bench_2 127.0.0.1(1) idle", "", true},
		{"postgres: 15/main: postgres billfn_test_1 127.0.0.1(2) idle", "", true},
		{"postgres: 15/main: walwriter ", groupPGServer, true},
		{"postgres: 15/main: checkpointer ", groupPGServer, true},
		{"postgres: background writer", groupPGServer, true},
		{"/usr/lib/postgresql/15/bin/postgres\x00-D\x00/var/lib/postgresql/15/main\x00", groupPGServer, true},
		{"/usr/lib/postgresql/15/bin/postgres\x00", "", false},
	} {
		got, known := pgGroup(c.cmdline, db)
		if got != c.want || known != c.known {
			t.Errorf("pgGroup(%q) = %q, %v; want %q, %v", c.cmdline, got, known, c.want, c.known)
		}
	}
}

// A process outside the stack that a scenario names (the tracing runs'
// Jaeger) counts in its own group; without the name it is not counted.
func TestClassifierCountsTheScenariosExtraProcesses(t *testing.T) {
	st := statFile(t, "/proc/self/stat")
	pid := os.Getpid()
	if g, ok := (classifier{extra: map[int]string{pid: groupJaeger}}).classify(pid, st); g != groupJaeger || !ok {
		t.Errorf("classify with extra = %q, %v; want %q", g, ok, groupJaeger)
	}
	if g, ok := (classifier{}).classify(pid, st); g != "" || !ok {
		t.Errorf("classify without extra = %q, %v; want not counted", g, ok)
	}
}

// dirty writes rows of the test database that fill about n pages of
// table dirt (autovacuum off: nothing but these inserts dirties it).
func dirty(t *testing.T, conn *pgx.Conn, n int) {
	t.Helper()
	// 1,000-byte rows: 8 to a page.
	if _, err := conn.Exec(context.Background(), "INSERT INTO dirt SELECT repeat('x', 1000) FROM generate_series(1, $1)", 8*n); err != nil {
		t.Fatal(err)
	}
}

// dirtyBuffers is how many of table dirt's pages in shared buffers are
// dirty (not yet written), from pg_buffercache: this test's table alone,
// whatever else the server writes.
func dirtyBuffers(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_buffercache WHERE isdirty AND relfilenode = pg_relation_filenode('dirt') "+
		"AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A window starts right after a CHECKPOINT, so that the pages dirtied before
// it are not written in it, and ends with one inside it, so that those it
// dirtied are; no timed checkpoint falls into it.
func TestAWindowPaysForThePagesItDirtiedAndOnlyThose(t *testing.T) {
	url := testenv.FreshDatabase(t, false)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION pg_buffercache"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE dirt (v text) WITH (autovacuum_enabled = off)"); err != nil {
		t.Fatal(err)
	}
	const pages = 2000 // 16 MB, an eighth of shared_buffers here
	check := func(c *cost) {
		t.Helper()
		if c.Err != "" {
			t.Fatal(c.Err)
		}
		if c.CheckpointsTimed != 0 || c.CheckpointsReq < 1 {
			t.Fatalf("checkpoints in the window: %d timed, %d requested; want none timed and the window's own", c.CheckpointsTimed, c.CheckpointsReq)
		}
	}

	dirty(t, conn, pages)
	m := beginCost(ctx, classifier{db: conn.Config().Database})
	if n := dirtyBuffers(t, conn); n != 0 {
		t.Errorf("%d of the %d pages dirtied before the window are still dirty in it: the window would pay for writing them", n, pages)
	}
	dirty(t, conn, pages)
	m.endCPU(ctx, 0)
	c := m.endPG(ctx, 0, nil)
	check(c)
	if n := dirtyBuffers(t, conn); n != 0 {
		t.Errorf("%d of the %d pages the window dirtied are still dirty after it: a later window would pay for writing them", n, pages)
	}
	if c.BuffersCheckpoint == 0 || c.XIDs < 1 {
		t.Errorf("the window's checkpoint wrote %d buffers and %d transaction ids were assigned, though it wrote %d pages", c.BuffersCheckpoint, c.XIDs, pages)
	}
}

func TestParseTablesReadsPsqlsLines(t *testing.T) {
	got, err := parseTables([]byte("public.payments\t10\t20\t5\t1\t4\t1\t0\nbillfn.outbox\t3\t0\t0\t3\t2\t0\t0\npublic.processed_events\t4\t0\t0\t0\t2\t0\t1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]tableRows{
		"public.payments":         {Ins: 10, Upd: 20, HOT: 5, Del: 1, Indexes: 4, Partial: 1},
		"billfn.outbox":           {Ins: 3, Del: 3, Indexes: 2},
		"public.processed_events": {Ins: 4, Indexes: 2, BRIN: 1},
	}
	if len(got) != len(want) || got["public.payments"] != want["public.payments"] || got["billfn.outbox"] != want["billfn.outbox"] ||
		got["public.processed_events"] != want["public.processed_events"] {
		t.Fatalf("parseTables = %+v, want %+v", got, want)
	}
	if got := got["public.payments"].IndexEntries(); got != (10+20-5)*3 {
		t.Errorf("IndexEntries = %d, want %d (the 3 full indexes)", got, (10+20-5)*3)
	}
	if got := got["public.processed_events"].IndexEntries(); got != 4 {
		t.Errorf("IndexEntries = %d, want 4 (a BRIN index holds no entry per row)", got)
	}
	for _, s := range []string{"public.t\t1\t2\t3\t4\t0\t0", "public.t\t1\t2\tx\t4\t5\t0\t0"} {
		if _, err := parseTables([]byte(s)); err == nil {
			t.Errorf("parseTables(%q) succeeded", s)
		}
	}
}

// A window's rows are the difference of the counters, less what the idle
// stack writes in the seconds read after it; tables it did not write are
// left out.
func TestTablesWrittenTakesOffIdleAndLeavesOutUntouchedTables(t *testing.T) {
	before := map[string]tableRows{"a": {Ins: 5, Upd: 5, HOT: 1, Indexes: 2}, "b": {Ins: 7, Indexes: 1}}
	after := map[string]tableRows{"a": {Ins: 105, Upd: 25, HOT: 11, Del: 3, Indexes: 2}, "b": {Ins: 7, Indexes: 1}, "c": {Ins: 4, Indexes: 3}}
	idle := map[string]tableRows{"a": {Ins: 20}, "c": {Ins: 100}}
	got := tablesWritten(before, after, idle, 0.5)
	want := map[string]tableRows{"a": {Ins: 90, Upd: 20, HOT: 10, Del: 3, Indexes: 2}}
	if len(got) != len(want) || got["a"] != want["a"] {
		t.Fatalf("tablesWritten = %+v, want %+v (b untouched, c all idle)", got, want)
	}
}

// The rows a window reports are those written in it, read from the real
// PostgreSQL: inserted, updated (a HOT update and one of an indexed column)
// and deleted, and the index entries they added.
func TestAWindowCountsTheRowsItWrote(t *testing.T) {
	url := testenv.FreshDatabase(t, false)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	db := conn.Config().Database
	conn.Close(ctx)
	psql := func(sql string) {
		t.Helper()
		// A session of its own: its statistics are reported when it ends.
		if out, err := exec.Command("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qc", sql).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", sql, err, out)
		}
	}
	psql("CREATE TABLE before_window (id int PRIMARY KEY); INSERT INTO before_window VALUES (1), (2)")
	m := beginCost(ctx, classifier{db: db})
	psql("CREATE TABLE w (id int PRIMARY KEY, v text); CREATE INDEX ON w (v); CREATE INDEX ON w (id) WHERE v = 'none'; CREATE INDEX ON w USING brin (id); INSERT INTO w VALUES (1, 'a'), (2, 'b'), (3, 'c'); " +
		"UPDATE w SET id = 10 WHERE id = 1; UPDATE w SET v = 'x' WHERE id = 2; DELETE FROM w WHERE id = 3; " +
		"CREATE TABLE h (id int PRIMARY KEY, n int); INSERT INTO h VALUES (1, 0); UPDATE h SET n = 1")
	m.endCPU(ctx, 0)
	c := m.endPG(ctx, 0, nil)
	if c.Err != "" {
		t.Fatal(c.Err)
	}
	want := map[string]tableRows{
		"public.w": {Ins: 3, Upd: 2, Del: 1, Indexes: 4, Partial: 1, BRIN: 1},
		"public.h": {Ins: 1, Upd: 1, HOT: 1, Indexes: 1},
	}
	if len(c.Rows) != len(want) || c.Rows["public.w"] != want["public.w"] || c.Rows["public.h"] != want["public.h"] {
		t.Fatalf("rows written in the window = %+v, want %+v (before_window written before it)", c.Rows, want)
	}
	if got := c.Rows["public.w"].IndexEntries(); got != 3*2+2*2 {
		t.Errorf("index entries of w = %d, want %d", got, 3*2+2*2)
	}
}

// Tables written less than once in 200 operations are left out of the
// table, not of its total; the most index entries come first.
func TestRenderRowsShowsTheTablesThatCountAndTotalsAll(t *testing.T) {
	var b strings.Builder
	renderRows(&b, map[string]tableRows{
		"s.few":   {Ins: 2, Indexes: 1},                                            // 0.002 per op: left out
		"s.small": {Ins: 1000, Indexes: 1},                                         // 1,000 entries
		"s.big":   {Ins: 1000, Upd: 2000, HOT: 0, Indexes: 5, Partial: 1, BRIN: 1}, // 9,000 entries in the full b-trees
	}, 1000)
	out := b.String()
	if strings.Contains(out, "s.few") {
		t.Errorf("a table written twice in 1,000 operations is listed:\n%s", out)
	}
	big, small := strings.Index(out, "| s.big | 5 (1 partial, 1 BRIN) | 1.00 | 2.00 | 0.00 | 0.00 | 9.00 |"), strings.Index(out, "| s.small | 1 | 1.00 |")
	if big < 0 || small < 0 || big > small {
		t.Errorf("want s.big (9 entries per op) before s.small (1):\n%s", out)
	}
	if !strings.Contains(out, "| **all tables** | | **2.00** | **2.00** | **0.00** | **0.00** | **10.00** |") {
		t.Errorf("the total leaves out a table or miscounts:\n%s", out)
	}
	b.Reset()
	renderRows(&b, nil, 10)
	if b.Len() != 0 {
		t.Errorf("no rows counted (a pooled run) wrote %q", b.String())
	}
}
