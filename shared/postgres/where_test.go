package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

func TestWhereNumbersPlaceholdersAcrossConditionsAndTheLimit(t *testing.T) {
	var w postgres.Where
	if got := w.SQL(); got != "" {
		t.Fatalf("no condition: %q", got)
	}
	w.And("status = ?", "open")
	w.And("(created_at, id) < (?, ?::uuid)", "t", "id")
	limit := w.Arg(10)
	if got, want := w.SQL()+" LIMIT "+limit, " WHERE status = $1 AND (created_at, id) < ($2, $3::uuid) LIMIT $4"; got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if len(w.Args) != 4 || w.Args[0] != "open" || w.Args[2] != "id" || w.Args[3] != 10 {
		t.Fatalf("args %v", w.Args)
	}
}

func TestWhereRefusesAConditionWhoseArgumentsDoNotMatch(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "2 placeholders, 1 arguments") {
			t.Fatalf("recovered %v", r)
		}
	}()
	var w postgres.Where
	w.And("a = ? AND b = ?", 1)
}

// The built query runs on Postgres with the values only as arguments: a
// value full of SQL stays a value.
func TestWhereQueriesPostgresWithValuesAsArguments(t *testing.T) {
	pool := testenv.Pool(t)
	ctx := context.Background()
	conn, err := pool.Acquire(ctx) // temp tables live in one session
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	now := time.Now()
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE where_t (id int, status text, at timestamptz);
		INSERT INTO where_t VALUES (1, 'open', now()), (2, 'open', now()), (3, 'paid', now()), (4, 'x'' OR ''1''=''1', now())`); err != nil {
		t.Fatal(err)
	}
	query := func(status string, below int) []int {
		var w postgres.Where
		if status != "" {
			w.And("status = ?", status)
		}
		w.And("id < ? AND at <= ?", below, now.Add(time.Hour))
		rows, err := conn.Query(ctx, "SELECT id FROM where_t"+w.SQL()+" ORDER BY id DESC LIMIT "+w.Arg(2), w.Args...)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := query("open", 10); len(got) != 2 || got[0] != 2 || got[1] != 1 {
		t.Errorf("open below 10: %v", got)
	}
	if got := query("", 4); len(got) != 2 || got[0] != 3 || got[1] != 2 {
		t.Errorf("all below 4, two: %v", got)
	}
	if got := query("x' OR '1'='1", 10); len(got) != 1 || got[0] != 4 {
		t.Errorf("a status holding SQL matched %v, want only row 4", got)
	}
}

func TestWhereFilterSkipsWhatIsNotSet(t *testing.T) {
	var w postgres.Where
	w.Filter("account_id", "")
	w.Filter("status", "open")
	w.Filter("gateway", "")
	w.Filter("type", "refund")
	if got, want := w.SQL(), " WHERE status = $1 AND type = $2"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if len(w.Args) != 2 || w.Args[0] != "open" || w.Args[1] != "refund" {
		t.Fatalf("args %v", w.Args)
	}
}
