// Command kafka-trigger delivers Kafka records to billfn's functions over
// HTTP, and runs their schedules: the free counterpart of OpenFaaS's
// kafka-connector (a paid component) plus its cron-connector, and the same
// binary on a laptop (make run) and in a cluster next to OpenFaaS CE.
//
// Which function receives which topics comes from the functions'
// annotations, as the OpenFaaS connectors read them: "topic" lists Kafka
// topics (and cron-function for a schedule), "schedule" is the cron
// expression, "billfn.dev/batch-size" asks for batched deliveries. They are
// read from the gateway's /system/functions (refreshed every
// REFRESH_INTERVAL), or from a stack.yml when STACK_FILE is set.
//
// For every function there is one sarama consumer group
// (GROUP_PREFIX<function>). Several triggers may run side by side: they
// share the groups, Kafka splits the partitions between them and hands a
// dead one's to the others (its uncommitted records are delivered again;
// the functions deduplicate them). Only one of them should run the
// schedules (SCHEDULES=false on the others). Each record is POSTed to
// GATEWAY_URL/function/<name>/ — the record value, a structured CloudEvent,
// as the body with Content-Type application/cloudevents+json (a binary-mode
// record becomes a binary-mode request), X-Topic, X-Kafka-Key,
// X-Kafka-Partition and X-Kafka-Offset — and signed with the first
// event-signing key (X-Billfn-Signature), so the function can tell a real
// delivery from a forged one, whoever produced the record.
//
// Records of one partition are delivered one after another; partitions in
// parallel, but a function that takes batches gets those of every
// partition of a topic in one batch, one batch at a time. A 2xx commits
// the offset. 5xx, 404, 408, 409, 425, 429, timeouts
// and connection errors are retried with exponential backoff (honouring
// Retry-After) until the function takes the record, the records behind it
// waiting, so a key's events are applied in the order written (or, with
// MAX_ATTEMPTS=N, N times, then dead-lettered); any other 4xx — the
// function will never accept the record — sends the record to DLQ_TOPIC
// with the error in its headers, then commits. Metrics (deliveries, lag per partition, ticks)
// are on METRICS_ADDR/metrics.
//
// The schedule ticks are the cron-connector's: an empty POST with
// X-Connector: cron-connector and X-Topic: cron-function, signed with the
// delivery key like every delivery (the functions refuse an unsigned tick
// with 401, so the stock cron-connector, which cannot sign, does not drive
// them). The stock cron-connector only schedules a function whose topic is
// exactly cron-function, so it cannot serve a function that also reads
// Kafka; this program schedules those too. SCHEDULE_EVERY replaces every schedule with a
// fixed period (the local stack ticks every few seconds).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/kafkaauth"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/telemetry"
)

// Config is the trigger's environment.
type Config struct {
	Brokers []string `envconfig:"KAFKA_BROKERS" default:"127.0.0.1:9092"`
	// SASL: the trigger's Kafka principal (KAFKA_SASL_MECHANISM,
	// KAFKA_USERNAME, the password from the secret file
	// kafka-password-<username>); no SASL when unset.
	SASL        kafkaauth.Config
	GatewayURL  string `envconfig:"GATEWAY_URL" default:"http://127.0.0.1:8080"`
	StackFile   string `envconfig:"STACK_FILE"`
	SigningKeys string `envconfig:"EVENT_SIGNING_KEYS" secret:"event-signing-key" required:"true"`
	// The gateway's basic-auth credentials for /system/functions, as
	// OpenFaaS mounts them for its connectors.
	GatewayUser     string `envconfig:"GATEWAY_USER" secret:"basic-auth-user"`
	GatewayPassword string `envconfig:"GATEWAY_PASSWORD" secret:"basic-auth-password"`

	GroupPrefix   string `envconfig:"GROUP_PREFIX" default:"kafka-trigger-"`
	InitialOffset string `envconfig:"INITIAL_OFFSET" default:"earliest"`
	DLQTopic      string `envconfig:"DLQ_TOPIC" default:"billfn-dlq"`
	// MaxAttempts: 0 (the default) retries a retryable failure until the
	// function takes the record, the records behind it waiting, so a
	// key's events are applied in order; N dead-letters it after N
	// attempts and moves on, which lets a key's later events overtake it.
	MaxAttempts     int             `envconfig:"MAX_ATTEMPTS" default:"0"`
	BackoffBase     config.Duration `envconfig:"BACKOFF_BASE" default:"200ms"`
	BackoffMax      config.Duration `envconfig:"BACKOFF_MAX" default:"30s"`
	DeliveryTimeout config.Duration `envconfig:"DELIVERY_TIMEOUT" default:"30s"`
	RefreshInterval config.Duration `envconfig:"REFRESH_INTERVAL" default:"30s"`

	Schedules     bool            `envconfig:"SCHEDULES" default:"true"`
	ScheduleEvery config.Duration `envconfig:"SCHEDULE_EVERY"`

	MetricsAddr string `envconfig:"METRICS_ADDR" default:":8081"`
	LogLevel    string `envconfig:"LOG_LEVEL" default:"info"`
}

// keys are the delivery-signing keys; the trigger signs with the first
// (during a rotation the functions accept the old and the new one, the
// trigger signs with the new). Every key of the list must be at least
// events.MinKeyLen bytes, as the functions require. They follow their
// secret file, event-signing-key, as the functions' do: a rotation needs
// no restart.
func (c Config) keys() (*events.KeyRing, error) {
	return events.WatchKeys(c.SigningKeys, "EVENT_SIGNING_KEYS", "event-signing-key", 0)
}

func (c Config) validate() error {
	var problems []string
	if len(c.Brokers) == 0 {
		problems = append(problems, "KAFKA_BROKERS is empty")
	}
	if err := c.SASL.Apply(sarama.NewConfig()); err != nil {
		problems = append(problems, err.Error())
	}
	if c.StackFile == "" && c.GatewayURL == "" {
		problems = append(problems, "set GATEWAY_URL (or STACK_FILE)")
	}
	if c.MaxAttempts < 0 {
		problems = append(problems, "MAX_ATTEMPTS must be 0 (retry until delivered) or a number of attempts")
	}
	if c.InitialOffset != "earliest" && c.InitialOffset != "latest" {
		problems = append(problems, "INITIAL_OFFSET must be earliest or latest")
	}
	if c.BackoffBase.D() <= 0 || c.BackoffMax.D() < c.BackoffBase.D() {
		problems = append(problems, "BACKOFF_BASE must be positive and at most BACKOFF_MAX")
	}
	if c.ScheduleEvery.D() != 0 && c.ScheduleEvery.D() < time.Second {
		problems = append(problems, "SCHEDULE_EVERY must be at least 1s")
	}
	if len(problems) > 0 {
		return fmt.Errorf("configuration is invalid:\n  - %s", strings.Join(problems, "\n  - "))
	}
	return nil
}

func main() {
	server.SetGC(os.Getenv)
	var cfg Config
	err := config.Load(&cfg)
	server.SetupLogging("kafka-trigger", cfg.LogLevel)
	if err == nil {
		err = cfg.SASL.Load()
	}
	if err == nil {
		err = cfg.validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka-trigger:", err)
		os.Exit(1)
	}
	server.StartPprof("kafka-trigger")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	shutdown, err := telemetry.Setup(ctx, "kafka-trigger")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka-trigger: tracing (OTEL_* environment):", err)
		os.Exit(1)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}()
	t, err := New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka-trigger:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafka-trigger: metrics on %s: %v (set METRICS_ADDR)\n", cfg.MetricsAddr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: t.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	slog.Info("kafka-trigger started", "brokers", strings.Join(cfg.Brokers, ","), "gateway", cfg.GatewayURL,
		"stack_file", cfg.StackFile, "metrics", ln.Addr().String())
	err = t.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka-trigger:", err)
		os.Exit(1)
	}
	slog.Info("kafka-trigger stopped")
}
