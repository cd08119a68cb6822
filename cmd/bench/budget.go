package main

// The targets as CPU budgets (issue 20): on a machine of N cores, a rate of
// R units per second leaves at most N × 10⁶ / R µs of CPU for each unit,
// for everything that runs — the stack, PostgreSQL, Redis and the client
// driving it. A scenario whose unit costs more than that cannot meet its
// rate on this machine however its work is scheduled; the table says by how
// much, and which processes the microseconds go to, from the same cost
// windows as "Where each operation's CPU goes".

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// rateTargets are the throughput targets of the scenarios that have one, in
// units per second (a transfer, an invoice, an email…), by run name.
var rateTargets = map[string]func(pg *pgResult) float64{
	"health-gateway":       func(*pgResult) float64 { return 7500 },
	"transfers-gateway":    func(pg *pgResult) float64 { return 1.5 * pg.TPS },
	"transfers-replicas-1": func(pg *pgResult) float64 { return 1.5 * pg.TPS },
	"transfers-replicas-2": func(pg *pgResult) float64 { return 1.5 * pg.TPS },
	"batch-transfers":      func(*pgResult) float64 { return 15000 },
	"invoices-batch":       func(*pgResult) float64 { return 2000 },
	"payments":             func(*pgResult) float64 { return 1000 },
	"webhooks":             func(*pgResult) float64 { return 2000 },
	"emails":               func(*pgResult) float64 { return 200 },
	"deliveries":           func(*pgResult) float64 { return 2000 },
	// The same targets offered open loop at their rates (openloop.go): the
	// unit's cost at the target's rate, where group commits and event
	// batches are as full as that rate makes them, not as 16 clients do.
	"transfers-gateway-open": func(pg *pgResult) float64 { return 1.5 * pg.TPS },
	"payments-open":          func(*pgResult) float64 { return 1000 },
	"webhooks-open":          func(*pgResult) float64 { return 2000 },
}

// succeeded is the units of r's operations that succeeded, over which the
// budget spreads the CPU of all of them, and the title its rows carry:
// with how many failed when some did (an open loop past a function's
// max_inflight is answered 429, cheaply, and a refusal is not a unit).
// done is false when nothing was measured or nothing succeeded.
func succeeded(r *run) (units int64, title string, done bool) {
	if r.Result == nil || r.Cost == nil {
		return 0, r.Title, false
	}
	ok := int64(r.Result.Operations) - r.Result.Failed
	if ok <= 0 {
		return 0, r.Title, false
	}
	title = r.Title
	if r.Result.Failed > 0 {
		title = fmt.Sprintf("%s (%d of %d failed: the CPU of all over the %d that succeeded)", r.Title, r.Result.Failed, r.Result.Operations, ok)
	}
	return ok * int64(max(r.Result.Units, 1)), title, true
}

// calledFunction is the function a scenario's requests go to, from its
// loadgen -url (…/function/<name>); the bench's own scenarios name theirs.
func calledFunction(r *run) string {
	switch r.Name {
	case "emails":
		return "generate-invoice"
	case "deliveries":
		return "handle-webhook"
	}
	for i, a := range r.Args {
		if a == "-url" && i+1 < len(r.Args) {
			if _, fn, ok := strings.Cut(r.Args[i+1], "/function/"); ok {
				return strings.TrimSuffix(fn, "/")
			}
		}
	}
	return ""
}

// budgetRow is one scenario's unit cost split the way the table shows it.
type budgetRow struct {
	title, called                       string
	rate, budget, spent                 float64 // units/s, µs/unit, µs/unit
	pg, fn, stack, others, rest, client float64 // µs/unit; stack is the gateway's alone when kfakeKnown
	// kfake is the stack process's CPU that its profile puts in kfake
	// (Kafka's stand-in), µs/unit, when kfakeKnown; else it is in stack.
	kfake             float64
	kfakeKnown        bool
	ceiling           float64 // units/s at this cost on every core
	pgOverBudget, met bool
	// standIn is the costliest process of the rest, or kfake, that stands
	// in for a service a deployment runs elsewhere (standIns), and
	// standInCost its µs/unit.
	standIn     string
	standInCost float64
}

// standIns are the processes that stand in, on this machine, for services
// a deployment uses elsewhere: an SMTP relay (Mailpit), Stripe
// (stripe-mock), a trace collector (Jaeger). Their CPU is in the rest
// column like Redis's, but a target one of them alone keeps from its
// budget is out of billfn's reach on this machine.
var standIns = map[string]string{
	"mailpit":     "Mailpit, the SMTP relay's stand-in",
	"stripe-mock": "stripe-mock, Stripe's stand-in",
	groupJaeger:   "Jaeger, the trace collector",
	standInKfake:  "kfake, Kafka's stand-in (in the stack process, its share of that process's CPU profile)",
}

// standInKfake names kfake among the stand-ins.
const standInKfake = "kfake"

// standInOverBudget reports whether a stand-in alone costs a unit more
// than its budget.
func (b budgetRow) standInOverBudget() bool { return b.standIn != "" && b.standInCost > b.budget }

// budgetOf splits c's CPU over units; kfakeShare, when known, is the share
// of the stack process's CPU its profile puts in kfake (profileShare).
func budgetOf(title, called string, rate float64, c *cost, units int64, cores int, kfakeShare float64, kfakeKnown bool) budgetRow {
	b := budgetRow{title: title, called: called, rate: rate, budget: float64(cores) * 1e6 / rate}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(units, 1)) }
	for name, d := range c.CPU {
		v := per(d)
		switch {
		case name == groupClient:
			b.client += v
		case strings.HasPrefix(name, "postgres"):
			b.pg += v
		case name == called:
			b.fn += v
		case name == groupStack:
			b.stack += v
		case name == "kafka-trigger" || functionNames[name]:
			b.others += v
		default:
			b.rest += v
			if _, ok := standIns[name]; ok && v > b.standInCost {
				b.standIn, b.standInCost = name, v
			}
		}
	}
	if kfakeKnown {
		b.kfake, b.kfakeKnown = b.stack*kfakeShare, true
		b.stack -= b.kfake
		if b.kfake > b.standInCost {
			b.standIn, b.standInCost = standInKfake, b.kfake
		}
	}
	b.spent = b.pg + b.fn + b.stack + b.kfake + b.others + b.rest + b.client
	if b.spent > 0 {
		b.ceiling = float64(cores) * 1e6 / b.spent
	}
	b.pgOverBudget = b.pg > b.budget
	b.met = b.spent <= b.budget
	return b
}

// functionNames are the five functions' process names.
var functionNames = map[string]bool{"aggregate-report": true, "capture-payment": true, "generate-invoice": true, "handle-webhook": true, "process-transaction": true}

func renderBudget(b *strings.Builder, runs []*run, pg *pgResult) {
	cores := runtime.NumCPU()
	var rows []budgetRow
	if pg != nil && pg.Cost != nil && pg.Txns > 0 && pg.TPS > 0 {
		r := budgetOf("pgbench TPC-B (its own rate, for scale)", "", pg.TPS, pg.Cost, pg.Txns, cores, 0, false)
		rows = append(rows, r)
	}
	for _, r := range runs {
		rate, ok := rateTargets[r.Name]
		units, title, done := succeeded(r)
		if !ok || !done || pg == nil {
			continue
		}
		rows = append(rows, budgetOf(title, calledFunction(r), rate(pg), r.Cost, units, cores, r.KfakeShare, r.KfakeMeasured))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## The targets as CPU budgets\n\n"+
		"On this machine's %d cores, a rate of R units per second leaves at most %d × 10⁶ / R µs of CPU per unit (a transfer, an invoice, an email) for everything that runs: the stack, PostgreSQL, Redis and the client that drives them. "+
		"The unit cost below is this run's, from the windows of \"Where each operation's CPU goes\" (system and client), split into PostgreSQL (backends and server processes), the function the requests go to, the gateway, kfake, the kafka-trigger with the other functions (the consumers of the events the unit causes), and the rest (Redis, Mailpit, stripe-mock, Jaeger). "+
		"The gateway and kfake share one process (the local stack's); kfake's column is that process's CPU times the share of its CPU profile's samples with a frame in kfake's code (`go tool pprof -focus 'franz-go/pkg/kfake'` on bin/bench/<scenario>/stack.pprof), and the gateway's the remainder, which also holds the runtime's work for both (scheduler, network poller, garbage collector): kfake's column is a lower bound. Where the profile is missing, kfake's column says — and the gateway's holds both. "+
		"The ceiling is the rate this unit cost allows with every core busy and nothing else running. "+
		"A unit that costs more than its budget cannot reach its target on this machine whatever the scheduling; where PostgreSQL's share alone exceeds the budget (marked ‼), it cannot reach it even if every billfn process cost nothing, and the same holds where one process of the rest that stands in for a service a deployment runs elsewhere (Mailpit for the SMTP relay, stripe-mock for Stripe, Jaeger for the trace collector), or kfake for Kafka, alone exceeds it (‼ in its column). "+
		"pgbench's row applies the same arithmetic to its own rate: how close its ceiling is to what it measured says how fully a run keeps the cores busy. "+
		"A scenario offered open loop at its target's rate has a row of its own: the unit's cost at that rate. Where a function commits a group of requests at once or publishes and delivers events in batches, a unit costs less the more arrive together, so the closed loop's 16 clients, which keep fewer in flight than a fast enough system at the target's rate would, can pay more per unit than the rate itself asks.\n\n", cores, cores)
	b.WriteString("| scenario | target | budget µs/unit | spent µs/unit | × budget | PostgreSQL | the function called | gateway | kfake | trigger + other functions | rest | client | ceiling/s |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		pgCell := fmt.Sprintf("%.0f", r.pg)
		if r.pgOverBudget {
			pgCell += " ‼"
		}
		fn := "—"
		if r.called != "" {
			fn = fmt.Sprintf("%.0f (%s)", r.fn, r.called)
		}
		restCell, kfakeCell := fmt.Sprintf("%.0f", r.rest), "—"
		if r.kfakeKnown {
			kfakeCell = fmt.Sprintf("%.0f", r.kfake)
		}
		if r.standInOverBudget() {
			if r.standIn == standInKfake {
				kfakeCell += " ‼"
			} else {
				restCell += " ‼"
			}
		}
		fmt.Fprintf(b, "| %s | %.0f/s | %.0f | %.0f | %.2f %s | %s | %s | %.0f | %s | %.0f | %s | %.0f | %.0f |\n",
			r.title, r.rate, r.budget, r.spent, r.spent/r.budget, mark(r.met), pgCell, fn, r.stack, kfakeCell, r.others, restCell, r.client, r.ceiling)
	}
	var over []string
	for _, r := range rows {
		if r.standInOverBudget() {
			over = append(over, fmt.Sprintf("- **%s**: %s, spends %.0f µs per unit, %.2f × the budget of %.0f: no change to billfn meets this target on this machine while it runs here. "+
				"The unit's other processes spend %.0f µs (%.2f × the budget; PostgreSQL %.0f of them).",
				r.title, standIns[r.standIn], r.standInCost, r.standInCost/r.budget, r.budget, r.spent-r.standInCost, (r.spent-r.standInCost)/r.budget, r.pg))
		}
	}
	if len(over) > 0 {
		b.WriteString("\nWhere a stand-in alone exceeds the budget (‼ in its column):\n\n" + strings.Join(over, "\n") + "\n")
	}
	renderCommits(b, runs, pg, cores)
}

// commitRow is what a unit's commits cost PostgreSQL, beside pgbench's
// transactions and the floor the unit's writing transactions imply.
type commitRow struct {
	title           string
	budget, pg      float64 // µs/unit: the budget, PostgreSQL's CPU (backends and server processes)
	commits, wrote  float64 // per unit: commits of the database, and of them those that wrote
	perCommit       float64 // PostgreSQL µs per commit
	rows, entries   float64 // per unit: rows written (inserted, updated, deleted) and entries added to full indexes (-1: not read)
	floor           float64 // µs/unit: wrote × the cheapest commit's PostgreSQL CPU (0: not measured)
	pgOverBudget    bool
	floorOverBudget bool
}

// pgMicros is PostgreSQL's CPU (backends and server processes) of a window,
// in µs per unit.
func pgMicros(c *cost, units int64) float64 { return cpuMicros(c, units, "postgres") }

// backendMicros is the CPU of a window's PostgreSQL backends (not the
// server processes), in µs per unit.
func backendMicros(c *cost, units int64) float64 { return cpuMicros(c, units, "postgres backends") }

// cpuMicros is the CPU of a window's processes whose group name begins
// with prefix, in µs per unit.
func cpuMicros(c *cost, units int64, prefix string) float64 {
	var d time.Duration
	for name, x := range c.CPU {
		if strings.HasPrefix(name, prefix) {
			d += x
		}
	}
	return float64(d.Microseconds()) / float64(max(units, 1))
}

// commitsOf splits a unit's PostgreSQL CPU over its commits. The commits
// that wrote are the transaction ids assigned in the window (every
// transaction that writes takes one), at most the commits (the ids are the
// whole server's: another database's writes, a savepoint that writes,
// autovacuum's ANALYZE take some too). minCommit is the CPU of the backend
// of the cheapest transaction that writes (0: not measured); no writing
// transaction costs its backend less (each takes an id, writes WAL and
// waits for its flush), so the unit's PostgreSQL CPU cannot go below wrote
// × minCommit without fewer writing transactions. The server processes'
// share is left out of the floor: the checkpointer's depends on how many
// pages a transaction dirties, which an append dirties fewer of than the
// cheapest commit's random update.
func commitsOf(title string, budget float64, c *cost, units int64, minCommit float64) commitRow {
	r := commitRow{title: title, budget: budget, pg: pgMicros(c, units)}
	n := float64(max(units, 1))
	r.commits = float64(c.Commits) / n
	r.rows, r.entries = -1, -1
	if c.Rows != nil {
		var rows, entries int64
		for _, t := range c.Rows {
			rows, entries = rows+t.Ins+t.Upd+t.Del, entries+t.IndexEntries()
		}
		r.rows, r.entries = float64(rows)/n, float64(entries)/n
	}
	r.wrote = float64(min(c.XIDs, c.Commits)) / n
	if c.Commits > 0 {
		r.perCommit = r.pg / r.commits
	}
	r.floor = r.wrote * minCommit
	r.pgOverBudget = budget > 0 && r.pg > budget
	r.floorOverBudget = budget > 0 && r.floor > budget
	return r
}

// renderCommits writes "What PostgreSQL's share is made of": for each
// scenario with a rate target, its commits per unit and PostgreSQL's CPU per
// commit beside pgbench's per transaction, and the floor; then a sentence
// for each scenario PostgreSQL alone keeps from its target.
func renderCommits(b *strings.Builder, runs []*run, pg *pgResult, cores int) {
	if pg == nil || pg.Cost == nil || pg.Txns == 0 || pg.TPS == 0 {
		return
	}
	tpcb := commitsOf("pgbench TPC-B (for scale)", 0, pg.Cost, pg.Txns, 0)
	minCommit, minAll := 0.0, 0.0
	var minRow *commitRow
	if m := pg.MinCommit; m != nil && m.Cost != nil && m.Txns > 0 {
		minCommit, minAll = backendMicros(m.Cost, m.Txns), pgMicros(m.Cost, m.Txns)
		r := commitsOf("pgbench, the cheapest commit: one row updated by primary key", 0, m.Cost, m.Txns, minCommit)
		minRow = &r
	}
	rows := []commitRow{tpcb}
	if minRow != nil {
		rows = append(rows, *minRow)
	}
	for _, r := range runs {
		rate, ok := rateTargets[r.Name]
		units, title, done := succeeded(r)
		if !ok || !done || r.Cost.Commits == 0 {
			continue
		}
		rows = append(rows, commitsOf(title, float64(cores)*1e6/rate(pg), r.Cost, units, minCommit))
	}
	if len(rows) == 1 {
		return
	}
	b.WriteString("\n### What PostgreSQL's share is made of\n\n" +
		"PostgreSQL's CPU per unit (the budget table's column) over the unit's commits (`pg_stat_database.xact_commit`, read-only transactions included), beside pgbench's PostgreSQL CPU per transaction in the same run: a TPC-B transaction (three updates, a select, an insert, one commit) and the cheapest transaction that writes (one row updated by primary key, a prepared statement as pgx uses), both from 16 clients like the scenarios. " +
		"The commits that wrote are the transaction ids assigned in the window (each writing transaction takes one; the ids are the whole server's, so at most the commits are counted). " +
		"The rows written and the index entries they added (each inserted row, and each updated one unless the update is HOT, adds an entry to every full index of its table; the entries of partial indexes are not counted, so the figure is a lower bound, nor are BRIN indexes, which hold a summary per range of pages, not an entry per row) are the database's `pg_stat_user_tables` over the window, by table in each scenario's section below: what a unit asks of PostgreSQL, whatever the number of commits it is spread over. " +
		"No writing transaction costs its backend less than the cheapest one's (it takes an id, writes WAL and waits for its flush), so **the floor** — the commits that wrote × the cheapest commit's backend CPU (its server processes' share left out: the checkpointer's depends on the pages a transaction dirties) — is what PostgreSQL spends per unit however cheap each commit becomes; only fewer writing transactions per unit lower it. " +
		"‼ marks a floor above the budget: the target cannot be met on this machine with this many writing transactions per unit even if PostgreSQL did nothing else and billfn's processes cost nothing.\n\n")
	b.WriteString("| scenario | budget µs/unit | PostgreSQL µs/unit | commits/unit | of which wrote | rows written/unit | entries in full indexes/unit | PostgreSQL µs/commit | floor µs/unit | floor / budget |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		budget, floor, over := "—", "—", "—"
		if r.budget > 0 {
			budget = fmt.Sprintf("%.0f", r.budget)
			if r.floor > 0 {
				over = fmt.Sprintf("%.2f", r.floor/r.budget)
				if r.floorOverBudget {
					over += " ‼"
				}
			}
		}
		if r.floor > 0 && r.budget > 0 {
			floor = fmt.Sprintf("%.0f", r.floor)
		}
		rows, entries := "—", "—"
		if r.rows >= 0 {
			rows, entries = fmt.Sprintf("%.2f", r.rows), fmt.Sprintf("%.2f", r.entries)
		}
		fmt.Fprintf(b, "| %s | %s | %.0f | %.2f | %.2f | %s | %s | %.0f | %s | %s |\n", r.title, budget, r.pg, r.commits, r.wrote, rows, entries, r.perCommit, floor, over)
	}
	var lines []string
	for _, r := range rows[1:] {
		if r.budget == 0 || !r.pgOverBudget {
			continue
		}
		s := fmt.Sprintf("- **%s**: %.2f commits per unit at %.0f µs of PostgreSQL CPU each, against %.0f per pgbench TPC-B transaction", r.title, r.commits, r.perCommit, tpcb.perCommit)
		if minCommit > 0 {
			s += fmt.Sprintf(" and %.0f for the cheapest commit (%.0f in its backend); %.2f of them wrote, so PostgreSQL spends at least %.0f µs per unit, %.2f × its budget of %.0f", minAll, minCommit, r.wrote, r.floor, r.floor/r.budget, r.budget)
			if r.floorOverBudget {
				s += ": what keeps it from its target is the number of writing transactions, not their cost"
			} else {
				s += ": cheaper commits could bring PostgreSQL's share within the budget"
			}
		}
		lines = append(lines, s+".")
	}
	if len(lines) > 0 {
		b.WriteString("\nWhere PostgreSQL's share alone exceeds the budget (‼ in the table above):\n\n" + strings.Join(lines, "\n") + "\n")
	}
}
