// The report command: the aggregate-report binary, given arguments,
// recomputes its rollups from its event log and checks them against what
// streaming wrote, instead of serving.
//
//	go run ./functions/aggregate-report rebuild [--from 2026-01-01] [--to 2026-02-01]   recompute and replace the rollups of [from, to)
//	go run ./functions/aggregate-report check   [--from 2026-01-01] [--to 2026-02-01]   compare streamed and recomputed rollups; exit 1 if they differ
//
// Dates are UTC days, to exclusive; without them the whole log is used.
// The database is DATABASE_URL (or the secret file database-url), by
// default postgres://postgres@127.0.0.1:5432/billfn?sslmode=disable. A
// progress bar on stderr counts the events replayed; --json prints the
// report as JSON on stdout.
//
// "From the source tables" means from report_events, the log of every
// event aggregate-report consumed, written in the same transaction as the
// rollups: a function reads only its own tables, so the log is the source
// (docs/aggregate-report.md). It lives in the function's binary, not in
// cmd/, because only aggregate-report may read its own tables and
// package: cmd/ imports no function.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/postgres"
)

const defaultURL = "postgres://postgres@127.0.0.1:5432/billfn?sslmode=disable"

// runCommand runs the report command with os.Args and exits with its status.
func runCommand() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := command(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: aggregate-report rebuild|check [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--batch N] [--json] [--no-progress]
(without arguments, aggregate-report serves)`

// command is the whole report command; it returns the exit status: 0
// success (check: equal), 1 failure (check: differences), 2 usage.
func command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "rebuild" && args[0] != "check") {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("aggregate-report "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "first day (UTC, YYYY-MM-DD); default: the log's first day")
	to := fs.String("to", "", "day after the last (exclusive); default: the day after the log's last day")
	batch := fs.Int("batch", rollup.DefaultBatch, "events read per query")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("no-progress", false, "no progress bar")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *batch < 1 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	url, ok, err := config.Secret("database-url", "DATABASE_URL")
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	if !ok || url == "" {
		url = defaultURL
	}
	pool, err := postgres.Open(ctx, url, 4)
	if err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	defer pool.Close()

	r, err := store.FullRange(ctx, pool, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "report: read the event log:", err)
		return 1
	}
	for _, f := range []struct {
		s   string
		dst *time.Time
	}{{*from, &r.From}, {*to, &r.To}} {
		if f.s == "" {
			continue
		}
		if *f.dst, err = time.Parse(time.DateOnly, f.s); err != nil {
			fmt.Fprintf(stderr, "report: %q is not a date (YYYY-MM-DD)\n", f.s)
			return 2
		}
	}
	if !r.From.Before(r.To) {
		fmt.Fprintln(stderr, "report: --to must be after --from")
		return 2
	}

	var bar *progressLine
	progress := func(done, total int64) {
		if *quiet {
			return
		}
		if bar == nil {
			bar = &progressLine{w: stderr, label: "replaying " + r.String(), every: 100 * time.Millisecond, now: time.Now}
		}
		bar.set(done, total)
	}
	var rep rollup.Report
	if cmd == "rebuild" {
		rep, err = store.Rebuild(ctx, pool, r, *batch, progress)
	} else {
		rep, err = store.Check(ctx, pool, r, *batch, progress)
	}
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "report: interrupted; nothing was written")
		} else {
			fmt.Fprintln(stderr, "report:", err)
		}
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			rollup.Report
			Equal bool `json:"equal"`
		}{rep, rep.Equal()})
	} else {
		printReport(stdout, cmd, rep)
	}
	if cmd == "check" && !rep.Equal() {
		return 1
	}
	return 0
}

func printReport(w io.Writer, cmd string, rep rollup.Report) {
	fmt.Fprintf(w, "%s %s..%s: %d events replayed, %d rows compared in %s\n", cmd, rep.From, rep.To, rep.Events, rep.Rows, rep.Elapsed)
	switch {
	case rep.Equal():
		fmt.Fprintln(w, "streamed and recomputed rollups agree exactly")
	case cmd == "rebuild":
		fmt.Fprintf(w, "%d rows differed from the recomputation and were replaced:\n", rep.Differences)
	default:
		fmt.Fprintf(w, "MISMATCH: %d rows differ between streamed and recomputed rollups:\n", rep.Differences)
	}
	for _, d := range rep.Samples {
		fmt.Fprintf(w, "  %-24s %s\n    streamed   %s\n    recomputed %s\n", d.Table, d.Key, d.Streamed, d.Recomputed)
	}
	if n := rep.Differences - len(rep.Samples); n > 0 {
		fmt.Fprintf(w, "  … and %d more\n", n)
	}
	if rep.Rebuilt {
		fmt.Fprintln(w, "rollups rebuilt")
	}
}

// progressLine is the replay's progress on stderr, one line redrawn in
// place ("replaying R  42% 850/2040 events"), at most once per every and
// when the count reaches the total, and with the time taken at the end.
// It replaced schollz/progressbar, whose package and dependencies (its
// colour codes, rivo/uniseg's tables) the serving function linked for
// this command's sake: 0.2 MB of executable and about 0.5 MB of idle RSS
// (issue 20).
type progressLine struct {
	w           io.Writer
	label       string
	every       time.Duration
	now         func() time.Time
	start, last time.Time
	done, total int64
}

func (p *progressLine) set(done, total int64) {
	p.done, p.total = done, max(total, 1)
	t := p.now()
	if p.start.IsZero() {
		p.start = t
	} else if t.Sub(p.last) < p.every && done < total {
		return
	}
	p.last = t
	p.draw("")
}

func (p *progressLine) draw(tail string) {
	fmt.Fprintf(p.w, "\r%s %3d%% %d/%d events%s", p.label, p.done*100/p.total, p.done, p.total, tail)
}

// finish draws the last count with the time taken and ends the line.
func (p *progressLine) finish() {
	p.draw(" in " + p.now().Sub(p.start).Round(time.Millisecond).String() + "\n")
}
