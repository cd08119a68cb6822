package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/cmd/internal/gateway"
	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/server"
)

// config is where the local stack puts things; every address is
// configurable so several stacks (or a test's) can run side by side.
type config struct {
	GatewayAddr  string
	KafkaAddr    string
	FunctionPort int    // first function's port; the others follow in name order
	TriggerAddr  string // the first kafka-trigger's /metrics and /healthz
	// Triggers is how many kafka-trigger processes run (BILLFN_TRIGGERS,
	// default 1): they share the consumer groups, so Kafka splits each
	// function's partitions between them and moves a dead one's to the
	// others.
	Triggers       int
	StripeMockAddr string
	// Mailpit catches every email the functions send (SMTP) and shows them
	// in its web UI, which also serves its REST API.
	MailpitSMTPAddr string
	MailpitUIAddr   string
	DatabaseURL     string
	RedisURL        string
	RunDir          string // absolute
	StackFile       string // absolute
	Root            string // the repository: the stack file's directory
	TickEvery       time.Duration
	// ScaleDownWindow is the autoscaler's stable window: a function is
	// scaled down only to the most replicas its load asked for over it.
	ScaleDownWindow time.Duration
	// OTLPEndpoint is where the stack's processes (the gateway, every
	// function, the kafka-trigger) send their spans, over OTLP/HTTP:
	// OTEL_EXPORTER_OTLP_ENDPOINT, else BILLFN_OTLP_ENDPOINT, else
	// http://127.0.0.1:4318, make observe's Jaeger. Spans are dropped
	// quietly while nothing listens there. "none" turns tracing off.
	OTLPEndpoint string
	// CallbackAllowedHosts are the non-public hosts an /async-function/
	// X-Callback-Url may name: the gateway's own address (a callback into
	// the stack's own functions, as OpenFaaS users do) plus
	// CALLBACK_ALLOWED_HOSTS. Everything else on loopback (the functions'
	// own ports, Postgres, Redis) or in private networks is refused.
	CallbackAllowedHosts []string
	// CallbackPublicHosts (CALLBACK_PUBLIC_HOSTS=true) also allows
	// callbacks to hosts that resolve only to public addresses.
	CallbackPublicHosts bool
	// lookup answers the stack file's substitutions: the stack's own
	// addresses first, then the environment.
	lookup stackfile.Lookup
	env    func(string) (string, bool)
}

// otelEnv is the tracing environment of the process named service: the
// stack's OTLP endpoint and the user's sampler and resource settings.
func (c config) otelEnv(service string) []string {
	if c.OTLPEndpoint == "none" {
		return []string{"OTEL_TRACES_EXPORTER=none"}
	}
	out := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + c.OTLPEndpoint, "OTEL_SERVICE_NAME=" + service}
	for _, k := range []string{"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_HEADERS"} {
		if c.env == nil {
			break
		}
		if v, ok := c.env(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func loadConfig(env func(string) (string, bool)) (config, error) {
	get := func(k, def string) string {
		if v, ok := env(k); ok && v != "" {
			return v
		}
		return def
	}
	c := config{
		GatewayAddr:     get("BILLFN_GATEWAY_ADDR", "127.0.0.1:8080"),
		KafkaAddr:       get("BILLFN_KAFKA_ADDR", "127.0.0.1:9092"),
		TriggerAddr:     get("BILLFN_TRIGGER_ADDR", "127.0.0.1:8090"),
		StripeMockAddr:  get("STRIPE_MOCK_ADDR", "127.0.0.1:12111"),
		MailpitSMTPAddr: get("MAILPIT_SMTP_ADDR", "127.0.0.1:1025"),
		MailpitUIAddr:   get("MAILPIT_UI_ADDR", "127.0.0.1:8025"),
		DatabaseURL:     get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billfn?sslmode=disable"),
		RedisURL:        get("REDIS_URL", "redis://127.0.0.1:6379/0"),
	}
	c.OTLPEndpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT", get("BILLFN_OTLP_ENDPOINT", "http://127.0.0.1:4318"))
	c.env = env
	var problems []string
	port, err := strconv.Atoi(get("BILLFN_FUNCTION_PORT", "8081"))
	if err != nil || port < 1 || port > 65000 {
		problems = append(problems, "BILLFN_FUNCTION_PORT must be a port number")
	}
	c.FunctionPort = port
	if c.Triggers, err = strconv.Atoi(get("BILLFN_TRIGGERS", "1")); err != nil || c.Triggers < 1 || c.Triggers > 16 {
		problems = append(problems, "BILLFN_TRIGGERS must be a number of kafka-trigger processes from 1 to 16")
	}
	for k, v := range map[string]string{"BILLFN_GATEWAY_ADDR": c.GatewayAddr, "BILLFN_KAFKA_ADDR": c.KafkaAddr,
		"BILLFN_TRIGGER_ADDR": c.TriggerAddr, "STRIPE_MOCK_ADDR": c.StripeMockAddr,
		"MAILPIT_SMTP_ADDR": c.MailpitSMTPAddr, "MAILPIT_UI_ADDR": c.MailpitUIAddr} {
		if _, p, err := net.SplitHostPort(v); err != nil || p == "" || p == "0" {
			problems = append(problems, fmt.Sprintf("%s=%q must be host:port", k, v))
		}
	}
	if c.TickEvery, err = time.ParseDuration(get("BILLFN_TICK_EVERY", "5s")); err != nil || c.TickEvery < time.Second {
		problems = append(problems, "BILLFN_TICK_EVERY must be a duration of at least 1s")
	}
	if c.ScaleDownWindow, err = time.ParseDuration(get("BILLFN_SCALE_DOWN_WINDOW", "60s")); err != nil || c.ScaleDownWindow < time.Second {
		problems = append(problems, "BILLFN_SCALE_DOWN_WINDOW must be a duration of at least 1s")
	}
	if c.CallbackPublicHosts, err = strconv.ParseBool(get("CALLBACK_PUBLIC_HOSTS", "false")); err != nil {
		problems = append(problems, "CALLBACK_PUBLIC_HOSTS must be true or false")
	}
	if hosts, err := gateway.ParseCallbackHosts(get("CALLBACK_ALLOWED_HOSTS", "")); err != nil {
		problems = append(problems, "CALLBACK_ALLOWED_HOSTS: "+err.Error())
	} else if h, p, err := net.SplitHostPort(c.GatewayAddr); err == nil {
		own := []string{c.GatewayAddr}
		if ip := net.ParseIP(h); h == "" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
			own = append(own, net.JoinHostPort("127.0.0.1", p), net.JoinHostPort("localhost", p))
		}
		for _, a := range append(own, hosts...) {
			if !slices.Contains(c.CallbackAllowedHosts, a) {
				c.CallbackAllowedHosts = append(c.CallbackAllowedHosts, a)
			}
		}
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || u.Scheme == "" {
		problems = append(problems, "DATABASE_URL must be a postgres:// URL")
	}
	if c.StackFile, err = filepath.Abs(get("BILLFN_STACK_FILE", "stack.yml")); err != nil {
		problems = append(problems, err.Error())
	}
	c.Root = filepath.Dir(c.StackFile)
	run := get("BILLFN_RUN_DIR", filepath.Join(c.Root, "bin", "run"))
	if c.RunDir, err = filepath.Abs(run); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("configuration is invalid:\n  - %s", strings.Join(problems, "\n  - "))
	}
	own := map[string]string{
		"KAFKA_BROKERS": c.KafkaAddr,
		"GATEWAY_URL":   "http://" + c.GatewayAddr,
	}
	// Stripe goes to the local stripe-mock unless the user points it elsewhere.
	if _, ok := env("STRIPE_API_BASE"); !ok {
		own["STRIPE_API_BASE"] = "http://" + c.StripeMockAddr
	}
	// The local stack keeps the sandbox on (pm_card_visa and friends): it
	// is the one place where SANDBOX_ENABLED=true is set for the user, who
	// may still route elsewhere with GATEWAY_ROUTES.
	// Outgoing webhooks may reach a receiver on this machine (loopback);
	// other private addresses stay refused.
	for k, v := range map[string]string{"GATEWAY_ROUTES": "*=sandbox", "SANDBOX_ENABLED": "true",
		"WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,localhost,::1"} {
		if _, ok := env(k); !ok {
			own[k] = v
		}
	}
	c.lookup = func(k string) (string, bool) {
		if v, ok := own[k]; ok {
			return v, true
		}
		return env(k)
	}
	return c, nil
}

// functionAddr is the loopback address of the i-th function (name order).
func (c config) functionAddr(i int) string {
	return "127.0.0.1:" + strconv.Itoa(c.FunctionPort+i)
}

// usesStripeMock reports whether a STRIPE_API_BASE value is the local stripe-mock.
func (c config) usesStripeMock(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	_, want, _ := net.SplitHostPort(c.StripeMockAddr)
	host, port := u.Hostname(), u.Port()
	return port == want && (host == "127.0.0.1" || host == "localhost" || host == "::1")
}

// smtpURL is the SMTP_URL of the stack's Mailpit (loopback, no TLS).
func (c config) smtpURL() string { return "smtp://" + c.MailpitSMTPAddr + "?starttls=none" }

func (c config) secretsDir() string { return filepath.Join(c.RunDir, "secrets") }

// functionSecretsDir is the SECRETS_DIR of the function or the
// kafka-trigger proc: the secrets stack.yml declares, never the JWT private
// key, and of the Kafka passwords only its own.
func (c config) functionSecretsDir(proc string) string {
	return filepath.Join(c.secretsDir(), functionsSubdir, proc)
}

func (c config) binDir() string { return filepath.Join(c.RunDir, "bin") }

// baseEnv is what every child inherits from the stack's own environment:
// only what a program needs to run, so a function sees the environment
// stack.yml gives it and nothing of the developer's shell.
func baseEnv() []string {
	var out []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "GOCOVERDIR", "BILLFN_STACK_ID", server.PprofDirEnv} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// envFile holds the substitutions the stack made in stack.yml, for
// faas-cli: sourced before faas-cli deploy -f stack.yml, they make it send
// the local addresses instead of the cluster's defaults.
func (c config) envFile() string { return filepath.Join(c.RunDir, "stack.env") }
