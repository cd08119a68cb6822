// Package outbox is the transactional outbox: events are inserted in the
// same Postgres transaction as the business write, and published to Kafka
// afterwards, so a Kafka outage delays events but never loses one.
//
// A row is deleted once Kafka has acknowledged it: the table is the backlog.
//
// Publishing has one code path used two ways. Right after a commit the
// function calls Kick, and the publisher's goroutine sends the fresh rows
// (the fast path, a few milliseconds later). A schedule tick calls Sweep,
// which runs the same pass for whatever the fast path missed (Kafka was
// down, the process died after commit). A pass takes its source's
// advisory lock (orderSQL), so the passes of every replica take turns and
// a key's events keep their order, and locks its rows with FOR UPDATE SKIP
// LOCKED, so concurrent passes never send a row twice, in two round trips
// to Postgres: BEGIN, the lock and the SELECT pipelined, then the DELETE
// and the COMMIT.
//
// Records are CloudEvents in structured mode: the value is the JSON
// envelope, header content-type: application/cloudevents+json, key = the
// aggregate id that needs ordering. A pass goes to Kafka as one Produce
// request per leader broker (acks=all; passProducer), partitioned as
// sarama's producer partitions by key; a pass that fails is sent again by
// the next, and consumers apply each event id once.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	gometrics "github.com/rcrowley/go-metrics"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/kafkaauth"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/problem"
)

// Config is the Kafka part of a function's configuration.
type Config struct {
	Brokers []string `envconfig:"KAFKA_BROKERS" default:"127.0.0.1:9092"`
	// SASL is how the publisher authenticates (KAFKA_SASL_MECHANISM,
	// KAFKA_USERNAME, the password from its secret file); none when unset.
	SASL kafkaauth.Config
}

// Message is one event bound for a topic.
type Message struct {
	Topic string
	Key   string // the aggregate id; records with one key stay in order
	Event events.Event
}

// Add inserts messages into the outbox inside tx, for source (the
// function), unsigned: the publisher signs them as it relays them. A
// function with its origin key writes through a Writer instead.
func Add(ctx context.Context, tx pgx.Tx, source string, msgs ...Message) error {
	return Writer{Source: source}.Add(ctx, tx, msgs...)
}

// Writer inserts one function's outbox rows. With a Signer (the function's
// origin key, the publisher's), each event of the function's own source is
// signed as it is written, while it is in hand encoded, and its row names
// the key (origin_kid): the publisher relays it as it is, where it would
// otherwise decode every row to sign it (4–5 % of a function's CPU). Rows
// without a key id (other sources' events, rows of a Writer without a
// Signer or written before the column) are still signed at publish, and so
// is a row whose key is no longer the publisher's (a rotated key).
type Writer struct {
	Source string
	Signer *events.OriginSigner
}

// Written says whether outbox rows were written under a context (Tracking):
// an event delivery's, whose route kicks the publisher only then (most
// deliveries write none, and each kick runs a publisher pass, a commit,
// that finds nothing: issue 20). A write noted whose transaction then
// rolls back costs one such pass, no more.
type Written struct{ atomic.Bool }

type writtenKey struct{}

// Tracking returns ctx under which Add, and Wrote, note writes in w.
func Tracking(ctx context.Context, w *Written) context.Context {
	return context.WithValue(ctx, writtenKey{}, w)
}

// Wrote notes in ctx's Written that outbox rows were written: Add does it
// itself; a statement that writes them through InsertSQL or Rows says so.
func Wrote(ctx context.Context) {
	if w, ok := ctx.Value(writtenKey{}).(*Written); ok {
		w.Store(true)
	}
}

// InsertSQL writes the rows whose columns Writer.Rows gives ($1–$6) into
// the outbox. A statement that writes its event in the same round trip as
// its own row (a CTE) takes the same arguments.
const InsertSQL = `INSERT INTO outbox (source, event_id, topic, key, payload, origin_kid)
		SELECT $1, e, t, k, p, o FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[]) AS x(e, t, k, p, o)`

// Add inserts msgs into the outbox inside tx, and notes it in ctx's
// Written (Tracking).
func (w Writer) Add(ctx context.Context, tx pgx.Tx, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	Wrote(ctx)
	args, err := w.Rows(msgs...)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, InsertSQL, args...)
	return err
}

// AddLater is Add leaving the events it would sign together unsigned
// (RowsLater), in the statement it queues on tx: a group commit's write
// (pgbatch.Queue) hands them to its group (pgbatch.Write.Events), which
// signs its writes' events together before it runs.
func (w Writer) AddLater(ctx context.Context, tx pgx.Tx, msgs ...Message) (*events.Unsigned, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	Wrote(ctx)
	args, u, err := w.RowsLater(msgs...)
	if err != nil {
		return nil, err
	}
	_, err = tx.Exec(ctx, InsertSQL, args...)
	return u, err
}

// Rows encodes msgs (each event signed as Add writes it) into InsertSQL's
// six arguments: the source, then the event ids, topics, keys, payloads and
// origin key ids, one element per message. The events the writer signs
// and MarshalLater writes are signed together (one signature for up to 32
// of them, events.OriginSigner.SignAll); any other alone, as encode does.
func (w Writer) Rows(msgs ...Message) ([]any, error) {
	args, u, err := w.RowsLater(msgs...)
	if err != nil {
		return nil, err
	}
	events.SignTogether(u)
	return args, nil
}

// RowsLater is Rows leaving the events it would sign together unsigned,
// in the payloads argument it returns: their rows' key id is the
// writer's already, and events.SignTogether must sign them before the
// rows are written (an event with a key id and no proof is relayed as it
// is, and refused by every consumer). The Unsigned is nil when there is
// nothing to sign.
func (w Writer) RowsLater(msgs ...Message) ([]any, *events.Unsigned, error) {
	ids := make([]string, len(msgs))
	topics := make([]string, len(msgs))
	keys := make([]string, len(msgs))
	payloads := make([][]byte, len(msgs))
	kids := make([]*string, len(msgs))
	var u *events.Unsigned
	var writerKid *string // the writer's key id, one for the rows it signs
	for i, m := range msgs {
		ids[i], topics[i], keys[i] = m.Event.ID(), m.Topic, m.Key
		if w.Signer != nil && events.From(m.Event, w.Source) {
			if b, msg, ok := events.MarshalLater(m.Event); ok {
				if u == nil {
					k := w.Signer.KeyID()
					writerKid, u = &k, w.Signer.Unsigned(payloads)
				}
				payloads[i], kids[i] = b, writerKid
				u.Add(i, msg)
				continue
			}
		}
		b, kid, err := w.encode(m.Event)
		if err != nil {
			return nil, nil, fmt.Errorf("outbox: encode %s: %w", m.Event.Type(), err)
		}
		payloads[i], kids[i] = b, kid
	}
	return []any{w.Source, ids, topics, keys, payloads, kids}, u, nil
}

// encode returns ev's payload, signed when the writer signs it (as sign
// decides), and the proof's key id (nil when unsigned). An event as
// events.New builds it is written by OriginSigner.MarshalEvent, by hand:
// events.Marshal (encoding/json over the SDK's MarshalJSON) and
// SignEncoded's OriginBytes cost capture-payment about a tenth of its CPU,
// as much as the Ed25519 signature itself. Any other event goes through
// events.Marshal and sign as before. Both write the same bytes
// (TestWriterEncodeIsMarshalThenSign, FuzzWriterEncodeIsMarshalThenSign).
func (w Writer) encode(ev events.Event) ([]byte, *string, error) {
	var s *events.OriginSigner
	if w.Signer != nil && events.From(ev, w.Source) {
		s = w.Signer
	}
	if b, ok := s.MarshalEvent(ev); ok {
		if s == nil {
			return b, nil, nil
		}
		kid := s.KeyID()
		return b, &kid, nil
	}
	b, err := events.Marshal(ev)
	if err != nil {
		return nil, nil, err
	}
	b, kid := w.sign(ev, b)
	return b, kid, nil
}

// sign returns the payload b of ev with the writer's origin proof and the
// proof's key id; b itself and nil when the writer has no key or ev is of
// another source (the publisher decides about it, as before).
func (w Writer) sign(ev events.Event, b []byte) ([]byte, *string) {
	if w.Signer == nil || !events.From(ev, w.Source) {
		return b, nil
	}
	kid := w.Signer.KeyID()
	if signed, ok := w.Signer.SignEncoded(ev, b); ok {
		return signed, &kid
	}
	// An earlier proof (or a payload SignEncoded cannot extend): sign a
	// copy, so the caller's event is left as it was.
	c := ev.Clone()
	w.Signer.Sign(&c)
	signed, err := events.Marshal(c)
	if err != nil {
		return b, nil
	}
	return signed, &kid
}

func init() {
	// sarama keeps rcrowley/go-metrics histograms of every request; billfn
	// exports its own Prometheus metrics and never reads them, and on the
	// hot path they cost measurable CPU.
	gometrics.UseNilMetrics = true
}

var (
	published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "billfn_outbox_published_total", Help: "Outbox events published to Kafka.",
	}, []string{"source"})
	publishErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "billfn_outbox_publish_errors_total", Help: "Failed outbox publish passes (Kafka unreachable or refusing).",
	}, []string{"source"})
)

// Collectors returns the package's metrics; a publisher's depth and age
// are its own Collector.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{published, publishErrors, unsignable}
}

var (
	backlogDesc = prometheus.NewDesc("billfn_outbox_backlog",
		"Outbox events not yet published (the table's rows of the source), read when scraped.", []string{"source"}, nil)
	oldestDesc = prometheus.NewDesc("billfn_outbox_oldest_unpublished_age_seconds",
		"Age of the oldest outbox event not yet published (0 when none), read when scraped.", []string{"source"}, nil)
)

// Collector reports the publisher's outbox depth and the age of its
// oldest unpublished row, read from the table when Prometheus scrapes
// (one indexed query per scrape, nothing on the publishing path), so the
// figures are those of the moment, whichever process or sweep publishes.
// A scrape that cannot reach Postgres reports neither.
func (p *Publisher) Collector() prometheus.Collector { return outboxCollector{p} }

type outboxCollector struct{ p *Publisher }

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- backlogDesc; ch <- oldestDesc }

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n int64
	var age float64
	err := c.p.pool.QueryRow(ctx, `SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM outbox WHERE source = $1`, c.p.source).Scan(&n, &age)
	if err != nil {
		slog.Warn("outbox: cannot read the backlog for /metrics", "source", c.p.source, "err", err.Error())
		return
	}
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(n), c.p.source)
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, max(age, 0), c.p.source)
}

// Publisher sends one function's outbox rows to Kafka.
type Publisher struct {
	pool      *pgxpool.Pool
	source    string
	brokers   []string
	BatchSize int
	// Linger is how long a pass waits after the first Kick for more
	// commits, so one pass (one Postgres transaction, one Kafka request)
	// carries the events of many (DefaultLinger unless changed).
	Linger time.Duration

	// Signer adds the function's origin proof (events.OriginSigner) to
	// each event as it is relayed to Kafka, so rows written unsigned (by
	// outbox.Add, or before the function had a key) are signed too. A row
	// a Writer signed with this same key (origin_kid) goes as it is; one
	// signed with another key (the function's key before a rotation) is
	// signed again with this one, so a retired key's proof never reaches
	// Kafka. Only events whose source is the publisher's own are signed;
	// nil relays the rows as they are.
	Signer *events.OriginSigner

	// Auth is the publisher's Kafka principal (set before Start); the
	// zero value connects without SASL.
	Auth kafkaauth.Config

	pass     sync.Mutex // one pass at a time in this process
	producer *passProducer

	kick chan struct{}
	// kicks counts Kick's calls. A pass that starts after a Kick sees
	// the rows committed before it; the kick waiting in the channel
	// then asks for nothing more, and the loop drops it (loop).
	kicks atomic.Uint64
	// batches counts the publish transactions (export_test.go).
	batches atomic.Int64
	// deleted counts the rows the passes deleted since the last vacuum
	// began; vacuums tracks the goroutine that runs them (vacuum), which
	// Close cancels (unvacuum).
	deleted   atomic.Int64
	vacuuming atomic.Bool
	vacuums   sync.WaitGroup
	vacuumCtx context.Context
	unvacuum  context.CancelFunc
	done      chan struct{}
	stop      context.CancelFunc
	backoff   time.Duration
}

// DefaultLinger is a publisher's Linger: an event reaches Kafka at most
// this long after its commit, plus the pass. The original design's
// producer lingered 5 ms; at that, a pass during sync transfers at a
// couple of thousand a second carried about a dozen events, spread over
// transaction-events' 12 partitions in batches of one or two, and every
// batch costs the same whatever it holds: kfake's two file writes as it
// is produced and a seek and a read for each consumer group that fetches
// it, the kafka-trigger's decoding, a relay transaction per pass. At 20 ms
// a transfer cost 15 % less CPU in all (825–893 µs against 976–1,057 in
// two alternated pairs, transfers through the gateway) and a payment 14–18
// % less (2,628–2,819 µs against 3,040–3,449), with 0.19 commits per
// transfer instead of 0.24; 50 ms saved nothing more (docs/platform.md,
// Batching, 2026-12-08). The events' consumers wait for their batches
// anyway (the kafka-trigger's batch-wait, 100 ms, counted from when the
// record reached Kafka).
const DefaultLinger = 20 * time.Millisecond

// NewPublisher returns a publisher for source's rows. It connects to Kafka
// lazily, so a function starts (and accepts writes) while Kafka is down.
func NewPublisher(pool *pgxpool.Pool, source string, brokers []string) *Publisher {
	// Both counters exist from the start: "0 failed passes", not "no data".
	published.WithLabelValues(source)
	publishErrors.WithLabelValues(source)
	p := &Publisher{pool: pool, source: source, brokers: brokers, BatchSize: 500, Linger: DefaultLinger,
		kick: make(chan struct{}, 1)}
	p.vacuumCtx, p.unvacuum = context.WithCancel(context.Background())
	return p
}

// Writer writes the publisher's source's rows signed with its Signer, so
// it relays them as they are.
func (p *Publisher) Writer() Writer { return Writer{Source: p.source, Signer: p.Signer} }

// Start runs the fast-path loop until Close.
func (p *Publisher) Start(ctx context.Context) {
	ctx, p.stop = context.WithCancel(context.WithoutCancel(ctx))
	p.done = make(chan struct{})
	go p.loop(ctx)
}

// Kick asks for a pass soon; call it after committing outbox rows. It never blocks.
func (p *Publisher) Kick() {
	p.kicks.Add(1)
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *Publisher) loop(ctx context.Context) {
	defer close(p.done)
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
			if retry != nil {
				continue // backing off after a failure; the retry timer will run the pass
			}
			if p.Linger > 0 {
				select {
				case <-time.After(p.Linger):
				case <-ctx.Done():
				}
			}
		case <-retry:
		}
		retry = nil
		// Every Kick counted before the pass begins came after its rows'
		// commit, so the pass's first SELECT sees them (and a Sweep reads
		// until a batch comes back short). A kick that arrived meanwhile
		// but was counted before the pass began is then already served:
		// a second pass would find nothing, one empty transaction more
		// per burst of commits. Any Kick counted after this point keeps
		// its pass.
		seen := p.kicks.Load()
		if _, err := p.Sweep(ctx); err != nil && ctx.Err() == nil {
			p.backoff = min(max(2*p.backoff, 500*time.Millisecond), 30*time.Second)
			retry = time.After(p.backoff)
		} else {
			p.backoff = 0
			if p.kicks.Load() == seen {
				select {
				case <-p.kick:
				default:
				}
			}
		}
	}
}

// Close stops the loop after one last pass and closes the producer.
func (p *Publisher) Close(ctx context.Context) {
	if p.stop != nil {
		p.stop()
		<-p.done
	}
	if _, err := p.Sweep(ctx); err != nil {
		slog.Warn("outbox: events left for the next sweep", "source", p.source, "err", err.Error())
	}
	p.pass.Lock()
	defer p.pass.Unlock()
	p.unvacuum() // the next publisher's vacuum will do it
	p.vacuums.Wait()
	if p.producer != nil {
		_ = p.producer.Close()
		p.producer = nil
	}
}

// Sweep publishes every pending row of this function, in batches, and
// returns how many it sent. It is safe to call from several processes.
func (p *Publisher) Sweep(ctx context.Context) (int, error) {
	p.pass.Lock()
	defer p.pass.Unlock()
	total := 0
	for {
		n, err := p.publishBatch(ctx)
		total += n
		if err != nil {
			publishErrors.WithLabelValues(p.source).Inc()
			return total, err
		}
		if n < p.BatchSize {
			return total, nil
		}
	}
}

// Backlog counts unpublished rows (Collector reports them to Prometheus).
func (p *Publisher) Backlog(ctx context.Context) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE source = $1`, p.source).Scan(&n)
	return n, err
}

// SweepHandler is an HTTP endpoint a schedule can call.
func (p *Publisher) SweepHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := p.Sweep(r.Context())
		if err != nil {
			problem.Write(w, r, &problem.Error{Code: problem.Unavailable, Detail: "Kafka is not reachable; events wait in the outbox", Err: err})
			return
		}
		left, _ := p.Backlog(r.Context())
		httpx.WriteJSON(w, http.StatusOK, map[string]int64{"published": int64(n), "backlog": left})
	})
}

// publishBatch runs one pass in two round trips to Postgres besides the
// Kafka request: BEGIN with the SELECT … FOR UPDATE in one pipelined
// batch, the DELETE with the COMMIT in another (a pass took four before,
// each one a write and a read of the socket here and a wake-up of the
// backend).
func (p *Publisher) publishBatch(ctx context.Context) (n int, err error) {
	p.batches.Add(1)
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	open := false // a transaction to roll back when the pass fails
	defer func() {
		if open {
			pgbatch.Rollback(conn)
		}
	}()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(orderSQL, p.source)
	b.Queue(passSQL, p.source, p.BatchSize)
	open = true
	ids, msgs, err := p.read(conn.SendBatch(ctx, b))
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		open = false
		_, err := conn.Exec(ctx, "COMMIT")
		return 0, err
	}
	prod, err := p.getProducer()
	if err != nil {
		open = false
		return 0, p.recordFailure(ctx, conn, ids, err)
	}
	sent, refused := ids, []int64(nil)
	var sendErr error
	if err := prod.SendMessages(msgs); err != nil {
		var perrs sarama.ProducerErrors
		if !errors.As(err, &perrs) {
			p.resetProducer()
			open = false
			return 0, p.recordFailure(ctx, conn, ids, err)
		}
		failed := make(map[int64]bool, len(perrs))
		for _, pe := range perrs {
			failed[pe.Msg.Metadata.(int64)] = true
		}
		sent = sent[:0:0]
		for _, id := range ids {
			if failed[id] {
				refused = append(refused, id)
			} else {
				sent = append(sent, id)
			}
		}
		p.resetProducer()
		sendErr = perrs[0].Err
		slog.Warn("outbox: Kafka refused some events; they stay for the next pass", "source", p.source,
			"refused", len(perrs), "err", sendErr.Error())
	}
	b = &pgx.Batch{}
	b.Queue(deleteSQL, p.source, sent)
	if len(refused) > 0 {
		b.Queue(refusedSQL, p.source, refused, sendErr.Error())
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}
	open = false
	published.WithLabelValues(p.source).Add(float64(len(sent)))
	if p.deleted.Add(int64(len(sent))) >= vacuumEvery && p.vacuuming.CompareAndSwap(false, true) {
		p.vacuums.Add(1)
		go p.vacuum()
	}
	if len(refused) > 0 {
		return len(sent), fmt.Errorf("outbox: %d events not accepted by Kafka: %w", len(refused), sendErr)
	}
	return len(sent), nil
}

// A pass reads its source's oldest rows by the primary key, and each row
// a pass deletes leaves a dead entry there that only VACUUM removes: until
// then every pass steps over them all (after 40,000 rows relayed, a pass
// read 183 pages where an empty outbox's reads 2). Autovacuum may never
// come (this machine's PostgreSQL runs without it) and otherwise looks at
// a database once a minute (autovacuum_naptime), while a busy function
// deletes thousands of rows a second. So every publisher vacuums the
// outbox itself each vacuumEvery rows it deleted (migration 00003's
// autovacuum threshold), on a connection of its own, beside the passes:
// SKIP_LOCKED leaves the table to a vacuum already under way (another
// function's, autovacuum's), TRUNCATE OFF never takes the lock that would
// stop the writers to give back the table's empty tail, which the next
// rows reuse anyway. A role that does not own the table gets a warning
// from PostgreSQL, not an error, and the passes go on as before
// (TestTheRelayKeepsTheOutboxLean).
const (
	vacuumEvery = 5000
	vacuumSQL   = `VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON, TRUNCATE OFF) outbox`
)

// vacuum runs vacuumSQL until fewer than vacuumEvery rows were deleted
// since the last one began, so rows deleted while one runs are never left
// for long: once it returns, fewer than vacuumEvery dead entries are
// younger than the last vacuum.
func (p *Publisher) vacuum() {
	defer p.vacuums.Done()
	for {
		p.deleted.Store(0)
		ctx, cancel := context.WithTimeout(p.vacuumCtx, time.Minute)
		if _, err := p.pool.Exec(ctx, vacuumSQL); err != nil && ctx.Err() == nil {
			slog.Warn("outbox: vacuum failed; the next one will try again", "source", p.source, "err", err.Error())
		}
		cancel()
		if p.vacuumCtx.Err() != nil || p.deleted.Load() < vacuumEvery {
			p.vacuuming.Store(false)
			// A pass that crossed the threshold since the Load saw
			// vacuuming set and left the next one to this goroutine.
			if p.vacuumCtx.Err() != nil || p.deleted.Load() < vacuumEvery || !p.vacuuming.CompareAndSwap(false, true) {
				return
			}
		}
	}
}

// The statements of a pass, which find its rows by source and id, the
// outbox's primary key (migration 00006): the select of the oldest, the
// delete of those Kafka acknowledged, the note on those it refused.
const (
	passSQL = `SELECT id, topic, key, payload, origin_kid FROM outbox
		WHERE source = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`
	deleteSQL  = `DELETE FROM outbox WHERE source = $1 AND id = ANY($2)`
	refusedSQL = `UPDATE outbox SET attempts = attempts + 1, last_error = $3 WHERE source = $1 AND id = ANY($2)`
)

// orderSQL makes a source's passes, in every process, take turns: the
// pass holding it sends its rows and deletes them before the next one
// reads, so the events of one key reach Kafka in the order they were
// written. Without it a second replica's pass skipped the rows the first
// had locked and could send the rows behind them first: a payment's
// settlement ahead of its capture, which process-transaction rejects for
// want of funds (TestTwoRelaysKeepAKeysEventsInOrder). The lock is the
// transaction's, released by its COMMIT or ROLLBACK; the two-key form
// keeps it apart from the single-key advisory locks used elsewhere.
const orderSQL = `SELECT pg_advisory_xact_lock(1869968482, hashtext($1))`

// read takes the BEGIN, the lock and the SELECT of a pass from br and returns the
// rows as messages, signed where they still need it; it closes br.
func (p *Publisher) read(br pgx.BatchResults) (ids []int64, msgs []*sarama.ProducerMessage, err error) {
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	for range 2 { // BEGIN, orderSQL
		if _, err := br.Exec(); err != nil {
			return nil, nil, err
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id         int64
			topic, key string
			payload    []byte
			kid        *string
		)
		if err := rows.Scan(&id, &topic, &key, &payload, &kid); err != nil {
			return nil, nil, err
		}
		if p.Signer != nil && (kid == nil || *kid != p.Signer.KeyID()) {
			payload = p.sign(payload)
		}
		ids = append(ids, id)
		msgs = append(msgs, &sarama.ProducerMessage{
			Topic:    topic,
			Key:      sarama.StringEncoder(key),
			Value:    sarama.ByteEncoder(payload),
			Headers:  []sarama.RecordHeader{{Key: []byte("content-type"), Value: []byte(events.ContentTypeStructured)}},
			Metadata: id,
		})
	}
	rows.Close()
	return ids, msgs, rows.Err()
}

var unsignable = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "billfn_outbox_unsigned_total",
	Help: "Outbox events relayed without an origin proof: not a CloudEvent, or of a source other than the publisher's (consumers park them).",
}, []string{"source"})

// sign returns payload with the publisher's origin proof. An event it may
// not sign (another source's, or not an event at all) goes as it is,
// counted and logged: consumers park it, and it does not hold up the
// rows behind it.
func (p *Publisher) sign(payload []byte) []byte {
	ev, err := events.Unmarshal(payload)
	if err == nil && !events.From(ev, p.source) {
		err = fmt.Errorf("its source %q is not %s", ev.Source(), events.Source(p.source))
	}
	if err == nil {
		if b, ok := p.Signer.SignEncoded(ev, payload); ok {
			return b
		}
		p.Signer.Sign(&ev)
		var b []byte
		if b, err = events.Marshal(ev); err == nil {
			return b
		}
	}
	unsignable.WithLabelValues(p.source).Inc()
	slog.Warn("outbox: event relayed without an origin proof; consumers will park it", "source", p.source, "err", err.Error())
	return payload
}

// recordFailure notes the error on the rows (for operators) and commits.
func (p *Publisher) recordFailure(ctx context.Context, conn *pgxpool.Conn, ids []int64, cause error) error {
	b := &pgx.Batch{}
	b.Queue(refusedSQL, p.source, ids, cause.Error())
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		pgbatch.Rollback(conn)
	}
	slog.Warn("outbox: Kafka unavailable; events stay in the outbox", "source", p.source, "pending", len(ids), "err", cause.Error())
	return cause
}

func (p *Publisher) getProducer() (*passProducer, error) {
	if p.producer != nil {
		return p.producer, nil
	}
	cfg := ProducerConfig()
	if err := p.Auth.Apply(cfg); err != nil {
		return nil, err
	}
	prod, err := newPassProducer(p.brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to Kafka %v: %w", p.brokers, err)
	}
	p.producer = prod
	return prod, nil
}

func (p *Publisher) resetProducer() {
	if p.producer != nil {
		_ = p.producer.Close()
		p.producer = nil
	}
}

// ProducerConfig is the sarama configuration of billfn's producers (the
// outbox's passProducer, the kafka-trigger's dead-letter producer):
// acks=all, idempotent where sarama's producer sends (one in-flight request
// per broker; passProducer retries nothing itself), short timeouts so
// an outage fails a pass quickly instead of stalling it, and no compression:
// an event is a kilobyte or two of JSON, and snappy cost the producing
// function an encoding and every consumer group a decoding of each batch
// (2 % of capture-payment's CPU, 6 % of the kafka-trigger's in make bench's
// payments, 2026-12-05) to spare a few kilobytes per batch. On a cluster
// whose network or disks matter more than that CPU, the topic's own
// compression.type has the brokers compress what they store, with no
// change here.
func ProducerConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.ClientID = "billfn"
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Retry.Max = 3
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Compression = sarama.CompressionNone
	c.Net.MaxOpenRequests = 1
	c.Net.DialTimeout = 2 * time.Second
	c.Net.ReadTimeout = 5 * time.Second
	c.Net.WriteTimeout = 5 * time.Second
	c.Metadata.Retry.Max = 1
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	return c
}
