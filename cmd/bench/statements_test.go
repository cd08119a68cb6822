package main

import (
	"strings"
	"testing"
)

// psql's lines: the statement's text is the last field and keeps its tabs
// (regexp_replace turned its runs of whitespace into spaces already).
func TestParseStatementsReadsPsqlsLines(t *testing.T) {
	sts, err := parseStatements([]byte("10000\t3675.25\t10000\tINSERT INTO t (a) VALUES ($1)\n\n221\t2628.5\t30128\tSELECT a\tb FROM t\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []statement{{"INSERT INTO t (a) VALUES ($1)", 10000, 3675.25, 10000}, {"SELECT a\tb FROM t", 221, 2628.5, 30128}}
	if len(sts) != len(want) || sts[0] != want[0] || sts[1] != want[1] {
		t.Errorf("got %+v, want %+v", sts, want)
	}
	for _, bad := range []string{"1\t2\tSELECT 1", "x\t2\t3\tSELECT 1", "1\t2.0.0\t3\tSELECT 1"} {
		if _, err := parseStatements([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// The statements with the most time come first, per operation; past
// statementsShown the rest are one line; pipes and backquotes cannot break
// the table.
func TestRenderStatementsShowsTheCostliestAndSumsTheRest(t *testing.T) {
	sts := []statement{{Query: "SELECT a || b FROM `t`", Calls: 100, ExecMS: 10, Rows: 100}}
	for i := range statementsShown {
		sts = append(sts, statement{Query: "UPDATE u" + string(rune('a'+i)), Calls: 1000, ExecMS: float64(100 + i), Rows: 2000})
	}
	var b strings.Builder
	renderStatements(&b, sts, 1000, 1234)
	out := b.String()
	total := 10.0 + 8*100 + (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7)
	if !strings.Contains(out, "backends' CPU, 1234 µs/op): 838 µs/op in all.") {
		t.Errorf("the header does not give the backends' CPU and the total %.0f µs/op:\n%s", total, out)
	}
	first, last := strings.Index(out, "| `UPDATE uh` | 1.00 | 2.00 | 107 | 13% |"), strings.Index(out, "| `UPDATE ua` | 1.00 | 2.00 | 100 | 12% |")
	if first < 0 || last < 0 || first > last {
		t.Errorf("want the costliest first, per operation:\n%s", out)
	}
	if strings.Contains(out, "SELECT a") || !strings.Contains(out, "| the other 1 | 0.10 | 0.10 | 10 | 1% |") {
		t.Errorf("the statement past the first %d is not summed alone in the last line:\n%s", statementsShown, out)
	}
	b.Reset()
	renderStatements(&b, sts[:1], 10, 0)
	if !strings.Contains(b.String(), "| `SELECT a \\|\\| b FROM 't'` |") {
		t.Errorf("a pipe or a backquote is left as is:\n%s", b.String())
	}
	b.Reset()
	renderStatements(&b, nil, 10, 0)
	if b.Len() != 0 {
		t.Errorf("no statements (pg_stat_statements not loaded) wrote %q", b.String())
	}
}

// The tracing runs pool their rounds: a statement's figures are summed
// across them, one that only some rounds ran is kept.
func TestAddStatementsSumsTheSameStatement(t *testing.T) {
	sum := addStatements(nil, []statement{{"A", 1, 2.5, 3}, {"B", 10, 1, 0}})
	sum = addStatements(sum, []statement{{"B", 5, 0.5, 2}, {"C", 1, 1, 1}})
	want := []statement{{"A", 1, 2.5, 3}, {"B", 15, 1.5, 2}, {"C", 1, 1, 1}}
	if len(sum) != len(want) {
		t.Fatalf("got %+v, want %+v", sum, want)
	}
	for i := range want {
		if sum[i] != want[i] {
			t.Errorf("statement %d: got %+v, want %+v", i, sum[i], want[i])
		}
	}
}
