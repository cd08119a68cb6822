package rollup

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Range is a half-open range of whole UTC days [From, To).
type Range struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Contains reports whether t falls in r.
func (r Range) Contains(t time.Time) bool { return !t.Before(r.From) && t.Before(r.To) }

// String formats r as dates.
func (r Range) String() string {
	return r.From.Format(time.DateOnly) + ".." + r.To.Format(time.DateOnly)
}

// Progress is told how many events were replayed out of how many.
type Progress func(done, total int64)

// Replayed is the result of replaying the log.
type Replayed struct {
	State   *State
	Effects *Effects
	Events  int64 // events replayed
	LastSeq int64 // the last log position replayed
}

// DefaultBatch is how many events a replay reads per query.
const DefaultBatch = 5000

// Apply applies the next events of the log (in log order) to the replay.
func (rp *Replayed) Apply(evs []Event) error {
	agg := Aggregator{State: rp.State, Effects: rp.Effects}
	for _, ev := range evs {
		// An event that fails here failed when it streamed too (it was
		// parked and never reached the log), so this is a defect.
		if err := agg.Apply(ev); err != nil {
			return fmt.Errorf("replay seq %d: %w", ev.Seq, err)
		}
		rp.LastSeq = ev.Seq
	}
	rp.Events += int64(len(evs))
	return nil
}

// NewReplay is an empty replay keeping the effects that fall in r.
func NewReplay(r Range) *Replayed {
	eff := NewEffects()
	eff.Keep = r.Contains
	return &Replayed{State: NewState(), Effects: eff}
}

// Difference is one row where the streamed and the recomputed figures differ.
type Difference struct {
	Table      string `json:"table"`
	Key        string `json:"key"`
	Streamed   string `json:"streamed"`
	Recomputed string `json:"recomputed"`
}

// Report is the outcome of a check or a rebuild.
type Report struct {
	From        string       `json:"from"`
	To          string       `json:"to"`
	Events      int64        `json:"events_replayed"`
	Rows        int          `json:"rows_compared"`
	Differences int          `json:"differences"`
	Samples     []Difference `json:"samples,omitempty"` // the first differences
	Rebuilt     bool         `json:"rebuilt"`
	Elapsed     string       `json:"elapsed"`
}

// Equal reports whether streamed and recomputed agreed.
func (r Report) Equal() bool { return r.Differences == 0 }

const sampleMax = 20

type comparer struct {
	rows, n int
	diffs   []Difference
}

func compareMaps[K comparable, V comparable](c *comparer, table string, streamed, recomputed map[K]V, keyf func(K) string) {
	differ := func(k K) {
		var sv, rv any = "missing", "missing"
		if v, ok := streamed[k]; ok {
			sv = v
		}
		if v, ok := recomputed[k]; ok {
			rv = v
		}
		c.n++
		c.diffs = append(c.diffs, Difference{table, keyf(k), fmt.Sprint(sv), fmt.Sprint(rv)})
	}
	for k, s := range streamed {
		c.rows++
		if r, ok := recomputed[k]; !ok || r != s {
			differ(k)
		}
	}
	for k := range recomputed {
		if _, ok := streamed[k]; !ok {
			c.rows++
			differ(k)
		}
	}
}

func deref[K comparable, V any](m map[K]*V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = *v
	}
	return out
}

// Compare lists every difference between streamed and recomputed effects
// of a range and between the streamed and recomputed state.
func Compare(streamed, recomputed *Effects, dbState, replayState *State) (rows, n int, samples []Difference) {
	c := &comparer{}
	compareMaps(c, "report_rollups", streamed.Global, recomputed.Global, func(k RollKey) string {
		return fmt.Sprintf("%c %s %s %s %q", k.Grain, time.Unix(k.Bucket, 0).UTC().Format(time.RFC3339), k.Currency, k.Metric, k.Dim)
	})
	compareMaps(c, "report_account_rollups", streamed.Accounts, recomputed.Accounts, func(k AccountKey) string {
		return fmt.Sprintf("%s %s %s %s %q", k.Account, time.Unix(k.Day, 0).UTC().Format(time.DateOnly), k.Currency, k.Metric, k.Dim)
	})
	byEvent := func(rows []ReconRow) map[string]ReconRow {
		m := make(map[string]ReconRow, len(rows))
		for _, r := range rows {
			r.At = r.At.UTC()
			m[r.Source+" "+r.EventID] = r
		}
		return m
	}
	compareMaps(c, "report_recon", byEvent(streamed.Recon), byEvent(recomputed.Recon), func(k string) string { return k })
	payments := func(rows []InvoicePayment) map[string]InvoicePayment {
		m := make(map[string]InvoicePayment, len(rows))
		for _, p := range rows {
			p.At = p.At.UTC()
			m[p.Source+" "+p.EventID] = p
		}
		return m
	}
	compareMaps(c, "report_invoice_payments", payments(streamed.InvoicePayments), payments(recomputed.InvoicePayments),
		func(k string) string { return k })
	unapplied := func(rows []UnappliedRow) map[string]UnappliedRow {
		m := make(map[string]UnappliedRow, len(rows))
		for _, u := range rows {
			u.At = u.At.UTC()
			m[u.Source+" "+u.EventID] = u
		}
		return m
	}
	compareMaps(c, "report_unapplied", unapplied(streamed.Unapplied), unapplied(recomputed.Unapplied),
		func(k string) string { return k })
	if dbState != nil && replayState != nil {
		id := func(k string) string { return k }
		compareMaps(c, "report_accounts", deref(dbState.Accounts), deref(replayState.Accounts), id)
		compareMaps(c, "report_subscriptions", deref(dbState.Subscriptions), deref(replayState.Subscriptions), id)
		compareMaps(c, "report_payments", deref(dbState.Payments), deref(replayState.Payments), id)
		compareMaps(c, "report_invoices", deref(dbState.Invoices), deref(replayState.Invoices), id)
		compareMaps(c, "report_refunds", deref(dbState.Refunds), deref(replayState.Refunds), id)
		compareMaps(c, "report_disputes", deref(dbState.Disputes), deref(replayState.Disputes),
			func(k DisputeKey) string { return k.Gateway + " " + k.ObjectID })
	}
	slices.SortFunc(c.diffs, func(a, b Difference) int {
		if a.Table != b.Table {
			return strings.Compare(a.Table, b.Table)
		}
		return strings.Compare(a.Key, b.Key)
	})
	return c.rows, c.n, c.diffs[:min(len(c.diffs), sampleMax)]
}
