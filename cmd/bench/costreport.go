package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// renderCost writes "Where each operation's CPU goes": a summary line per
// scenario and pgbench, then each scenario's processes and the top of the
// profiles of its two hottest Go processes.
func renderCost(ctx context.Context, b *strings.Builder, runs []*run, pg *pgResult, idle *cost) {
	b.WriteString("\n## Where each operation's CPU goes\n\n")
	b.WriteString("CPU time of each process over a scenario's timed phase (loadgen `-sync`), from `/proc/<pid>/stat` (utime + stime, 10 ms resolution), divided by the operations (those that failed too, whose number follows theirs; the budget table above divides by those that succeeded); " +
		"the window goes on after the last operation until the stack has finished what the operations left behind (outbox relays, consumers, emails: until the stack uses < 5 % of a core over 400 ms, at most four minutes — a scenario whose stack was still busy then says so). Before its timed phase begins, each scenario waits, untimed, until the stack is quiet the same way, so that it never pays for its setup's or an earlier scenario's work. " +
		"The stack's processes are found by the stack id in their environment, PostgreSQL's backends by their title (`postgres: … <database> …`); a process that starts counts from its start, one that exits up to its last sample (every 200 ms). " +
		"Commits are `pg_stat_database.xact_commit` of the database (read-only transactions count too), WAL bytes `pg_stat_wal.wal_bytes` (the whole server), read 11 s after the CPU window (an idle backend reports its counters after 10 s), less what the idle stack commits and writes in those seconds at the rate measured below. " +
		"Every window starts right after a `CHECKPOINT` the bench issues while it waits, untimed, for the stack to settle, and ends with another inside the CPU window once the stack has settled, so that the checkpointer's writes a window pays for are those of the pages it dirtied itself, and no timed checkpoint (`checkpoint_timeout`, whose timer each `CHECKPOINT` restarts) can fall into a run and bill it for earlier runs' pages; each scenario below says how many checkpoints its window saw, from `pg_stat_bgwriter` (one requested is the window's own; a `DROP DATABASE` or a full `max_wal_size` elsewhere on the server requests more, which write only what was dirtied since the last). " +
		"Redis, the PostgreSQL server processes (postmaster, WAL writer, checkpointer, background writer) and WAL are shared with anything else running on the machine. " +
		"pgbench is measured the same way: its own CPU (rusage) and its database's backends, per transaction. " +
		"The system total leaves out the client (loadgen, pgbench), which is listed beside it.\n\n")
	if idle != nil && idle.Window > 0 {
		procs, total := ranked(idle)
		var hot []string
		for _, p := range procs[:min(4, len(procs))] {
			hot = append(hot, fmt.Sprintf("%s %.1f", p.name, ms64(p.cpu)/idle.Window.Seconds()))
		}
		fmt.Fprintf(b, "Idle (the stack running, no load; %.0f s): **%.1f ms of CPU per second** (%s), %.1f commits/s, %.0f WAL bytes/s.\n\n",
			idle.Window.Seconds(), ms64(total)/idle.Window.Seconds(), strings.Join(hot, ", "),
			float64(idle.Commits)/idle.Window.Seconds(), float64(idle.WALBytes)/idle.Window.Seconds())
	}
	b.WriteString("| scenario | operations | system CPU µs/op | per unit | client µs/op | commits/op | WAL bytes/op | hottest processes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	type row struct {
		title, name string
		ops         int64
		failed      int64
		units       int
		c           *cost
		profiles    map[string]string
		kfake       float64 // the stack process's share in kfake, when kfakeKnown
		kfakeKnown  bool
	}
	var rows []row
	for _, r := range runs {
		if r.Result != nil && r.Cost != nil && r.Result.Operations > 0 {
			rows = append(rows, row{r.Title, r.Name, int64(r.Result.Operations), r.Result.Failed, max(r.Result.Units, 1), r.Cost, r.Profiles, r.KfakeShare, r.KfakeMeasured})
		}
	}
	if pg != nil && pg.Cost != nil && pg.Txns > 0 {
		rows = append(rows, row{title: fmt.Sprintf("pgbench TPC-B (%d clients)", pg.Clients), name: "pgbench", ops: pg.Txns, units: 1, c: pg.Cost})
	}
	for _, r := range rows {
		procs, total := ranked(r.c)
		var hot []string
		for _, p := range procs[:min(3, len(procs))] {
			hot = append(hot, fmt.Sprintf("%s %.0f%%", p.name, 100*float64(p.cpu)/float64(max(total, 1))))
		}
		perUnit := ""
		if r.units > 1 {
			perUnit = fmt.Sprintf("%.1f", us(total, r.ops*int64(r.units)))
		}
		ops := strconv.FormatInt(r.ops, 10)
		if r.failed > 0 {
			ops += fmt.Sprintf(" (%d failed)", r.failed)
		}
		fmt.Fprintf(b, "| %s | %s | %.0f | %s | %.0f | %.2f | %.0f | %s |\n", r.title, ops, us(total, r.ops), perUnit,
			us(r.c.CPU[groupClient], r.ops), float64(r.c.Commits)/float64(r.ops), float64(r.c.WALBytes)/float64(r.ops), strings.Join(hot, ", "))
	}
	for _, r := range rows {
		procs, total := ranked(r.c)
		fmt.Fprintf(b, "\n### %s\n\n", r.title)
		fmt.Fprintf(b, "%d operations", r.ops)
		if r.units > 1 {
			fmt.Fprintf(b, " of %d units each", r.units)
		}
		if r.failed > 0 {
			fmt.Fprintf(b, ", of which %d failed", r.failed)
		}
		fmt.Fprintf(b, "; window %.1f s", r.c.Window.Seconds())
		if r.c.Settle > 0 {
			busy := ""
			if r.c.Settle >= settleLimit {
				busy = ", **the stack still busy at the end**"
			}
			fmt.Fprintf(b, " (of which %.1f s waiting for the stack to settle%s)", r.c.Settle.Seconds(), busy)
		}
		fmt.Fprintf(b, "; %.2f commits and %.0f WAL bytes per operation", float64(r.c.Commits)/float64(r.ops), float64(r.c.WALBytes)/float64(r.ops))
		fmt.Fprintf(b, "; checkpoints in the window: %s.", checkpointsText(r.c))
		if r.c.Err != "" {
			fmt.Fprintf(b, " (PostgreSQL counters: %s)", r.c.Err)
		}
		b.WriteString("\n\n| process | CPU ms | µs/op | share |\n|---|---:|---:|---:|\n")
		for _, p := range procs {
			fmt.Fprintf(b, "| %s | %.0f | %.0f | %.0f%% |\n", p.name, ms64(p.cpu), us(p.cpu, r.ops), 100*float64(p.cpu)/float64(max(total, 1)))
			if p.name == groupStack && r.kfakeKnown {
				k := time.Duration(float64(p.cpu) * r.kfake)
				fmt.Fprintf(b, "| ↳ of which kfake (%.0f%% of the process's profile) | %.0f | %.0f | %.0f%% |\n", 100*r.kfake, ms64(k), us(k, r.ops), 100*float64(k)/float64(max(total, 1)))
			}
		}
		fmt.Fprintf(b, "| **the system** | **%.0f** | **%.0f** | 100%% |\n", ms64(total), us(total, r.ops))
		fmt.Fprintf(b, "| %s | %.0f | %.0f | |\n", groupClient, ms64(r.c.CPU[groupClient]), us(r.c.CPU[groupClient], r.ops))
		renderRows(b, r.c.Rows, r.ops)
		renderStatements(b, r.c.Statements, r.ops, us(r.c.CPU[groupBackends(database)], r.ops))
		// The top of the profiles of the two hottest processes that have one.
		shown := 0
		for _, p := range procs {
			file, ok := r.profiles[p.name]
			if p.name == groupStack {
				file, ok = r.profiles["stack"]
			}
			if !ok || shown == 2 {
				continue
			}
			shown++
			fmt.Fprintf(b, "\n<details><summary>%s: top 10 of its CPU profile (<code>go tool pprof -top %s</code>)</summary>\n\n```\n%s\n```\n</details>\n",
				p.name, "bin/bench/"+r.name+"/"+baseName(file), top(ctx, file))
		}
	}
}

// renderRows writes what an operation wrote to each table: rows inserted,
// updated (of which HOT) and deleted, and the index entries they added,
// the tables with the most index entries first; tables written less than
// once in 200 operations are left out of the table but not of its total.
func renderRows(b *strings.Builder, rows map[string]tableRows, ops int64) {
	if len(rows) == 0 {
		return
	}
	names := make([]string, 0, len(rows))
	var sum tableRows
	for name, t := range rows {
		names = append(names, name)
		sum.Ins, sum.Upd, sum.HOT, sum.Del = sum.Ins+t.Ins, sum.Upd+t.Upd, sum.HOT+t.HOT, sum.Del+t.Del
	}
	entries := func(name string) int64 { return rows[name].IndexEntries() }
	sort.Slice(names, func(i, j int) bool {
		if ei, ej := entries(names[i]), entries(names[j]); ei != ej {
			return ei > ej
		}
		return names[i] < names[j]
	})
	var allEntries int64
	for _, name := range names {
		allEntries += entries(name)
	}
	per := func(n int64) string { return fmt.Sprintf("%.2f", float64(n)/float64(max(ops, 1))) }
	b.WriteString("\nRows written per operation, by table (`pg_stat_user_tables` over the window, less the idle stack's; an inserted row, and an updated one unless the update is HOT, adds an entry to each of its table's full indexes, and to a partial one when it matches its predicate, which is not counted; a BRIN index, a summary per range of pages, is not counted either):\n\n")
	b.WriteString("| table | indexes | inserted | updated | of which HOT | deleted | entries in full indexes |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range names {
		t := rows[name]
		if 200*(t.Ins+t.Upd+t.Del) < ops {
			continue
		}
		indexes := strconv.FormatInt(t.Indexes, 10)
		var kinds []string
		if t.Partial > 0 {
			kinds = append(kinds, fmt.Sprintf("%d partial", t.Partial))
		}
		if t.BRIN > 0 {
			kinds = append(kinds, fmt.Sprintf("%d BRIN", t.BRIN))
		}
		if len(kinds) > 0 {
			indexes += " (" + strings.Join(kinds, ", ") + ")"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", name, indexes, per(t.Ins), per(t.Upd), per(t.HOT), per(t.Del), per(t.IndexEntries()))
	}
	fmt.Fprintf(b, "| **all tables** | | **%s** | **%s** | **%s** | **%s** | **%s** |\n", per(sum.Ins), per(sum.Upd), per(sum.HOT), per(sum.Del), per(allEntries))
}

type procCPU struct {
	name string
	cpu  time.Duration
}

// ranked is the processes of the system (not the client) by CPU, most
// first, leaving out those with none measurable, and their total.
func ranked(c *cost) ([]procCPU, time.Duration) {
	var out []procCPU
	var total time.Duration
	for name, d := range c.CPU {
		if name == groupClient || d <= 0 {
			continue
		}
		out = append(out, procCPU{name, d})
		total += d
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].cpu != out[j].cpu {
			return out[i].cpu > out[j].cpu
		}
		return out[i].name < out[j].name
	})
	return out, total
}

func us(d time.Duration, ops int64) float64 {
	return float64(d.Microseconds()) / float64(max(ops, 1))
}

func ms64(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// checkpointsText says which checkpoints a window saw: the requested ones
// (the window's own CHECKPOINT at its end, pooled runs one each) and the
// timed ones, which should never fall into a window.
func checkpointsText(c *cost) string {
	s := fmt.Sprintf("%d requested, %d timed, %d buffers written", c.CheckpointsReq, c.CheckpointsTimed, c.BuffersCheckpoint)
	if c.CheckpointsTimed > 0 {
		s += " (**a timed checkpoint fell into the window**: it outlasted checkpoint_timeout)"
	}
	return s
}
