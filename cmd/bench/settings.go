package main

import (
	"context"
	"fmt"
	"strings"
)

// settingNames are the PostgreSQL settings that change what a run
// measures: whether a commit waits for the disk (fsync, synchronous_commit),
// how much WAL a page's first change after a checkpoint writes
// (full_page_writes, wal_compression), whether dead rows are vacuumed while
// the run goes on (autovacuum), and the memory and WAL the server works in.
var settingNames = []string{"fsync", "synchronous_commit", "full_page_writes", "wal_compression", "autovacuum", "shared_buffers", "max_wal_size", "jit"}

type setting struct{ Name, Value string }

// readSettings reads settingNames from the server, as SHOW writes them.
func readSettings(ctx context.Context) ([]setting, error) {
	q := "SELECT n, current_setting(n) FROM unnest('{" + strings.Join(settingNames, ",") + "}'::text[]) WITH ORDINALITY AS s(n, i) ORDER BY i"
	out, err := psql(ctx, "postgres", "-AtF", "\t", "-c", q).Output()
	if err != nil {
		return nil, fmt.Errorf("reading PostgreSQL's settings: %w", err)
	}
	var r []setting
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, value, ok := strings.Cut(line, "\t")
		if !ok {
			return nil, fmt.Errorf("reading PostgreSQL's settings: line %q", line)
		}
		r = append(r, setting{name, value})
	}
	return r, nil
}

// renderSettings writes the settings into the header, with what a setting
// that departs from a production server's changes in the figures.
func renderSettings(b *strings.Builder, settings []setting) {
	value := map[string]string{}
	var parts []string
	for _, s := range settings {
		value[s.Name] = s.Value
		parts = append(parts, "`"+s.Name+"` "+s.Value)
	}
	fmt.Fprintf(b, "Its settings, as the server reports them: %s. ", strings.Join(parts, ", "))
	if value["fsync"] == "off" || value["synchronous_commit"] == "off" {
		b.WriteString("**Its commits are not durable (fsync or synchronous_commit off): no commit waits for the disk, so these figures are not comparable with a production server's nor with a run of record.** ")
	}
	if value["autovacuum"] == "off" {
		b.WriteString("With autovacuum off (this machine's configuration), nothing vacuums a table during the run but the outbox's relays, which vacuum their own (`shared/outbox`): every other table keeps its dead rows and index entries from scenario to scenario in the run's one database, which a server with autovacuum on would clean up as it goes. ")
	}
}
