package main

// The cost of each operation: CPU time of every process of the stack from
// /proc/<pid>/stat, and PostgreSQL's commits and WAL bytes, over exactly
// the timed phase of a scenario (loadgen -sync) and pgbench's run.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every
// Linux architecture Go builds for (the kernel hides its own HZ behind it).
const clockTicks = 100

// procStat is what /proc/<pid>/stat says of a process's CPU.
type procStat struct {
	Comm  string
	PPid  int
	Ticks int64 // utime + stime
	// MinorFaults are the page faults served without I/O: first touches of
	// memory, copies on write after a fork, pages mapped from the page
	// cache (the code of a program that runs for the first time).
	MinorFaults int64
}

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat reads /proc/<pid>/stat. The command name is in parentheses and
// may hold spaces and parentheses itself, so the fields are counted from
// the last ')'.
func parseStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("no (comm) in stat")
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state): ppid is field 4, minflt 10, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat has %d fields after comm, want ≥ 13", len(f))
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	return procStat{Comm: string(b[open+1 : end]), PPid: int(n(1)), Ticks: n(11) + n(12), MinorFaults: n(7)}, nil
}

// Process groups of the cost table, besides the functions (by name).
const (
	groupStack    = "stack (gateway, kfake)"
	groupPGServer = "postgres server processes"
	groupRedis    = "redis"
	groupClient   = "the client (loadgen, pgbench)"
	groupJaeger   = "jaeger (trace collector)"
)

func groupBackends(db string) string { return "postgres backends (" + db + ")" }

// pgBackground are the titles of PostgreSQL's own processes.
var pgBackground = []string{"checkpointer", "background writer", "walwriter", "autovacuum launcher", "logical replication launcher", "archiver", "stats collector", "walsender", "walreceiver"}

// classifier says which group a process belongs to ("" = not counted, ok
// false = cannot tell yet: a PostgreSQL backend before its title is set).
type classifier struct {
	stackPid  int
	marker    string // BILLFN_STACK_ID of the stack's children
	db        string // the database whose backends count
	clientPid int
	// extra are processes outside the stack that a scenario's work costs
	// and that share its cores (the tracing runs' Jaeger), by pid: their
	// group.
	extra map[int]string
	// statements: a window also reads db's statements from
	// pg_stat_statements (enableStatements said it answers).
	statements bool
}

func (c classifier) classify(pid int, st procStat) (group string, ok bool) {
	switch {
	case pid == c.stackPid:
		return groupStack, true
	case pid == c.clientPid:
		return groupClient, true
	case c.extra[pid] != "":
		return c.extra[pid], true
	case st.Comm == "redis-server":
		return groupRedis, true
	case st.Comm == "postgres":
		cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			return "", false
		}
		return pgGroup(string(cmd), c.db)
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err == nil && c.marker != "" && bytes.Contains(env, []byte("\x00BILLFN_STACK_ID="+c.marker+"\x00")) {
		if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil {
			return filepath.Base(exe), true
		}
	}
	return "", true
}

// pgGroup classifies a PostgreSQL process by its /proc cmdline: a backend
// of db, one of the server's own processes, another database's backend
// (""), or not yet known (a backend just forked, before its title is set).
func pgGroup(cmdline, db string) (string, bool) {
	title, isTitle := strings.CutPrefix(strings.TrimRight(strings.ReplaceAll(cmdline, "\x00", " "), " "), "postgres: ")
	if !isTitle {
		if strings.Contains(cmdline, "\x00-D\x00") {
			return groupPGServer, true // the postmaster
		}
		return "", false
	}
	if strings.Contains(title+" ", " "+db+" ") {
		return groupBackends(db), true
	}
	for _, bg := range pgBackground {
		if strings.HasSuffix(title, ": "+bg) || title == bg {
			return groupPGServer, true
		}
	}
	return "", true
}

// cpuWindow follows the processes of the groups from begin to end: /proc is
// scanned every 200 ms so that a process which starts counts from its
// start and one which exits counts up to its last sample.
type cpuWindow struct {
	c       classifier
	mu      sync.Mutex
	tracks  map[int]*track
	ignored map[int]bool
	stop    chan struct{}
	done    chan struct{}
	start   time.Time
	elapsed time.Duration
}

type track struct {
	group       string
	first, last int64
}

func startCPU(c classifier) *cpuWindow {
	w := &cpuWindow{c: c, tracks: map[int]*track{}, ignored: map[int]bool{}, stop: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	w.scan(true)
	go func() {
		defer close(w.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.scan(false)
			}
		}
	}()
	return w
}

func (w *cpuWindow) scan(initial bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || w.ignored[pid] {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		st, err := parseStat(b)
		if err != nil {
			continue
		}
		ticks := st.Ticks
		if t := w.tracks[pid]; t != nil {
			t.last = ticks
			continue
		}
		group, ok := w.c.classify(pid, st)
		if !ok {
			continue
		}
		if group == "" {
			w.ignored[pid] = true
			continue
		}
		t := &track{group: group, last: ticks}
		if initial {
			t.first = ticks // a process started later counts from 0
		}
		w.tracks[pid] = t
	}
}

// sample reads the processes now.
func (w *cpuWindow) sample() { w.scan(false) }

// busy is the CPU time of the stack's groups (not Redis, the PostgreSQL
// server or the client, which others share) so far.
func (w *cpuWindow) busy() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ticks int64
	for _, t := range w.tracks {
		if t.group != groupRedis && t.group != groupPGServer && t.group != groupClient {
			ticks += t.last - t.first
		}
	}
	return ticksDur(ticks)
}

// end stops following and returns the CPU time of each group.
func (w *cpuWindow) end() map[string]time.Duration {
	w.scan(false)
	close(w.stop)
	<-w.done
	w.elapsed = time.Since(w.start)
	out := map[string]time.Duration{}
	for _, t := range w.tracks {
		out[t.group] += ticksDur(t.last - t.first)
	}
	return out
}

func ticksDur(ticks int64) time.Duration { return time.Duration(ticks) * time.Second / clockTicks }

// settle waits, after the timed phase, until the stack has finished the
// work the operations left behind (outbox relays, consumers): until it uses
// less than 5 % of a core over 400 ms, for at most limit.
func (w *cpuWindow) settle(ctx context.Context, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit && ctx.Err() == nil {
		before := w.busy()
		time.Sleep(400 * time.Millisecond)
		w.scan(false)
		if w.busy()-before < 20*time.Millisecond {
			break
		}
	}
	return time.Since(start)
}

// pgCounters are PostgreSQL's cumulative counters a window subtracts.
type pgCounters struct {
	Commits  int64 // pg_stat_database.xact_commit of the database
	WALBytes int64 // pg_stat_wal.wal_bytes, the whole server
	// The checkpoints so far (pg_stat_bgwriter, the whole server): timed
	// (checkpoint_timeout) and requested (CHECKPOINT, max_wal_size), and
	// the buffers they wrote.
	CheckpointsTimed, CheckpointsReq, BuffersCheckpoint int64
	// XIDs is the next transaction id to be assigned (the whole server):
	// the ids assigned in a window are its transactions that wrote.
	XIDs int64
	// Tables are the database's tables (schema.name), from
	// pg_stat_user_tables; read when a window begins and by endPG (not by
	// endCPU, before the backends have reported).
	Tables map[string]tableRows
}

// tableRows is what pg_stat_user_tables counts of a table's rows: inserted,
// updated (of which HOT: the new version on the same page, no index
// touched) and deleted, with the number of the table's indexes.
type tableRows struct {
	Ins, Upd, HOT, Del int64
	Indexes, Partial   int64 // the table's indexes, and how many of them are partial
	BRIN               int64 // how many are BRIN: a summary per range of pages, not an entry per row
}

// IndexEntries is how many entries the rows written add to the table's
// full indexes: each inserted row and each update that is not HOT puts a
// new entry into every one of them. A partial index gets one only when the
// row matches its predicate, which the counters do not say: its entries
// are left out, so this is a lower bound where a table has partial indexes.
// A BRIN index holds a summary per range of pages, changed only when a row
// widens a summarised range's: it is left out too.
func (t tableRows) IndexEntries() int64 {
	return (t.Ins + t.Upd - t.HOT) * (t.Indexes - t.Partial - t.BRIN)
}

// tablesQuery reads every table of the database the query runs in, one per
// line, the fields tab-separated.
const tablesQuery = `SELECT s.schemaname || '.' || s.relname, s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del,
	(SELECT count(*) FROM pg_index i WHERE i.indrelid = s.relid), (SELECT count(*) FROM pg_index i WHERE i.indrelid = s.relid AND i.indpred IS NOT NULL),
	(SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
		WHERE i.indrelid = s.relid AND i.indpred IS NULL AND a.amname = 'brin')
	FROM pg_stat_user_tables s`

// readTables is tablesQuery in db.
func readTables(ctx context.Context, db string) (map[string]tableRows, error) {
	out, err := psql(ctx, db, "-AtF", "\t", "-c", tablesQuery).Output()
	if err != nil {
		return nil, fmt.Errorf("reading pg_stat_user_tables of %s: %w", db, err)
	}
	return parseTables(out)
}

// parseTables reads tablesQuery's output.
func parseTables(out []byte) (map[string]tableRows, error) {
	tables := map[string]tableRows{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 8 {
			return nil, fmt.Errorf("pg_stat_user_tables line %q: %d fields, want 8", line, len(f))
		}
		var n [7]int64
		for i := range n {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("pg_stat_user_tables line %q: %w", line, err)
			}
			n[i] = v
		}
		tables[f[0]] = tableRows{Ins: n[0], Upd: n[1], HOT: n[2], Del: n[3], Indexes: n[4], Partial: n[5], BRIN: n[6]}
	}
	return tables, nil
}

// tablesWritten is what was written to each table between before and
// after, less idle's rows scaled by extra (the idle stack's writes in the
// seconds read after the window), each figure at least 0; tables nothing
// was written to are left out.
func tablesWritten(before, after map[string]tableRows, idle map[string]tableRows, extra float64) map[string]tableRows {
	out := map[string]tableRows{}
	less := func(v, idle int64) int64 { return max(0, v-int64(float64(idle)*extra+0.5)) }
	for name, a := range after {
		b, i := before[name], idle[name]
		w := tableRows{Ins: less(a.Ins-b.Ins, i.Ins), Upd: less(a.Upd-b.Upd, i.Upd), HOT: less(a.HOT-b.HOT, i.HOT), Del: less(a.Del-b.Del, i.Del), Indexes: a.Indexes, Partial: a.Partial, BRIN: a.BRIN}
		w.HOT = min(w.HOT, w.Upd)
		if w.Ins+w.Upd+w.Del > 0 {
			out[name] = w
		}
	}
	return out
}

func readPG(ctx context.Context, db string) (pgCounters, error) {
	q := fmt.Sprintf("SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = '%s'), (SELECT wal_bytes FROM pg_stat_wal), "+
		"checkpoints_timed, checkpoints_req, buffers_checkpoint, pg_snapshot_xmax(pg_current_snapshot()) FROM pg_stat_bgwriter", db)
	out, err := psql(ctx, "postgres", "-AtF", " ", "-c", q).Output()
	if err != nil {
		return pgCounters{}, fmt.Errorf("reading pg_stat_database, pg_stat_wal and pg_stat_bgwriter: %w", err)
	}
	var c pgCounters
	if _, err := fmt.Sscan(string(out), &c.Commits, &c.WALBytes, &c.CheckpointsTimed, &c.CheckpointsReq, &c.BuffersCheckpoint, &c.XIDs); err != nil {
		return pgCounters{}, fmt.Errorf("pg_stat counters %q: %w", out, err)
	}
	return c, nil
}

// psql is psql on the bench's PostgreSQL (127.0.0.1, superuser postgres)
// in database db, with args.
func psql(ctx context.Context, db string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "psql", append([]string{"-h", "127.0.0.1", "-U", "postgres", "-d", db}, args...)...)
}

// checkpoint runs CHECKPOINT, which returns once every page dirtied so far
// is written, and restarts checkpoint_timeout's timer. A window begins
// right after one, so that it does not pay for pages earlier work dirtied,
// and ends with one, so that it pays for those it dirtied itself: without
// them a timed checkpoint (every 5 minutes) falls into whichever window is
// going on and bills it for the pages of the windows before.
func checkpoint(ctx context.Context) error {
	if err := psql(ctx, "postgres", "-qc", "CHECKPOINT").Run(); err != nil {
		return fmt.Errorf("CHECKPOINT: %w", err)
	}
	return nil
}

// settleLimit bounds the wait, after a scenario's last operation, for the
// work it left behind (emails, deliveries, consumers) to finish: 20,000
// invoices finalized by batches leave minutes of e-mails.
const settleLimit = 4 * time.Minute

// drain waits, untimed, until the stack's processes are quiet (less than
// 5 % of a core over 400 ms, at most settleLimit), and says so when that
// took a while.
func drain(ctx context.Context, c classifier) {
	w := startCPU(c)
	d := w.settle(ctx, settleLimit)
	w.end()
	if d > 2*time.Second {
		fmt.Fprintf(os.Stderr, "   waited %.1f s, untimed, for the stack to finish earlier work\n", d.Seconds())
	}
}

// statsDelay is how long PostgreSQL 15 may keep a backend's counters
// (commits, WAL) to itself: an idle backend reports them after 10 s
// (PGSTAT_IDLE_INTERVAL), so a pool's connections that went idle at the end
// of a scenario would report them into the next one.
const statsDelay = 11 * time.Second

// cost is one window's figures.
type cost struct {
	CPU      map[string]time.Duration
	Commits  int64
	WALBytes int64
	Rows     map[string]tableRows // written in the window, by table (pg_stat_user_tables)
	// Statements are the database's statements over the CPU window
	// (pg_stat_statements; nil without it).
	Statements []statement
	Window     time.Duration // from the start of the timed phase to the last CPU sample
	Settle     time.Duration // of which waiting for the stack to finish
	Err        string
	// Over the CPU window, the whole server's: the checkpoints (the bench's
	// own at its end, and any timed one), the buffers they wrote, and the
	// transaction ids assigned (transactions that wrote).
	CheckpointsTimed, CheckpointsReq, BuffersCheckpoint, XIDs int64
}

// meter measures one window: beginCost at the start, endCPU after it, then
// endPG.
type meter struct {
	c       classifier
	pg      pgCounters
	pgErr   error
	cpu     *cpuWindow
	out     *cost
	cpuDone time.Time
}

// beginCost starts a window right after a CHECKPOINT (untimed: the caller
// waits, as loadgen does for the bench's go-ahead).
func beginCost(ctx context.Context, c classifier) *meter {
	m := &meter{c: c}
	m.pgErr = checkpoint(ctx)
	if m.pgErr == nil {
		m.pg, m.pgErr = readPG(ctx, c.db)
	}
	if m.pgErr == nil {
		m.pg.Tables, m.pgErr = readTables(ctx, c.db)
	}
	if m.pgErr == nil && c.statements {
		m.pgErr = resetStatements(ctx, c.db)
	}
	m.cpu = startCPU(c)
	return m
}

// endCPU ends the CPU window. With settleFor > 0 it first takes the
// client's figure (loadgen waits from now on) and waits until the stack has
// gone quiet, for at most settleFor. Then it runs a CHECKPOINT inside the
// window, which writes the pages the window dirtied (the checkpointer's
// CPU counts), and reads the checkpoint and transaction id counters.
func (m *meter) endCPU(ctx context.Context, settleFor time.Duration) {
	var client *track
	var settled time.Duration
	if settleFor > 0 {
		m.cpu.sample()
		m.cpu.mu.Lock()
		for _, t := range m.cpu.tracks {
			if t.group == groupClient {
				c := *t
				client = &c
			}
		}
		m.cpu.mu.Unlock()
		settled = m.cpu.settle(ctx, settleFor)
	}
	ckErr := checkpoint(ctx)
	cpu := m.cpu.end()
	if client != nil {
		cpu[groupClient] = ticksDur(client.last - client.first)
	}
	m.out = &cost{CPU: cpu, Window: m.cpu.elapsed, Settle: settled}
	m.cpuDone = time.Now()
	after, err := readPG(ctx, m.c.db)
	if err == nil && m.c.statements {
		// Now, not after statsDelay: pg_stat_statements counts a statement
		// when it ends, and what the idle stack runs later is not the
		// window's.
		m.out.Statements, err = readStatements(ctx, m.c.db)
	}
	if err = errors.Join(ckErr, err); err != nil || m.pgErr != nil {
		m.pgErr = errors.Join(m.pgErr, err)
		return
	}
	m.out.CheckpointsTimed, m.out.CheckpointsReq = after.CheckpointsTimed-m.pg.CheckpointsTimed, after.CheckpointsReq-m.pg.CheckpointsReq
	m.out.BuffersCheckpoint, m.out.XIDs = after.BuffersCheckpoint-m.pg.BuffersCheckpoint, after.XIDs-m.pg.XIDs
}

// endPG reads PostgreSQL's counters once wait has passed since the end of
// the CPU window (statsDelay, so that every backend has reported), and
// takes off what the idle stack committed and wrote meanwhile, at idle's
// rate.
func (m *meter) endPG(ctx context.Context, wait time.Duration, idle *cost) *cost {
	select {
	case <-time.After(time.Until(m.cpuDone.Add(wait))):
	case <-ctx.Done():
	}
	after, err := readPG(ctx, m.c.db)
	if err == nil {
		after.Tables, err = readTables(ctx, m.c.db)
	}
	if err != nil || m.pgErr != nil {
		m.out.Err = errors.Join(m.pgErr, err).Error()
		return m.out
	}
	m.out.Commits, m.out.WALBytes = after.Commits-m.pg.Commits, after.WALBytes-m.pg.WALBytes
	extra, idleRows := 0.0, map[string]tableRows(nil)
	if idle != nil && idle.Window > 0 {
		extra = time.Since(m.cpuDone).Seconds() / idle.Window.Seconds()
		m.out.Commits = max(0, m.out.Commits-int64(float64(idle.Commits)*extra+0.5))
		m.out.WALBytes = max(0, m.out.WALBytes-int64(float64(idle.WALBytes)*extra+0.5))
		idleRows = idle.Rows
	}
	m.out.Rows = tablesWritten(m.pg.Tables, after.Tables, idleRows, extra)
	return m.out
}

// idleCost measures the stack doing nothing for d, after statsDelay for
// what its start left to report.
func idleCost(ctx context.Context, c classifier, d time.Duration) *cost {
	sleep(ctx, statsDelay)
	m := beginCost(ctx, c)
	sleep(ctx, d)
	m.endCPU(ctx, 0)
	return m.endPG(ctx, 0, nil)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}
