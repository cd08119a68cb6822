package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/redis"
)

const functionName = "generate-invoice"

// Problem codes of generate-invoice (docs/generate-invoice.md lists them).
const (
	codeInvoiceNotDraft     = problem.Code("invoice_not_draft")
	codeInvoiceNotOpen      = problem.Code("invoice_not_open")
	codeInvoiceEmpty        = problem.Code("invoice_empty")
	codeCurrencyMismatch    = problem.Code("currency_mismatch")
	codeTaxRateUnknown      = problem.Code("tax_rate_unknown")
	codeTaxInclusiveMixed   = problem.Code("tax_inclusive_mixed")
	codeCouponUnknown       = problem.Code("coupon_unknown")
	codeCouponNotRedeemable = problem.Code("coupon_not_redeemable")
	codeCouponExists        = problem.Code("coupon_exists")
	codeDueDateInPast       = problem.Code("due_date_in_past")
	codeAmountExceedsDue    = problem.Code("amount_exceeds_due")
	codeSubscriptionEnded   = problem.Code("subscription_canceled")
)

func init() {
	for _, c := range []struct {
		code  problem.Code
		title string
	}{
		{codeInvoiceNotDraft, "Only a draft invoice can be changed"},
		{codeInvoiceNotOpen, "The invoice is not open"},
		{codeInvoiceEmpty, "The invoice has no line items"},
		{codeCurrencyMismatch, "Currency mismatch"},
		{codeTaxRateUnknown, "Unknown tax rate"},
		{codeTaxInclusiveMixed, "Inclusive and exclusive tax rates on one line"},
		{codeCouponUnknown, "Unknown coupon"},
		{codeCouponNotRedeemable, "The coupon cannot be redeemed"},
		{codeCouponExists, "The coupon already exists"},
		{codeDueDateInPast, "The due date is in the past"},
		{codeAmountOverflow, "Amount overflow"},
		{codeTotalNegative, "The invoice total would be negative"},
		{codeAmountExceedsDue, "The amount exceeds the amount due"},
		{codeSubscriptionEnded, "The subscription is canceled"},
	} {
		problem.Register(c.code, http.StatusUnprocessableEntity, c.title)
	}
}

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
	if !validPrefix(c.NumberPrefix) {
		return fmt.Errorf("INVOICE_NUMBER_PREFIX %q must be 1-10 upper-case letters and digits, starting with a letter", c.NumberPrefix)
	}
	if c.DefaultNetDays < 0 || c.DefaultNetDays > 365 || c.MaxLines < 1 || c.BatchMax < 1 || c.MaxCatchUp < 1 {
		return fmt.Errorf("INVOICE_DEFAULT_NET_DAYS (0-365), INVOICE_MAX_LINES, INVOICE_BATCH_MAX and SUBSCRIPTION_MAX_CATCH_UP (>= 1) are out of range")
	}
	if n := len(c.DunningSchedule); n > 0 && c.UncollectibleAfter > 0 && c.UncollectibleAfter.D() <= c.DunningSchedule[n-1] {
		return fmt.Errorf("DUNNING_UNCOLLECTIBLE_AFTER must come after the last retry of DUNNING_RETRY_SCHEDULE")
	}
	return nil
}

// DefaultConfig is the configuration with every default (tests).
func DefaultConfig() Config {
	return Config{NumberPrefix: "INV", DefaultNetDays: 30, MaxLines: 250, BatchMax: 500,
		CacheTTL:        config.Duration(5 * time.Minute),
		DunningSchedule: durations{24 * time.Hour, 72 * time.Hour, 168 * time.Hour}, UncollectibleAfter: config.Duration(336 * time.Hour),
		MaxCatchUp: 36}
}

func validPrefix(p string) bool {
	if len(p) < 1 || len(p) > 10 || p[0] < 'A' || p[0] > 'Z' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !(p[i] >= 'A' && p[i] <= 'Z' || p[i] >= '0' && p[i] <= '9') {
			return false
		}
	}
	return true
}

// service is generate-invoice: its HTTP surface, event handlers and tick.
type service struct {
	d        *platform.Deps
	cfg      Config
	now      func() time.Time
	invCache *redis.Cache
	subCache *redis.Cache

	ratesMu sync.RWMutex
	rates   map[string]TaxRate // immutable rows, cached forever
}

func newService(d *platform.Deps, cfg Config, now func() time.Time) *service {
	s := &service{d: d, cfg: cfg, now: now, invCache: d.Cache("invoices"), subCache: d.Cache("subscriptions"),
		rates: map[string]TaxRate{}}
	d.Events.On(typeInvoiceRequested, s.onInvoiceRequested)
	d.Events.On(typePaymentCaptured, s.onPaymentCaptured)
	d.Events.On(typePaymentFailed, s.onPaymentFailed)
	d.Events.On(typeRefundSucceeded, s.onRefundSucceeded)
	d.Events.Batch = s.onBatch
	d.Events.Tick = s.tick
	return s
}

func (s *service) clock() time.Time { return s.now().UTC() }

func (s *service) routes() *http.ServeMux {
	mux := http.NewServeMux()
	authed := s.d.Verifier.Middleware()
	privileged := s.d.Verifier.Middleware(auth.RoleAdmin, auth.RoleService)
	admin := s.d.Verifier.Middleware(auth.RoleAdmin)
	idem := s.d.Idempotency.Middleware(true)
	write := func(mw func(http.Handler) http.Handler, h http.HandlerFunc) http.Handler { return mw(idem(h)) }

	mux.Handle("POST /invoices", write(authed, s.createInvoice))
	mux.Handle("POST /invoices/batch", write(privileged, s.createInvoiceBatch))
	mux.Handle("GET /invoices", authed(http.HandlerFunc(s.listInvoices)))
	mux.Handle("GET /invoices/{id}", authed(http.HandlerFunc(s.getInvoice))) // also {id}.pdf and {id}.html
	mux.Handle("PATCH /invoices/{id}", write(authed, s.patchInvoice))
	mux.Handle("POST /invoices/{id}/lines", write(authed, s.addLines))
	mux.Handle("POST /invoices/{id}/finalize", write(authed, s.finalizeInvoice))
	mux.Handle("POST /invoices/{id}/void", write(privileged, s.voidInvoice))
	mux.Handle("POST /invoices/{id}/mark-uncollectible", write(privileged, s.markUncollectibleHandler))
	mux.Handle("POST /invoices/{id}/pay", write(privileged, s.payInvoice))
	mux.Handle("GET /invoice-requests/{id}", authed(http.HandlerFunc(s.getInvoiceRequest)))

	mux.Handle("POST /subscriptions", write(privileged, s.createSubscription))
	mux.Handle("GET /subscriptions", authed(http.HandlerFunc(s.listSubscriptions)))
	mux.Handle("GET /subscriptions/{id}", authed(http.HandlerFunc(s.getSubscription)))
	mux.Handle("PATCH /subscriptions/{id}", write(privileged, s.patchSubscription))
	mux.Handle("POST /subscriptions/{id}/cancel", write(authed, s.cancelSubscription))

	mux.Handle("POST /tax-rates", write(admin, s.createTaxRate))
	mux.Handle("GET /tax-rates", authed(http.HandlerFunc(s.listTaxRates)))
	mux.Handle("GET /tax-rates/{id}", authed(http.HandlerFunc(s.getTaxRate)))
	mux.Handle("POST /coupons", write(admin, s.createCoupon))
	mux.Handle("GET /coupons", privileged(http.HandlerFunc(s.listCoupons)))
	mux.Handle("GET /coupons/{id}", authed(http.HandlerFunc(s.getCoupon)))

	mux.Handle("POST /{$}", s.eventsHandler()) // CloudEvents and schedule ticks
	return mux
}

// dbCtx detaches database work from the client's connection: a client that
// disconnects must not turn a committed write into an error (the replay
// with the same Idempotency-Key returns the committed result).
func dbCtx(r *http.Request) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(r.Context())
	if dl, ok := r.Context().Deadline(); ok {
		return context.WithDeadline(ctx, dl.Add(2*time.Second))
	}
	return context.WithTimeout(ctx, 15*time.Second)
}

// respondAsync reports whether the client asked for the asynchronous form.
func respondAsync(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, tok := range strings.FieldsFunc(v, func(c rune) bool { return c == ',' || c == ';' || c == ' ' }) {
			if strings.EqualFold(tok, "respond-async") {
				return true
			}
		}
	}
	return false
}

// ownerFor decides whose a new resource is: a customer's own; for admin and
// service callers the user_id they name (required).
func ownerFor(p auth.Principal, userID string, v *problem.Validator, pointer string) (string, error) {
	if !p.Privileged() {
		if userID != "" && !strings.EqualFold(userID, p.Subject) {
			return "", problem.New(problem.Forbidden, "a customer acts only for itself: omit user_id or send your own")
		}
		return p.Subject, nil
	}
	if userID == "" {
		v.Check(false, pointer+"user_id", "is required for admin and service callers: the user the resource belongs to")
	} else {
		v.Check(validUUID(userID), pointer+"user_id", "must be a UUID")
	}
	return strings.ToLower(userID), nil
}

// eventsCtx carries the request's trace into events built for it.
func eventsCtx(ctx context.Context, r *http.Request) context.Context {
	if tp := r.Header.Get("Traceparent"); tp != "" {
		return events.WithTraceParent(ctx, tp)
	}
	return ctx
}
