// Package api is generate-invoice's surface: the route table and its thin
// HTTP handlers, the CloudEvents handlers beside them and the schedule tick,
// each parsing what came in, calling a use case of package billing and
// writing the answer (problems by Statuses). It uses package store only to
// adapt the receiver's transaction and to give billing its port.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/redis"
)

const FunctionName = "generate-invoice"

// durations is a comma-separated list of durations ("24h,72h,168h").
type durations []time.Duration

// Decode implements envconfig.Decoder.
func (d *durations) Decode(s string) error {
	*d = nil
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, err := time.ParseDuration(part)
		if err != nil || v <= 0 {
			return fmt.Errorf("%q is not a positive duration", part)
		}
		if n := len(*d); n > 0 && v <= (*d)[n-1] {
			return fmt.Errorf("%q must be later than %s: the schedule counts from the due date", part, (*d)[n-1])
		}
		*d = append(*d, v)
	}
	return nil
}

// Config is generate-invoice's own configuration (beside platform.Config).
type Config struct {
	// NumberPrefix is the default invoice number prefix: INV-2026-000123.
	NumberPrefix string `envconfig:"INVOICE_NUMBER_PREFIX" default:"INV"`
	// DefaultNetDays is the payment term of an invoice that names neither
	// net_terms_days nor due_date.
	DefaultNetDays int `envconfig:"INVOICE_DEFAULT_NET_DAYS" default:"30"`
	// MaxLines caps the lines of one invoice.
	MaxLines int `envconfig:"INVOICE_MAX_LINES" default:"250"`
	// BatchMax caps the invoices of one POST /invoices/batch.
	BatchMax int `envconfig:"INVOICE_BATCH_MAX" default:"500"`
	// CacheTTL bounds how long a cached invoice or subscription lives.
	CacheTTL config.Duration `envconfig:"INVOICE_CACHE_TTL" default:"5m"`
	// DunningSchedule: retries of collection, counted from the due date.
	DunningSchedule durations `envconfig:"DUNNING_RETRY_SCHEDULE" default:"24h,72h,168h"`
	// UncollectibleAfter: when an unpaid invoice is marked uncollectible,
	// counted from the due date (0 = never automatically).
	UncollectibleAfter config.Duration `envconfig:"DUNNING_UNCOLLECTIBLE_AFTER" default:"336h"`
	// MaxCatchUp caps the periods one subscription bills in one run
	// (the next tick continues).
	MaxCatchUp int `envconfig:"SUBSCRIPTION_MAX_CATCH_UP" default:"36"`
	// Accounts is the read-through to process-transaction for an account
	// whose billfn.account.created has not arrived yet (LEDGER_URL and the
	// service-token secret); without a token only events fill the read model.
	Accounts accounts.Config
	// Email is how the customer's emails go out (SMTP_URL, EMAIL_FROM).
	Email EmailConfig
}

// LoadConfig reads Config from the environment.
func LoadConfig() (Config, error) {
	var c Config
	if err := config.Load(&c); err != nil {
		return c, err
	}
	return c, c.check()
}

func (c Config) check() error {
	if !invoicing.ValidPrefix(c.NumberPrefix) {
		return fmt.Errorf("INVOICE_NUMBER_PREFIX %q must be 1-10 upper-case letters and digits, starting with a letter", c.NumberPrefix)
	}
	if c.DefaultNetDays < 0 || c.DefaultNetDays > 365 || c.MaxLines < 1 || c.BatchMax < 1 || c.MaxCatchUp < 1 {
		return fmt.Errorf("INVOICE_DEFAULT_NET_DAYS (0-365), INVOICE_MAX_LINES, INVOICE_BATCH_MAX and SUBSCRIPTION_MAX_CATCH_UP (>= 1) are out of range")
	}
	if n := len(c.DunningSchedule); n > 0 && c.UncollectibleAfter > 0 && c.UncollectibleAfter.D() <= c.DunningSchedule[n-1] {
		return fmt.Errorf("DUNNING_UNCOLLECTIBLE_AFTER must come after the last retry of DUNNING_RETRY_SCHEDULE")
	}
	return c.Email.check()
}

// billing is what the use cases need of c.
func (c Config) billing() billing.Config {
	return billing.Config{Source: FunctionName, NumberPrefix: c.NumberPrefix, DefaultNetDays: c.DefaultNetDays, MaxLines: c.MaxLines, BatchMax: c.BatchMax, MaxCatchUp: c.MaxCatchUp,
		DunningSchedule: c.DunningSchedule, UncollectibleAfter: c.UncollectibleAfter.D()}
}

// DefaultConfig is the configuration with every default (tests).
func DefaultConfig() Config {
	return Config{NumberPrefix: "INV", DefaultNetDays: 30, MaxLines: 250, BatchMax: 500,
		CacheTTL:        config.Duration(5 * time.Minute),
		DunningSchedule: durations{24 * time.Hour, 72 * time.Hour, 168 * time.Hour}, UncollectibleAfter: config.Duration(336 * time.Hour),
		MaxCatchUp: 36, Email: EmailConfig{From: "billfn billing <billing@billfn.local>", MaxAttempts: 20,
			LogRetention: config.Duration(365 * 24 * time.Hour), Connections: billing.DefaultConnections}}
}

// Service is generate-invoice: its HTTP surface, event handlers and tick.
type Service struct {
	d        *platform.Deps
	st       *store.Store
	b        *billing.Service // the use cases
	cfg      Config
	now      func() time.Time
	invCache *redis.Cache
	subCache *redis.Cache
	// accts is the read model of the accounts billed: who owns each, its
	// currency and status. Ownership is decided from it, never from the
	// caller's word.
	accts *accounts.Directory
	// mail wakes the background sender of the customer's emails.
	mail *mailer
}

func New(d *platform.Deps, cfg Config, now func() time.Time) *Service {
	s := &Service{d: d, st: store.New(d.Pool, d.Publisher.Writer()), cfg: cfg, now: now, invCache: d.Cache("invoices"), subCache: d.Cache("subscriptions"),
		mail: &mailer{wake: make(chan struct{}, 1)}}
	// A request's claim of its Idempotency-Key commits with the claims of
	// concurrent requests: one commit for many instead of one each.
	claims := pgbatch.NewGroup(d.Pool, FunctionName+" claims")
	d.Idempotency.Group = claims
	d.OnClose(func(context.Context) { claims.Close() })
	s.accts = accounts.New(d.Pool, "invoice_accounts", cfg.Accounts.Source())
	s.accts.Register(d.Events)
	s.st.ReadAccounts(s.accts)
	s.b = billing.New(s.st.Billing(), s.accts, cfg.billing(), newMail(cfg.Email), now)
	s.b.Refused = func(err error) bool {
		var pe *problem.Error
		return errors.As(err, &pe) && Statuses.Status(err) < 500
	}
	s.b.Changed = s.invalidate
	s.b.MailQueued = s.mailQueued
	s.b.Touched = func(ctx context.Context, invoiceIDs []string) { s.touched(ctx, invoiceIDs) }
	s.b.Describe = func(err error) []byte {
		var pe *problem.Error
		errors.As(err, &pe)
		doc, _ := Statuses.Doc(nil, "", pe)
		b, _ := json.Marshal(doc)
		return b
	}
	d.Collect(billing.SkippedCharges, billing.PaymentAnomalies, billing.EmailsSent)
	d.Events.On(events.TypeNotificationRequested, s.st.Handler(s.onNotificationRequested))
	d.Events.On(events.TypeInvoiceRequested, s.st.Handler(s.onInvoiceRequested))
	d.Events.On(events.TypePaymentCaptured, s.st.Handler(s.onPaymentCaptured))
	d.Events.On(events.TypePaymentFailed, s.st.Handler(s.onPaymentFailed))
	d.Events.On(events.TypeRefundSucceeded, s.st.Handler(s.onRefundSucceeded))
	d.Events.On(events.TypeRefundFailed, s.st.Handler(s.onRefundFailed))
	d.Events.On(events.TypeWebhookEndpointDisabled, s.st.Handler(s.onEndpointDisabled))
	// Most payments pay no invoice: their events change nothing here and
	// are acknowledged without a transaction (namesAnInvoice).
	d.Events.OnlyIf(events.TypePaymentCaptured, namesAnInvoice(func(p *events.PaymentCaptured) *string { return p.InvoiceID }))
	d.Events.OnlyIf(events.TypePaymentFailed, namesAnInvoice(func(p *events.PaymentFailed) *string { return p.InvoiceID }))
	d.Events.OnlyIf(events.TypeRefundSucceeded, namesAnInvoice(func(r *events.Refund) *string { return r.InvoiceID }))
	// A refund that failed changes an invoice only when it had succeeded
	// (reversed): the money came back.
	d.Events.OnlyIf(events.TypeRefundFailed, namesAnInvoice(func(r *events.Refund) *string {
		if !r.Reversed {
			return nil
		}
		return r.InvoiceID
	}))
	d.Events.Batch = s.st.BatchHandler(s.onBatch)
	d.Events.Tick = s.tick
	return s
}

func (s *Service) clock() time.Time { return s.now().UTC() }

// Routes is generate-invoice's HTTP surface. Each route's problems are
// mapped by Statuses (event deliveries included: their handlers' errors
// are classified by the same table); the mux stays the server's, which
// answers unknown routes and methods with problems too.
func (s *Service) Routes() *http.ServeMux { return s.d.Mux(s.routeTable(), Statuses) }

// routeTable is generate-invoice's HTTP surface: who may call each route
// (Mux enforces it), its rate-limit class, and the kind of resource every
// reference it takes names. TestAttackEveryRoute
// attacks each entry from this table, so a new route cannot be forgotten.
func (s *Service) routeTable() []platform.Route {
	idem := s.d.Idempotency.Middleware(true)
	write := func(h http.HandlerFunc) http.Handler { return idem(h) }
	const (
		cust, priv, admin = platform.Customer, platform.Privileged, platform.Admin
		money             = platform.Money
	)
	none := map[string]string{}
	invoiceBody := map[string]string{"account_id": "account", "coupon": "coupon", "line_items/0/tax_rate_ids/0": "tax-rate"}
	invoice := map[string]string{"{id}": "invoice"}
	sub := map[string]string{"{id}": "subscription"}
	return []platform.Route{
		// Creation may finalize at once (auto_finalize), which charges the
		// account's saved method: a money route.
		{Pattern: "POST /invoices", Access: cust, Class: money, Refs: invoiceBody, Handler: write(s.createInvoice)},
		{Pattern: "POST /invoices/batch", Access: priv, Class: money,
			Refs:    map[string]string{"invoices/0/account_id": "account", "invoices/0/coupon": "coupon", "invoices/0/line_items/0/tax_rate_ids/0": "tax-rate"},
			Handler: write(s.createInvoiceBatch)},
		{Pattern: "GET /invoices", Access: cust,
			Refs:    map[string]string{"?account_id": "account", "?user_id": "user", "?subscription_id": "subscription"},
			Handler: http.HandlerFunc(s.listInvoices)},
		// Also {id}.pdf and {id}.html.
		{Pattern: "GET /invoices/{id}", Access: cust, Refs: invoice, Handler: http.HandlerFunc(s.getInvoice)},
		{Pattern: "PATCH /invoices/{id}", Access: cust,
			Refs: map[string]string{"{id}": "invoice", "coupon": "coupon", "line_items/0/tax_rate_ids/0": "tax-rate"}, Handler: write(s.patchInvoice)},
		{Pattern: "POST /invoices/{id}/lines", Access: cust,
			Refs: map[string]string{"{id}": "invoice", "line_items/0/tax_rate_ids/0": "tax-rate"}, Handler: write(s.addLines)},
		// Finalizing a charge_automatically invoice makes capture-payment charge it.
		{Pattern: "POST /invoices/{id}/finalize", Access: cust, Class: money, Refs: invoice, Handler: write(s.finalizeInvoice)},
		{Pattern: "POST /invoices/{id}/void", Access: priv, Refs: invoice, Handler: write(s.voidInvoice)},
		{Pattern: "POST /invoices/{id}/mark-uncollectible", Access: priv, Refs: invoice, Handler: write(s.markUncollectibleHandler)},
		{Pattern: "POST /invoices/{id}/pay", Access: priv, Class: money, Refs: invoice, Handler: write(s.payInvoice)},
		{Pattern: "GET /invoice-requests/{id}", Access: cust, Refs: map[string]string{"{id}": "invoice-request"},
			Handler: http.HandlerFunc(s.getInvoiceRequest)},

		// A subscription bills (and charges) its first period at once.
		{Pattern: "POST /subscriptions", Access: priv, Class: money,
			Refs: map[string]string{"account_id": "account", "coupon": "coupon", "tax_rate_ids/0": "tax-rate"}, Handler: write(s.createSubscription)},
		{Pattern: "GET /subscriptions", Access: cust, Refs: map[string]string{"?account_id": "account", "?user_id": "user"},
			Handler: http.HandlerFunc(s.listSubscriptions)},
		{Pattern: "GET /subscriptions/{id}", Access: cust, Refs: sub, Handler: http.HandlerFunc(s.getSubscription)},
		// A plan change with always_invoice bills (and charges) at once.
		{Pattern: "PATCH /subscriptions/{id}", Access: priv, Class: money,
			Refs: map[string]string{"{id}": "subscription", "tax_rate_ids/0": "tax-rate"}, Handler: write(s.patchSubscription)},
		{Pattern: "POST /subscriptions/{id}/cancel", Access: cust, Refs: sub, Handler: write(s.cancelSubscription)},

		{Pattern: "POST /tax-rates", Access: admin, Refs: none, Handler: write(s.createTaxRate)},
		{Pattern: "GET /tax-rates", Access: cust, Refs: none, Handler: http.HandlerFunc(s.listTaxRates)},
		{Pattern: "GET /tax-rates/{id}", Access: cust, Refs: map[string]string{"{id}": "tax-rate"}, Handler: http.HandlerFunc(s.getTaxRate)},
		{Pattern: "POST /coupons", Access: admin, Refs: none, Handler: write(s.createCoupon)},
		{Pattern: "GET /coupons", Access: priv, Refs: none, Handler: http.HandlerFunc(s.listCoupons)},
		{Pattern: "GET /coupons/{id}", Access: cust, Refs: map[string]string{"{id}": "coupon"}, Handler: http.HandlerFunc(s.getCoupon)},

		// The delivery log of the customer's emails (admin: it shows every
		// customer's addresses).
		{Pattern: "GET /notifications", Access: admin, Refs: map[string]string{"?invoice_id": "invoice"},
			Handler: http.HandlerFunc(s.listNotifications)},
		{Pattern: "GET /notifications/{id}", Access: admin, Refs: map[string]string{"{id}": "notification"},
			Handler: http.HandlerFunc(s.getNotification)},
		{Pattern: "POST /notifications/{id}/resend", Access: admin, Refs: map[string]string{"{id}": "notification"},
			Handler: write(s.resendNotification)},

		// CloudEvents and schedule ticks, authenticated by the receiver.
		{Pattern: "POST /{$}", Access: platform.Delivery, Refs: none, Handler: s.eventsHandler()},
	}
}

// eventsCtx carries the request's trace into events built for it.
func eventsCtx(ctx context.Context, r *http.Request) context.Context {
	if tp := r.Header.Get("Traceparent"); tp != "" {
		return events.WithTraceParent(ctx, tp)
	}
	return ctx
}
