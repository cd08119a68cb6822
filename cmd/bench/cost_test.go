package main

import (
	"os"
	"testing"
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
