// Command migrate applies billfn's embedded SQL migrations.
//
//	go run ./cmd/migrate up        apply every pending migration (creates the database if missing)
//	go run ./cmd/migrate down      roll back the latest migration
//	go run ./cmd/migrate reset     roll back every migration
//	go run ./cmd/migrate status    list migrations and whether they are applied
//
// The database is DATABASE_URL (or the secret file database-url), by default
// postgres://postgres@127.0.0.1:5432/billfn?sslmode=disable.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/billfn/billfn/migrations"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/postgres"
)

const defaultURL = "postgres://postgres@127.0.0.1:5432/billfn?sslmode=disable"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: migrate up|down|reset|status")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cmd string) error {
	url, ok, err := config.Secret("database-url", "DATABASE_URL")
	if err != nil {
		return err
	}
	if !ok || url == "" {
		url = defaultURL
	}
	if cmd == "up" {
		if err := postgres.EnsureDatabase(ctx, url); err != nil {
			return err
		}
	}
	m, err := migrations.NewMigrator(url)
	if err != nil {
		return err
	}
	defer m.Close()
	switch cmd {
	case "up":
		return m.Up(ctx, os.Stdout)
	case "down":
		return m.Down(ctx, os.Stdout)
	case "reset":
		return m.DownTo(ctx, 0, os.Stdout)
	case "status":
		return m.Status(ctx, os.Stdout)
	}
	return fmt.Errorf("unknown command %q (up, down, reset, status)", cmd)
}
