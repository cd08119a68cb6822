package main

import (
	"context"
	"os"
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
	want := procStat{Comm: "my (odd) proc", PPid: 1, Ticks: 1234 + 567}
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
