package main

// PostgreSQL's time by statement: where a scenario's PostgreSQL share goes,
// from pg_stat_statements, when the server loads it (it must be in
// shared_preload_libraries; the bench never changes the server's
// configuration, so without it the report says how to add it).

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// statement is one normalized statement's figures over a window.
type statement struct {
	Query  string
	Calls  int64
	ExecMS float64 // total_exec_time: wall time in the executor, waits included
	Rows   int64
}

// statementsHow says how to get the per-statement tables.
const statementsHow = "`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'` and a restart of PostgreSQL"

// enableStatements creates the extension in db and says whether its view
// answers: false when the server does not load the library.
func enableStatements(ctx context.Context, db string) bool {
	err := psql(ctx, db, "-qAtc", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT count(*) FROM pg_stat_statements").Run()
	return err == nil
}

// resetStatements forgets every statement's figures (the whole server's).
func resetStatements(ctx context.Context, db string) error {
	if err := psql(ctx, db, "-qAtc", "SELECT pg_stat_statements_reset()").Run(); err != nil {
		return fmt.Errorf("pg_stat_statements_reset: %w", err)
	}
	return nil
}

// statementsQuery reads db's statements, one per line, tab-separated, the
// text on one line; the bench's own reads of the statistics are left out.
const statementsQuery = `SELECT s.calls, s.total_exec_time, s.rows, regexp_replace(s.query, '\s+', ' ', 'g')
	FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
	WHERE d.datname = current_database() AND s.query !~ 'pg_stat_|pg_index'`

// readStatements is statementsQuery in db.
func readStatements(ctx context.Context, db string) ([]statement, error) {
	out, err := psql(ctx, db, "-AtF", "\t", "-c", statementsQuery).Output()
	if err != nil {
		return nil, fmt.Errorf("reading pg_stat_statements: %w", err)
	}
	return parseStatements(out)
}

// parseStatements reads statementsQuery's output.
func parseStatements(out []byte) ([]statement, error) {
	var sts []statement
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "\t", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("pg_stat_statements line %q: %d fields, want 4", line, len(f))
		}
		calls, err1 := strconv.ParseInt(f[0], 10, 64)
		ms, err2 := strconv.ParseFloat(f[1], 64)
		rows, err3 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("pg_stat_statements line %q: not numbers", line)
		}
		sts = append(sts, statement{Query: f[3], Calls: calls, ExecMS: ms, Rows: rows})
	}
	return sts, nil
}

// addStatements adds b's figures to sum's, statement by statement (the
// same text), and returns the sum; b's statements sum lacks are appended.
func addStatements(sum, b []statement) []statement {
	at := make(map[string]int, len(sum))
	for i, s := range sum {
		at[s.Query] = i
	}
	for _, s := range b {
		i, ok := at[s.Query]
		if !ok {
			at[s.Query] = len(sum)
			sum = append(sum, s)
			continue
		}
		sum[i].Calls, sum[i].ExecMS, sum[i].Rows = sum[i].Calls+s.Calls, sum[i].ExecMS+s.ExecMS, sum[i].Rows+s.Rows
	}
	return sum
}

// statementsShown is how many statements a scenario's table lists.
const statementsShown = 8

// renderStatements writes the statements that took most of PostgreSQL's
// executor time in a window, per operation, beside the backends' CPU; the
// rest are summed in one line.
func renderStatements(b *strings.Builder, sts []statement, ops int64, backendCPU float64) {
	if len(sts) == 0 {
		return
	}
	sts = append([]statement(nil), sts...)
	sort.SliceStable(sts, func(i, j int) bool { return sts[i].ExecMS > sts[j].ExecMS })
	var total float64
	for _, s := range sts {
		total += s.ExecMS
	}
	per := func(n float64) float64 { return n / float64(max(ops, 1)) }
	fmt.Fprintf(b, "\nPostgreSQL's time by statement (`pg_stat_statements` over the window: executor time, a wall time that includes waiting for locks, I/O and, on a busy machine, for a core; its shares, not its sums, compare with the backends' CPU, %.0f µs/op): %.0f µs/op in all.\n\n", backendCPU, per(total*1000))
	b.WriteString("| statement | calls/op | rows/op | µs/op | share |\n|---|---:|---:|---:|---:|\n")
	var rest statement
	for i, s := range sts {
		if i >= statementsShown {
			rest.Calls, rest.Rows, rest.ExecMS = rest.Calls+s.Calls, rest.Rows+s.Rows, rest.ExecMS+s.ExecMS
			continue
		}
		fmt.Fprintf(b, "| `%s` | %.2f | %.2f | %.0f | %.0f%% |\n", queryCell(s.Query), per(float64(s.Calls)), per(float64(s.Rows)), per(s.ExecMS*1000), 100*s.ExecMS/max(total, 1e-9))
	}
	if n := len(sts) - statementsShown; n > 0 {
		fmt.Fprintf(b, "| the other %d | %.2f | %.2f | %.0f | %.0f%% |\n", n, per(float64(rest.Calls)), per(float64(rest.Rows)), per(rest.ExecMS*1000), 100*rest.ExecMS/max(total, 1e-9))
	}
}

// queryCell is a statement's text for a table cell: its first 140
// characters, a backquote (which would end the code span) as a quote, a
// pipe escaped (as GitHub's tables take it, inside a code span too).
func queryCell(q string) string {
	if r := []rune(q); len(r) > 140 {
		q = string(r[:140]) + "…"
	}
	return strings.NewReplacer("`", "'", "|", `\|`).Replace(q)
}
