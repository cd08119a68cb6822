package migrations_test

import (
	"context"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func tableExists(t *testing.T, conn *pgx.Conn, name string) bool {
	t.Helper()
	var ok bool
	if err := conn.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestMigrationsGoUpDownAndUpAgainOnAnEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	m, conn := testenv.Migrator(t)

	if err := m.Up(ctx, io.Discard); err != nil {
		t.Fatalf("up: %v", err)
	}
	top, err := m.Version(ctx)
	if err != nil || top < 1 {
		t.Fatalf("version after up = %d, %v", top, err)
	}
	for _, tbl := range []string{"idempotency_keys", "outbox", "processed_events", "dead_letters"} {
		if !tableExists(t, conn, tbl) {
			t.Fatalf("after up, table %s is missing", tbl)
		}
	}
	if err := m.DownTo(ctx, 0, io.Discard); err != nil {
		t.Fatalf("down: %v", err)
	}
	var userTables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'goose_db_version'`).Scan(&userTables); err != nil {
		t.Fatal(err)
	}
	if userTables != 0 {
		t.Fatalf("after down to 0, %d tables remain: a Down section is incomplete", userTables)
	}
	if err := m.Up(ctx, io.Discard); err != nil {
		t.Fatalf("up again: %v", err)
	}
	again, _ := m.Version(ctx)
	if again != top {
		t.Fatalf("version after second up = %d, want %d", again, top)
	}
}
