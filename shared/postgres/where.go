package postgres

import (
	"strconv"
	"strings"
)

// Where builds the filter of a list query: conditions joined by AND, with
// numbered parameters. Every "?" of a condition becomes the next $n and
// takes the next argument, so optional filters read as they are written:
//
//	var w postgres.Where
//	if f.Status != "" {
//		w.And("status = ?", f.Status)
//	}
//	if after != nil {
//		w.And("(created_at, id) < (?, ?::uuid)", after.CreatedAt, after.ID)
//	}
//	sql := "SELECT … FROM payments" + w.SQL() + " ORDER BY created_at DESC, id DESC LIMIT " + w.Arg(limit)
//	rows, err := q.Query(ctx, sql, w.Args...)
//
// Conditions are SQL written by the program, never input: values only
// travel as arguments. A condition must not use "?" for anything else
// (the jsonb ? operators).
type Where struct {
	conds []string
	Args  []any // the query's arguments, in placeholder order
}

// And adds a condition; it panics when the count of "?" differs from the
// count of args, a mistake of the program that any test of the query shows.
func (w *Where) And(cond string, args ...any) {
	if n := strings.Count(cond, "?"); n != len(args) {
		panic("postgres.Where: " + strconv.Itoa(n) + " placeholders, " + strconv.Itoa(len(args)) + " arguments in " + strconv.Quote(cond))
	}
	var b strings.Builder
	for i, part := range strings.Split(cond, "?") {
		if i > 0 {
			b.WriteString(w.Arg(args[i-1]))
		}
		b.WriteString(part)
	}
	w.conds = append(w.conds, b.String())
}

// Filter adds "column = value" when value is set (not empty): the
// optional equality filters of a list read one line each,
//
//	w.Filter("account_id", f.AccountID)
//	w.Filter("status", f.Status)
//
// column is the program's SQL, never input.
func (w *Where) Filter(column, value string) {
	if value != "" {
		w.And(column+" = ?", value)
	}
}

// Arg adds an argument used outside the conditions (a LIMIT) and returns
// its placeholder.
func (w *Where) Arg(v any) string {
	w.Args = append(w.Args, v)
	return "$" + strconv.Itoa(len(w.Args))
}

// SQL is " WHERE c1 AND c2 …", or "" when there is no condition.
func (w *Where) SQL() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}
