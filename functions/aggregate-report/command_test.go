package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

// seedLog streams events into a fresh database through the function's bulk
// path (rollup.Ingest, as a batch delivery does) and points the command at it.
func seedLog(t *testing.T) string {
	t.Helper()
	url := testenv.FreshDatabase(t, true)
	t.Setenv("DATABASE_URL", url)
	t.Setenv(config.SecretsDirEnv, t.TempDir())
	pool, err := postgres.Open(context.Background(), url, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	start := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	a, b := "aaaa0000-0000-4000-8000-000000000001", "bbbb0000-0000-4000-8000-000000000002"
	var evs []rollup.Event
	for i := 0; i < 2000; i++ {
		at := start.Add(time.Duration(i) * 17 * time.Minute) // about 24 days
		data := fmt.Sprintf(`{"id":"t%d","from_account_id":%q,"to_account_id":%q,"amount":%d,"currency":"USD","status":"posted"}`, i, a, b, 100+i)
		evs = append(evs, rollup.Event{Source: "/functions/process-transaction", ID: fmt.Sprint("e", i),
			Type: rollup.TransferPosted, Time: at, Data: []byte(data)})
		if i%50 == 0 {
			sub := fmt.Sprintf(`{"subscription_id":"05000000-0000-4000-8000-%012d","account_id":%q,"status":"active","mrr":%d,"currency":"USD"}`, i, a, 1000+i)
			evs = append(evs, rollup.Event{Source: "/functions/generate-invoice", ID: fmt.Sprint("s", i),
				Type: rollup.SubscriptionCreated, Time: at, Data: []byte(sub)})
		}
	}
	for i := 0; i < len(evs); i += 500 {
		err := pgx.BeginTxFunc(context.Background(), pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			_, err := store.Ingest(context.Background(), tx, evs[i:min(i+500, len(evs))])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return url
}

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := command(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckAgreesThenFindsTamperingAndRebuildFixesIt(t *testing.T) {
	url := seedLog(t)
	code, out, errs := runCmd("check")
	if code != 0 || !strings.Contains(out, "agree exactly") || !strings.Contains(out, "2040 events replayed") {
		t.Fatalf("check: %d\n%s\n%s", code, out, errs)
	}
	// The progress bar counts the events on stderr.
	if !strings.Contains(errs, "replaying 2026-02-01..") || !strings.Contains(errs, "2040/2040") {
		t.Fatalf("no progress bar on stderr:\n%q", errs)
	}

	pool, err := postgres.Open(context.Background(), url, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), `UPDATE report_rollups SET count = count + 3
		WHERE grain = 'h' AND bucket = '2026-02-03 05:00:00+00' AND metric = 'transfer.posted'`); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd("check", "--from", "2026-02-03", "--to", "2026-02-04", "--no-progress")
	if code != 1 || !strings.Contains(out, "MISMATCH: 1 rows differ") || !strings.Contains(out, "h 2026-02-03T05:00:00Z USD transfer.posted") {
		t.Fatalf("check after tampering: %d\n%s", code, out)
	}
	// A range that does not hold the tampered row is still equal.
	if code, out, _ = runCmd("check", "--from", "2026-02-04", "--to", "2026-02-05", "--no-progress"); code != 0 {
		t.Fatalf("check of another day: %d\n%s", code, out)
	}
	code, out, _ = runCmd("rebuild", "--from", "2026-02-03", "--to", "2026-02-04", "--json", "--no-progress")
	var rep struct {
		rollup.Report
		Equal bool `json:"equal"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.Rebuilt || rep.Differences != 1 {
		t.Fatalf("rebuild: %d\n%s", code, out)
	}
	if code, out, _ = runCmd("check", "--no-progress"); code != 0 {
		t.Fatalf("check after rebuild: %d\n%s", code, out)
	}
	var n int64
	if err := pool.QueryRow(context.Background(), `SELECT sum(count) FROM report_rollups WHERE grain = 'd' AND metric = 'transfer.posted'`).Scan(&n); err != nil || n != 2000 {
		t.Fatalf("posted transfers after rebuild: %d (%v)", n, err)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	seedLog(t)
	for _, args := range [][]string{{}, {"frobnicate"}, {"check", "--from", "yesterday"}, {"rebuild", "--from", "2026-02-02", "--to", "2026-02-01"},
		{"check", "extra"}, {"check", "--batch", "0"}, {"check", "--colour"}} {
		if code, _, _ := runCmd(args...); code != 2 {
			t.Errorf("%v exited %d, want 2", args, code)
		}
	}
}

// The progress line is redrawn at most once per interval, always when the
// count reaches the total, and ends with the time taken.
func TestProgressLineThrottlesAndEndsWithTheTime(t *testing.T) {
	var b strings.Builder
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	p := &progressLine{w: &b, label: "replaying X", every: 100 * time.Millisecond, now: func() time.Time { return now }}
	for _, step := range []struct {
		at          time.Duration
		done, total int64
	}{{0, 0, 2040}, {10 * time.Millisecond, 500, 2040}, {150 * time.Millisecond, 850, 2040}, {160 * time.Millisecond, 2040, 2040}} {
		now = t0.Add(step.at)
		p.set(step.done, step.total)
	}
	now = t0.Add(200 * time.Millisecond)
	p.finish()
	want := "\rreplaying X   0% 0/2040 events\rreplaying X  41% 850/2040 events\rreplaying X 100% 2040/2040 events" +
		"\rreplaying X 100% 2040/2040 events in 200ms\n"
	if b.String() != want {
		t.Errorf("progress:\n%q\nwant\n%q", b.String(), want)
	}
}
