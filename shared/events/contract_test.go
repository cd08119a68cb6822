package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

func TestContractTopic(t *testing.T) {
	for typ, want := range map[string]string{
		"billfn.account.created": events.TopicUser, "billfn.invoice.paid": events.TopicBilling,
		"billfn.subscription.canceled": events.TopicBilling, "billfn.notification.requested": events.TopicBilling,
		"billfn.transaction.requested": events.TopicTransaction, "billfn.hold.expired": events.TopicTransaction,
		"billfn.payment.gateway_updated": events.TopicPayment, "billfn.refund.failed": events.TopicPayment,
	} {
		if got, ok := events.ContractTopic(typ); !ok || got != want {
			t.Errorf("%s: %q %v, want %q", typ, got, ok, want)
		}
	}
	for _, typ := range []string{"", "billfn.", "billfn.invoice", "billfn.invoice.", "billfn.nope.created", "com.example.invoice.paid", "billfn.invoice.paid.x"} {
		if _, ok := events.ContractTopic(typ); ok {
			t.Errorf("%q is in the contract", typ)
		}
	}
}

// unexpectedCount reads billfn_events_unexpected_total for one consumer.
func unexpectedCount(t *testing.T, consumer string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(events.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "billfn_events_unexpected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["consumer"] == consumer {
				got[l["type"]+" "+l["reason"]] += m.GetCounter().GetValue()
			}
		}
	}
	return got
}

// An event of a type nobody knows, or on a topic the contract does not put
// its type on, is not applied, is counted (unknown types under one label)
// and leaves a line at debug.
func TestUnexpectedEventsAreCountedAndLogged(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	g := newRig(t, false)
	ct := func(topic string) http.Header {
		h := http.Header{"Content-Type": {events.ContentTypeStructured}}
		if topic != "" {
			h.Set("X-Topic", topic)
		}
		return h
	}
	for i := 0; i < 3; i++ { // three invented types: one label
		ev, err := events.New(context.Background(), "kcat", "com.example.thing"+uuid.NewString()[:4], "s", payment{5})
		if err != nil {
			t.Fatal(err)
		}
		s := structured(t, ev)
		if code, res := g.send(g.signed(s, ct(events.TopicPayment)), s); code != 200 || res.Ignored != 1 {
			t.Fatalf("unknown type: %d %+v", code, res)
		}
	}
	known, _ := events.New(context.Background(), "process-transaction", "billfn.hold.created", "s", payment{6})
	s := structured(t, known)
	if code, res := g.send(g.signed(s, ct(events.TopicTransaction)), s); code != 200 || res.Ignored != 1 {
		t.Fatalf("unhandled type: %d %+v", code, res)
	}
	wrong := newEvent(t, 7) // billfn.payment.captured, handled, but read from transaction-events
	s = structured(t, wrong)
	if code, res := g.send(g.signed(s, ct(events.TopicTransaction)), s); code != 200 || res.Ignored != 1 || res.Processed != 0 {
		t.Fatalf("wrong topic: %d %+v", code, res)
	}
	right := newEvent(t, 8)
	s = structured(t, right)
	if code, res := g.send(g.signed(s, ct(events.TopicPayment)), s); code != 200 || res.Processed != 1 {
		t.Fatalf("right topic: %d %+v", code, res)
	}
	if n, total := g.sum(); n != 1 || total != 8 {
		t.Errorf("effects %d (sum %d), want only the event on its own topic", n, total)
	}
	got := unexpectedCount(t, g.consumer)
	want := map[string]float64{"other unknown_type": 3, "billfn.hold.created unhandled": 1, "billfn.payment.captured wrong_topic": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("unexpected events %v, want %v", got, want)
			break
		}
	}
	if len(got) != len(want) {
		t.Errorf("unexpected events %v, want %v", got, want)
	}
	text := logs.String()
	if n := strings.Count(text, `"level":"DEBUG","msg":"event not applied"`); n != 5 {
		t.Errorf("%d debug lines, want 5:\n%s", n, text)
	}
	if !strings.Contains(text, `"event_id":"`+wrong.ID()+`"`) || !strings.Contains(text, `"reason":"wrong_topic"`) {
		t.Errorf("the wrong-topic line does not name the event id and reason:\n%s", text)
	}
}

// The emitter table, generated from the contract: every fact has one owner
// among the functions, commands are open to any source.
func TestAllowedSource(t *testing.T) {
	spot := map[string]string{
		"billfn.account.updated": "process-transaction", "billfn.transaction.rejected": "process-transaction",
		"billfn.hold.expired": "process-transaction", "billfn.hold.capture_requested": "capture-payment",
		"billfn.hold.void_requested": "capture-payment", "billfn.invoice.payment_unapplied": "generate-invoice",
		"billfn.invoice.payment_retry_requested": "generate-invoice", "billfn.notification.requested": "generate-invoice",
		"billfn.subscription.canceled": "generate-invoice", "billfn.payment.disputed": "capture-payment",
		"billfn.refund.failed": "capture-payment", "billfn.payment.gateway_updated": "handle-webhook",
	}
	for typ, want := range spot {
		if got, ok := events.Emitter(typ); !ok || got != want {
			t.Errorf("%s: emitted by %q %v, want %s", typ, got, ok, want)
		}
	}
	for _, typ := range events.ContractTypes() {
		if _, ok := events.ContractTopic(typ); !ok {
			t.Errorf("%s has no topic", typ)
		}
		if events.IsCommand(typ) {
			for _, src := range append(events.Functions, "kcat", "integrator") {
				if !events.AllowedSource(typ, events.Source(src)) {
					t.Errorf("command %s refused from %s", typ, src)
				}
			}
			continue
		}
		owner, ok := events.Emitter(typ)
		if !ok {
			t.Errorf("fact %s has no owner", typ)
			continue
		}
		for _, src := range append(events.Functions, "kcat") {
			if got := events.AllowedSource(typ, events.Source(src)); got != (src == owner) {
				t.Errorf("%s from %s: allowed %v", typ, src, got)
			}
		}
		if events.AllowedSource(typ, owner) { // the bare name is not the source
			t.Errorf("%s from %q (not /functions/…) allowed", typ, owner)
		}
	}
	for _, typ := range []string{"billfn.transaction.requested", "billfn.invoice.requested"} {
		if !events.IsCommand(typ) {
			t.Errorf("%s is not a command", typ)
		}
	}
	for _, typ := range []string{"", "com.example.thing", "billfn.nope.created", "billfn.invoice"} {
		if events.AllowedSource(typ, events.Source("process-transaction")) {
			t.Errorf("unknown type %q allowed", typ)
		}
	}
}

// Every fact type delivered from its owner is applied; from any other
// function or an outsider it is parked with a reason naming the type, the
// source and the owner, before any handler runs, and counted. Commands
// are applied from anyone.
func TestReceiverAcceptsFactsOnlyFromTheirOwner(t *testing.T) {
	g := newRig(t, false)
	pool := testenv.Pool(t)
	var ran int
	for _, typ := range events.ContractTypes() {
		g.rc.On(typ, func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
			ran++
			_, err := tx.Exec(ctx, `INSERT INTO `+g.table+` VALUES ($1, 1)`, ev.ID())
			return err
		})
	}
	send := func(typ, src string) events.Result {
		t.Helper()
		ev, err := events.New(context.Background(), src, typ, "s", payment{1})
		if err != nil {
			t.Fatal(err)
		}
		s := structured(t, ev)
		code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s)
		if code != 200 {
			t.Fatalf("%s from %s: %d", typ, src, code)
		}
		if res.Parked == 1 {
			var reason string
			if err := pool.QueryRow(context.Background(), `SELECT error FROM dead_letters WHERE consumer = $1 AND event_id = $2 AND source = $3`,
				g.consumer, ev.ID(), ev.Source()).Scan(&reason); err != nil {
				t.Fatalf("%s from %s parked without a dead letter: %v", typ, src, err)
			}
			owner, _ := events.Emitter(typ)
			for _, want := range []string{typ, ev.Source(), events.Source(owner)} {
				if !strings.Contains(reason, want) {
					t.Errorf("the reason %q does not name %s", reason, want)
				}
			}
		}
		return res
	}
	applied, parked := 0, 0
	for _, typ := range events.ContractTypes() {
		owner, fact := events.Emitter(typ)
		for _, src := range append(events.Functions, "kcat") {
			res := send(typ, src)
			switch {
			case !fact || src == owner:
				applied++
				if res.Processed != 1 {
					t.Errorf("%s from %s: %+v, want applied", typ, src, res)
				}
			default:
				parked++
				if res.Parked != 1 || res.Processed != 0 {
					t.Errorf("%s from %s: %+v, want parked", typ, src, res)
				}
			}
		}
	}
	if n, _ := g.sum(); n != applied || ran != applied {
		t.Errorf("%d effects, %d handler runs, want %d: a foreign fact reached a handler", n, ran, applied)
	}
	var foreign float64
	for k, v := range unexpectedCount(t, g.consumer) {
		if strings.HasSuffix(k, " "+events.ReasonForeignSource) {
			foreign += v
		}
	}
	if int(foreign) != parked {
		t.Errorf("%v foreign_source counted, want %d", foreign, parked)
	}
}

// A foreign fact in a batch is parked alone; the rest of the batch is
// applied, with the batch handler and without it, and a redelivery applies
// nothing twice.
func TestForeignFactInABatchIsParkedAlone(t *testing.T) {
	for _, batch := range []bool{true, false} {
		g := newRig(t, batch)
		forged := func(amount int64) events.Event {
			ev, err := events.New(context.Background(), "handle-webhook", "billfn.payment.captured", "s", payment{amount})
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}
		evs := []events.Event{newEvent(t, 1), forged(100), newEvent(t, 2), forged(200), newEvent(t, 4)}
		b, _ := json.Marshal(evs)
		code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
		if code != 200 || res.Processed != 3 || res.Parked != 2 {
			t.Fatalf("batch=%v: %d %+v, want 3 applied and 2 parked", batch, code, res)
		}
		if n, total := g.sum(); n != 3 || total != 7 {
			t.Fatalf("batch=%v: %d effects summing to %d, want 3 summing to 7", batch, n, total)
		}
		var dead int
		testenv.Pool(t).QueryRow(context.Background(), `SELECT count(*) FROM dead_letters WHERE consumer = $1 AND source = $2
			AND error LIKE '%only capture-payment%'`, g.consumer, events.Source("handle-webhook")).Scan(&dead)
		if dead != 2 {
			t.Fatalf("batch=%v: %d dead letters, want the 2 forged events", batch, dead)
		}
		code, res = g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
		if code != 200 || res.Processed != 0 || res.Duplicates != 3 {
			t.Fatalf("batch=%v redelivered: %d %+v", batch, code, res)
		}
		if n, total := g.sum(); n != 3 || total != 7 {
			t.Fatalf("batch=%v redelivered: %d effects summing to %d", batch, n, total)
		}
		if got := unexpectedCount(t, g.consumer)["billfn.payment.captured foreign_source"]; got != 4 {
			t.Errorf("batch=%v: %v foreign_source, want 4 (two per delivery)", batch, got)
		}
	}
}

// docs/events.md's "Who may emit each type" says what the contract's table
// says, for every type the contract names, and names no other.
func TestDocsSayWhoMayEmitEachType(t *testing.T) {
	doc, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "\n## Who may emit each type\n")
	if !ok {
		t.Fatal(`docs/events.md has no "## Who may emit each type"`)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	documented := map[string]string{}
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 4 || !strings.Contains(cells[1], "`billfn.") {
			continue
		}
		who := strings.TrimSpace(cells[2])
		parts := strings.Split(cells[1], "`")
		for i := 1; i < len(parts); i += 2 {
			documented[parts[i]] = who
		}
	}
	for _, typ := range events.ContractTypes() {
		want := "any (command)"
		if owner, ok := events.Emitter(typ); ok {
			want = owner
		} else if !events.IsCommand(typ) {
			t.Errorf("%s is neither a fact with an owner nor a command", typ)
		}
		if got, ok := documented[typ]; !ok {
			t.Errorf("docs/events.md does not say who may emit %s (%s)", typ, want)
		} else if got != want {
			t.Errorf("docs/events.md: %s may be emitted by %q, the contract says %q", typ, got, want)
		}
		delete(documented, typ)
	}
	for typ := range documented {
		t.Errorf("docs/events.md names %s, the contract does not", typ)
	}
}

func TestMatchesType(t *testing.T) {
	patterns := []string{"billfn.invoice.*", "billfn.payment.captured"}
	for typ, want := range map[string]bool{
		"billfn.invoice.paid":     true,
		"billfn.payment.captured": true,
		"billfn.payment.failed":   false,
		"billfn.invoicex.paid":    false,
		"":                        false,
	} {
		if got := events.MatchesType(patterns, typ); got != want {
			t.Errorf("MatchesType(%v, %q) = %v, want %v", patterns, typ, got, want)
		}
	}
	if events.MatchesType(nil, "billfn.invoice.paid") {
		t.Error("no pattern matched a type")
	}
}
