package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/billfn/billfn/shared/postgres"
)

// pidFile is where a running stack writes its process id, so make reset
// can refuse to wipe the state under it.
func (c config) pidFile() string { return filepath.Join(c.RunDir, "stack.pid") }

// writePid records the running stack; the returned func removes the file.
func writePid(cfg config) func() {
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return func() {}
	}
	pid := strconv.Itoa(os.Getpid())
	if err := os.WriteFile(cfg.pidFile(), []byte(pid+"\n"), 0o644); err != nil {
		return func() {}
	}
	return func() {
		if b, err := os.ReadFile(cfg.pidFile()); err == nil && strings.TrimSpace(string(b)) == pid {
			_ = os.Remove(cfg.pidFile())
		}
	}
}

// runningStack returns the pid of a live stack using cfg's run directory (0
// when none: no pid file, or a stale one left by a kill -9).
func runningStack(cfg config) int {
	b, err := os.ReadFile(cfg.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return 0
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0
	}
	// A recycled pid is not a stack.
	if cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); err == nil &&
		!strings.Contains(string(cmdline), "stack") {
		return 0
	}
	return pid
}

// reset wipes the local stack's state so the next make run starts as on a
// new machine, all of it at once so no part falls out of step with another:
// the database of DATABASE_URL (dropped; make run creates and migrates it),
// the Redis keys under REDIS_PREFIX (caches, rate limits, locks), and the
// run directory: Kafka's data, the generated secrets, the built binaries
// and any local mailbox. Without force it asks first (y/N on in).
func reset(ctx context.Context, cfg config, env func(string) (string, bool), force bool, in io.Reader, out io.Writer) error {
	if pid := runningStack(cfg); pid != 0 {
		return userErrorf("a stack is running on this state (pid %d, %s): stop make run (Ctrl-C) first, then make reset", pid, cfg.pidFile())
	}
	prefix := "billfn:"
	if v, ok := env("REDIS_PREFIX"); ok && v != "" {
		prefix = v
	}
	dirs := []string{cfg.RunDir}
	// A mail catcher's data (Mailpit), should one keep it beside bin/run.
	if m := filepath.Join(filepath.Dir(cfg.RunDir), "mailpit"); exists(m) {
		dirs = append(dirs, m)
	}
	dbName := "(unparsable)"
	if pc, err := pgx.ParseConfig(cfg.DatabaseURL); err == nil {
		dbName = pc.Database
	}
	fmt.Fprintf(out, "make reset wipes the local stack's state:\n")
	fmt.Fprintf(out, "  - the PostgreSQL database %q (%s), dropped; make run creates and migrates it again\n", dbName, redactURL(cfg.DatabaseURL))
	fmt.Fprintf(out, "  - the Redis keys under %q (%s)\n", prefix, redactRedis(cfg.RedisURL))
	for _, d := range dirs {
		fmt.Fprintf(out, "  - %s (Kafka's data, generated secrets, built binaries, local mailboxes)\n", d)
	}
	if !force {
		fmt.Fprint(out, "Wipe all of it? [y/N] ")
		line, _ := bufio.NewReader(in).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(out, "nothing wiped")
			return nil
		}
	}
	if dbName == "" || dbName == "postgres" || dbName == "template0" || dbName == "template1" {
		return userErrorf("DATABASE_URL names the database %q: make reset drops only an application database", dbName)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admin, err := postgres.ReplaceDatabase(cfg.DatabaseURL, "postgres")
	if err != nil {
		return userErrorf("DATABASE_URL: %v", err)
	}
	conn, err := pgx.Connect(cctx, admin)
	if err != nil {
		return userErrorf("PostgreSQL is not reachable (DATABASE_URL %s): %v", redactURL(cfg.DatabaseURL), err)
	}
	// FORCE ends the sessions a leftover process may still hold.
	_, err = conn.Exec(cctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{dbName}.Sanitize()+" WITH (FORCE)")
	conn.Close(cctx)
	if err != nil {
		return userErrorf("cannot drop the database %q: %v", dbName, err)
	}
	fmt.Fprintf(out, "dropped the database %q\n", dbName)
	n, err := wipeRedis(cctx, cfg.RedisURL, prefix)
	if err != nil {
		return userErrorf("cannot delete the Redis keys under %q: %v", prefix, err)
	}
	fmt.Fprintf(out, "deleted %d Redis keys under %q\n", n, prefix)
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return userErrorf("cannot remove %s: %v", d, err)
		}
		fmt.Fprintf(out, "removed %s\n", d)
	}
	fmt.Fprintln(out, "the local state is wiped: make run starts afresh")
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func wipeRedis(ctx context.Context, url, prefix string) (int, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return 0, err
	}
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	n := 0
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := rdb.Unlink(ctx, batch...).Err()
		n += len(batch)
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return n, err
	}
	return n, flush()
}

func redactRedis(u string) string {
	opt, err := goredis.ParseURL(u)
	if err != nil {
		return "(unparsable)"
	}
	return fmt.Sprintf("%s db %d", opt.Addr, opt.DB)
}
