package main

// Several kafka-triggers (BILLFN_TRIGGERS): they share the consumer groups,
// and killing one moves its partitions on without losing a record or
// applying one twice.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/billfn/billfn/cmd/internal/kafkaacl"
	"github.com/billfn/billfn/shared/events"
)

// assignment is one "partitions assigned" line of a kafka-trigger: the
// partitions one process delivers for one function from a generation of
// its group on.
type assignment struct {
	proc       string // kafka-trigger, kafka-trigger#2, …
	target     string
	generation int
	partitions []string // topic/partition
}

// assignments reads every "partitions assigned" line of the stack's
// output so far.
func (e *e2e) assignments() []assignment {
	var out []assignment
	for _, line := range strings.Split(e.out.String(), "\n") {
		name, rest, ok := strings.Cut(line, " | ")
		if !ok || !strings.HasPrefix(strings.TrimSpace(name), "kafka-trigger") || !strings.Contains(rest, `"partitions assigned"`) {
			continue
		}
		var m struct {
			Target     string `json:"target"`
			Generation int    `json:"generation"`
			Partitions string `json:"partitions"`
		}
		if json.Unmarshal([]byte(rest), &m) != nil {
			continue
		}
		a := assignment{proc: strings.TrimSpace(name), target: m.Target, generation: m.Generation}
		if m.Partitions != "" {
			a.partitions = strings.Split(m.Partitions, ",")
		}
		out = append(out, a)
	}
	return out
}

// holders maps each partition of target's group to the processes the
// group's generation gen gave it to (more than one would be a bug).
func holders(as []assignment, target string, gen int) map[string][]string {
	out := map[string][]string{}
	for _, a := range as {
		if a.target == target && a.generation == gen {
			for _, p := range a.partitions {
				out[p] = append(out[p], a.proc)
			}
		}
	}
	return out
}

// lastGeneration is the newest generation of target's group in as.
func lastGeneration(as []assignment, target string) int {
	g := -1
	for _, a := range as {
		if a.target == target {
			g = max(g, a.generation)
		}
	}
	return g
}

// Two kafka-triggers share process-transaction's consumer group; a stream
// of transfer requests is produced into transaction-events while one of
// them is killed with SIGKILL. Its partitions go on being delivered (to the
// survivor and to the process the stack starts in its place), and every
// request is applied exactly once: one posted transfer per request, each
// account's balance the sum of what was requested for it, the report
// counting each once, the ledger balanced, nothing parked.
func TestTwoTriggersOneKilledUnderAStreamOfEvents(t *testing.T) {
	e := startStack(t, stackOptions{env: []string{"BILLFN_TRIGGERS=2", "RATE_LIMIT=off"}})
	const target, topic = "process-transaction", events.TopicTransaction
	partitions := int(events.Topics[topic])

	procs := e.processesOf("kafka-trigger")
	if len(procs) != 2 {
		t.Fatalf("%d kafka-trigger processes with BILLFN_TRIGGERS=2", len(procs))
	}
	if addrs := e.triggerAddrs(); len(addrs) != 2 || addrs[0] == addrs[1] {
		t.Fatalf("the triggers' metrics addresses %v", addrs)
	}
	var victim, scheduler int
	for pid, env := range procs {
		switch {
		case slices.Contains(env, "SCHEDULES=true"):
			scheduler = pid
		case slices.Contains(env, "SCHEDULES=false"):
			victim = pid
		}
	}
	if victim == 0 || scheduler == 0 {
		t.Fatalf("want one trigger running the schedules and one not: %v", procs)
	}

	// Both take part in the group: the partitions are split between them.
	var gen0 int
	e.eventually("both triggers to hold some of "+target+"'s partitions", time.Minute, func() bool {
		as := e.assignments()
		gen0 = lastGeneration(as, target)
		procsOf := map[string]bool{}
		n := 0
		for p, hs := range holders(as, target, gen0) {
			if strings.HasPrefix(p, topic+"/") {
				n++
				for _, h := range hs {
					procsOf[h] = true
				}
			}
		}
		return n == partitions && len(procsOf) == 2
	})
	for p, hs := range holders(e.assignments(), target, gen0) {
		if len(hs) != 1 {
			t.Errorf("generation %d: %s held by %v", gen0, p, hs)
		}
	}

	// Customers the requests pay into, from SYS-EXTERNAL-USD.
	var custs []customer
	for i := 0; i < 8; i++ {
		custs = append(custs, e.newCustomer("USD"))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kafka), e.kafkaLogin(kafkaacl.Integrator), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	prefix := "trig-" + uuid.NewString()[:8] + "-"
	want := map[string]int64{} // account → sum requested
	var total int64
	const n, killAt = 600, 200
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	var killedAt time.Time
	for i := 0; i < n; i++ {
		c := custs[rng.IntN(len(custs))]
		amount := int64(1 + rng.IntN(999))
		ev, err := events.New(context.Background(), "outside", "billfn.transaction.requested", c.account, map[string]any{
			"from_account_number": "SYS-EXTERNAL-USD", "to_account_id": c.account, "amount": amount, "currency": "USD",
			"reference_id": prefix + strconv.Itoa(i), "description": "a stream through two triggers"})
		if err != nil {
			t.Fatal(err)
		}
		value, err := events.Marshal(e.asIntegrator(t, ev))
		if err != nil {
			t.Fatal(err)
		}
		// Keyed by a request of its own, so the stream covers every partition.
		rec := &kgo.Record{Topic: topic, Key: []byte(uuid.NewString()), Value: value,
			Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte(events.ContentTypeStructured)}}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = cl.ProduceSync(ctx, rec).FirstErr()
		cancel()
		if err != nil {
			t.Fatalf("produce request %d: %v", i, err)
		}
		want[c.account] += amount
		total += amount
		if i == killAt {
			if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killedAt = time.Now()
			t.Logf("killed the kafka-trigger %d (SIGKILL) after %d of %d requests", victim, killAt+1, n)
		}
		time.Sleep(25 * time.Millisecond) // a stream, not a burst: the kill lands in the middle of it
	}

	// Every request applied, each once.
	e.eventually("every request to be posted", 3*time.Minute, func() bool {
		return e.scalar(`SELECT count(*) FROM transfers WHERE reference_id LIKE $1 AND status = 'posted'`, prefix+"%") >= n
	})
	e.quiesce(2 * time.Minute)

	// The group moved on after the kill: a later generation delivers every
	// partition again, each from one process.
	as := e.assignments()
	last := lastGeneration(as, target)
	if last <= gen0 {
		t.Errorf("no rebalance of %s's group after the kill (generation %d before, %d now)", target, gen0, last)
	}
	hs := holders(as, target, last)
	for p := 0; p < partitions; p++ {
		if h := hs[topic+"/"+strconv.Itoa(p)]; len(h) != 1 {
			t.Errorf("generation %d: %s/%d held by %v", last, topic, p, h)
		}
	}
	if p := e.pidOf("kafka-trigger"); p == 0 || len(e.processesOf("kafka-trigger")) != 2 {
		t.Errorf("the stack did not replace the killed trigger: %v", e.processesOf("kafka-trigger"))
	}
	var after []string
	for _, a := range as {
		if a.target == target && a.generation > gen0 {
			after = append(after, fmt.Sprintf("%s gen %d: %d partitions", a.proc, a.generation, len(a.partitions)))
		}
	}
	t.Logf("after the kill (%s ago), %s's group: %s", time.Since(killedAt).Round(time.Second), target, strings.Join(after, "; "))

	if got := e.scalar(`SELECT count(*) FROM transfers WHERE reference_id LIKE $1`, prefix+"%"); got != n {
		t.Errorf("%d transfers for %d requests", got, n)
	}
	if got := e.scalar(`SELECT count(DISTINCT reference_id) FROM transfers WHERE reference_id LIKE $1 AND status = 'posted'`, prefix+"%"); got != n {
		t.Errorf("%d distinct requests posted, want %d", got, n)
	}
	if got := e.scalar(`SELECT coalesce(sum(amount), 0) FROM transfers WHERE reference_id LIKE $1 AND status = 'posted'`, prefix+"%"); got != total {
		t.Errorf("posted %d in all, requested %d", got, total)
	}
	for _, c := range custs {
		if b := e.balance(c.account); b != want[c.account] {
			t.Errorf("account %s: balance %d, requested %d", c.number, b, want[c.account])
		}
	}
	if p := e.ledgerProblems(); len(p) > 0 {
		t.Errorf("ledger: %v", p)
	}
	if dl := e.deadLetters(); len(dl) > 0 {
		t.Errorf("parked: %v", dl)
	}
	e.eventually("the report to count every transfer once", time.Minute, func() bool {
		c, a := figure(e.summary("USD", ""), "transfers.posted")
		return c == n && a == total
	})
	var delivered float64
	for _, addr := range e.triggerAddrs() {
		delivered += metric(t, "http://"+addr+"/metrics", "billfn_trigger_deliveries_total",
			`function="`+target+`"`, `topic="`+topic+`"`, `result="delivered"`)
	}
	t.Logf("%d requests (and their %d posted events) applied once; the running triggers count %.0f deliveries to %s since their start",
		n, n, delivered, target)
}
