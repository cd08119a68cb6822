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

// dirty writes rows of database url that fill about n pages.
func dirty(t *testing.T, url string, n int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// 1,000-byte rows: 8 to a page.
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS dirt (v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO dirt SELECT repeat('x', 1000) FROM generate_series(1, $1)", 8*n); err != nil {
		t.Fatal(err)
	}
}

// A window starts right after a CHECKPOINT, so that the pages dirtied before
// it are not written in it, and ends with one inside it, so that those it
// dirtied are; no timed checkpoint falls into it.
func TestAWindowPaysForThePagesItDirtiedAndOnlyThose(t *testing.T) {
	url := testenv.FreshDatabase(t, false)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const pages = 2000 // 16 MB, an eighth of shared_buffers here
	window := func(work func()) *cost {
		m := beginCost(ctx, classifier{db: cfg.Database})
		work()
		m.endCPU(ctx, 0)
		c := m.endPG(ctx, 0, nil)
		if c.Err != "" {
			t.Fatal(c.Err)
		}
		if c.CheckpointsTimed != 0 || c.CheckpointsReq < 1 {
			t.Fatalf("checkpoints in the window: %d timed, %d requested; want none timed and the window's own", c.CheckpointsTimed, c.CheckpointsReq)
		}
		return c
	}

	dirty(t, url, pages)
	if c := window(func() {}); c.BuffersCheckpoint >= pages {
		t.Errorf("an idle window's checkpoint wrote %d buffers: it paid for the %d pages dirtied before it", c.BuffersCheckpoint, pages)
	}
	c := window(func() { dirty(t, url, pages) })
	// The background writer may write some of them first; the window's
	// checkpoint writes the rest.
	if c.BuffersCheckpoint == 0 {
		t.Errorf("the window's checkpoint wrote no buffers, though it dirtied %d pages", pages)
	}
	if c.XIDs < 1 {
		t.Errorf("%d transaction ids assigned in a window that wrote", c.XIDs)
	}
}
