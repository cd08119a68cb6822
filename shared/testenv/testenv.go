// Package testenv gives tests the real services: a migrated PostgreSQL
// database of their own, Redis with a private key prefix, and an in-process
// Kafka broker (kfake, which speaks the real wire protocol).
//
// Nothing here skips: when Postgres or Redis cannot be reached the test
// fails with the command that starts it.
//
// Databases are cheap: the migrations are applied once to a template
// database named after a hash of the migration files, and each test package
// (or FreshDatabase caller) gets CREATE DATABASE ... TEMPLATE of it.
// Use Main in TestMain so the package database is dropped afterwards.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/billfn/billfn/migrations"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/postgres"
)

// How to start the services, printed when they are not reachable (see
// ../shared/guide/MACHINE.md; scripts/services.sh does this for make test).
const (
	StartPostgres = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
	StartRedis    = `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log`
)

// PostgresURL is the server tests use (TEST_DATABASE_URL overrides).
func PostgresURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// RedisURL is the Redis tests use (TEST_REDIS_URL overrides).
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

var pkg struct {
	once sync.Once
	url  string
	pool *pgxpool.Pool
	err  error
}

var (
	dropMu sync.Mutex
	toDrop []string
)

// Main runs the package's tests, then drops the databases they created.
func Main(m *testing.M) {
	code := m.Run()
	if pkg.pool != nil {
		pkg.pool.Close()
	}
	dropMu.Lock()
	names := toDrop
	dropMu.Unlock()
	if len(names) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if conn, err := pgx.Connect(ctx, PostgresURL()); err == nil {
			for _, n := range names {
				_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
			}
			conn.Close(ctx)
		}
		cancel()
	}
	os.Exit(code)
}

// DatabaseURL returns the URL of this test package's migrated database,
// creating it on first use.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	pkg.once.Do(func() {
		pkg.url, pkg.err = newDatabase(true)
		if pkg.err == nil {
			pkg.pool, pkg.err = postgres.Open(context.Background(), pkg.url, 20)
		}
	})
	if pkg.err != nil {
		tb.Fatalf("%v", pkg.err)
	}
	return pkg.url
}

// Pool returns a pool on this test package's migrated database.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	DatabaseURL(tb)
	return pkg.pool
}

// FreshDatabase creates a database for this test alone, migrated or empty,
// and drops it when the test ends.
func FreshDatabase(tb testing.TB, migrated bool) string {
	tb.Helper()
	url, err := newDatabase(migrated)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, PostgresURL()); err == nil {
			cfg, _ := pgx.ParseConfig(url)
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{cfg.Database}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
		}
	})
	return url
}

// FreshPool returns a pool on a migrated database of this test's own
// (FreshDatabase), for a test whose figures other tests' rows in the
// package's shared database would change (plans, pages read, retention);
// the pool closes before the database is dropped.
func FreshPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), FreshDatabase(tb, true))
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

func unreachable(what, url string, err error, start string) error {
	return fmt.Errorf("%s is not reachable at %s: %v\n\tstart it with: %s\n\t(make test starts it for you; on a machine without it: apt-get install -y postgresql redis-server)",
		what, url, err, start)
}

func newDatabase(migrated bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := PostgresURL()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", unreachable("PostgreSQL", base, err, StartPostgres)
	}
	defer conn.Close(ctx)
	dropAbandoned(ctx, conn)
	name := fmt.Sprintf("billfn_test_%d_%s", os.Getpid(), randHex(4))
	for attempt := 0; ; attempt++ {
		stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
		if migrated {
			tmpl, err := template(ctx, conn, base)
			if err != nil {
				return "", err
			}
			stmt += " TEMPLATE " + pgx.Identifier{tmpl}.Sanitize()
		}
		_, err = conn.Exec(ctx, stmt)
		var pg *pgconn.PgError
		// 55006: the template is briefly in use by another CREATE DATABASE;
		// 3D000: another checkout's tests (other migrations) dropped it
		// as old just now, so it is built again.
		if err == nil || attempt == 20 || !errors.As(err, &pg) || (pg.Code != "55006" && pg.Code != "3D000") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return "", fmt.Errorf("create test database: %w", err)
	}
	dropMu.Lock()
	toDrop = append(toDrop, name)
	dropMu.Unlock()
	return postgres.ReplaceDatabase(base, name)
}

// template returns the migrated template database for the current
// migration files, building it once (under an advisory lock) when missing.
func template(ctx context.Context, conn *pgx.Conn, base string) (string, error) {
	sum, err := migrationsHash()
	if err != nil {
		return "", err
	}
	name := "billfn_tmpl_" + sum
	const lockKey = 0x62696c6c666e // "billfn"
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return "", err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey) }()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	// Templates of older migration sets are of little use: keep the few
	// newest (another checkout or branch on this machine may be testing
	// with one of them right now) and drop the rest.
	rows, _ := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE 'billfn\\_tmpl\\_%' ORDER BY oid DESC OFFSET 4")
	old, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	for _, o := range old {
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{o}.Sanitize()+" WITH (FORCE)")
	}
	building := name + "_building"
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{building}.Sanitize()+" WITH (FORCE)")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{building}.Sanitize()); err != nil {
		return "", fmt.Errorf("create template: %w", err)
	}
	url, err := postgres.ReplaceDatabase(base, building)
	if err != nil {
		return "", err
	}
	m, err := migrations.NewMigrator(url)
	if err != nil {
		return "", err
	}
	err = m.Up(ctx, io.Discard)
	m.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{building}.Sanitize()+" RENAME TO "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("finish template: %w", err)
	}
	return name, nil
}

func migrationsHash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

// dropAbandoned drops test databases of test processes that no longer run
// (a run killed by a timeout cannot clean up after itself).
func dropAbandoned(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE 'billfn\\_test\\_%'")
	if err != nil {
		return
	}
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	for _, n := range names {
		parts := strings.Split(n, "_")
		if len(parts) < 4 {
			continue
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			continue
		}
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Redis returns a client and a key prefix private to this test; keys under
// the prefix are deleted when the test ends.
func Redis(tb testing.TB) (*goredis.Client, string) {
	tb.Helper()
	opt, err := goredis.ParseURL(RedisURL())
	if err != nil {
		tb.Fatalf("TEST_REDIS_URL: %v", err)
	}
	rdb := goredis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		tb.Fatalf("%v", unreachable("Redis", RedisURL(), err, StartRedis))
	}
	prefix := "billfn-test:" + randHex(6) + ":"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	})
	return rdb, prefix
}

// Kafka starts an in-process Kafka broker (kfake) with billfn's topics and
// their partition counts, closed when the test ends.
func Kafka(tb testing.TB, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	tb.Helper()
	c, err := NewKafka(opts...)
	if err != nil {
		tb.Fatalf("start kfake: %v", err)
	}
	tb.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// NewKafka starts kfake with billfn's topics (also used by the local stack).
func NewKafka(opts ...kfake.Opt) (*kfake.Cluster, error) {
	all := []kfake.Opt{kfake.NumBrokers(1)}
	for topic, parts := range events.Topics {
		all = append(all, kfake.SeedTopics(parts, topic))
	}
	return kfake.NewCluster(append(all, opts...)...)
}

// ProcessedRows counts the processed_events rows consumer holds for evs:
// whether a receiver recorded them as applied.
func ProcessedRows(t testing.TB, pool *pgxpool.Pool, consumer string, evs ...events.Event) int {
	t.Helper()
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID()
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*)::int FROM processed_events WHERE consumer = $1 AND id = ANY($2)`,
		consumer, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Migrator is a migrator and a connection on a fresh database with no
// migration applied, both closed when tb ends: for tests of migrations.
func Migrator(tb testing.TB) (*migrations.Migrator, *pgx.Conn) {
	tb.Helper()
	url := FreshDatabase(tb, false)
	m, err := migrations.NewMigrator(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return m, conn
}

// IndexDefs is the definitions of table's indexes, in name order, each as
// its name and what follows USING ("outbox_pkey btree (source, id)"); q is
// a pool, a connection or a transaction.
func IndexDefs(tb testing.TB, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, table string) []string {
	tb.Helper()
	rows, err := q.Query(context.Background(), `SELECT c.relname || ' ' || pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass ORDER BY c.relname`, table)
	if err != nil {
		tb.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	for i, d := range defs {
		name, rest, _ := strings.Cut(d, " ")
		_, method, _ := strings.Cut(rest, " USING ")
		defs[i] = name + " " + method
	}
	return defs
}
