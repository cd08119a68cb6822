package migrations

import (
	"context"
	"database/sql"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// Migrator applies the SQL files of FS with goose. Functions never migrate
// at start; cmd/migrate and the local stack do. It lives here, not in
// shared/postgres, so a function's binary links neither goose nor the
// SQL files.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
}

// NewMigrator opens a migrator on url. Close it when done.
func NewMigrator(url string) (*Migrator, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	// Each function owns a version range (see package migrations), so a
	// lower version added after a higher one is normal: allow it.
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS, goose.WithAllowOutofOrder(true))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return &Migrator{db: db, provider: p}, nil
}

// Close releases the connection.
func (m *Migrator) Close() error { return m.db.Close() }

// Up applies every pending migration.
func (m *Migrator) Up(ctx context.Context, out io.Writer) error {
	res, err := m.provider.Up(ctx)
	for _, r := range res {
		fmt.Fprintf(out, "up   %s (%s)\n", r.Source.Path, r.Duration.Round(1e5))
	}
	if err == nil && len(res) == 0 {
		fmt.Fprintln(out, "no pending migrations")
	}
	return err
}

// Down rolls back the most recent migration.
func (m *Migrator) Down(ctx context.Context, out io.Writer) error {
	r, err := m.provider.Down(ctx)
	if r != nil {
		fmt.Fprintf(out, "down %s (%s)\n", r.Source.Path, r.Duration.Round(1e5))
	}
	return err
}

// DownTo rolls back every migration above version (0 = all).
func (m *Migrator) DownTo(ctx context.Context, version int64, out io.Writer) error {
	res, err := m.provider.DownTo(ctx, version)
	for _, r := range res {
		fmt.Fprintf(out, "down %s (%s)\n", r.Source.Path, r.Duration.Round(1e5))
	}
	return err
}

// Status prints every migration with its state.
func (m *Migrator) Status(ctx context.Context, out io.Writer) error {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return err
	}
	for _, s := range st {
		when := "pending"
		if s.State == goose.StateApplied {
			when = "applied " + s.AppliedAt.Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(out, "%-40s %s\n", s.Source.Path, when)
	}
	return nil
}

// Version is the highest applied version (0 when none).
func (m *Migrator) Version(ctx context.Context) (int64, error) {
	return m.provider.GetDBVersion(ctx)
}
