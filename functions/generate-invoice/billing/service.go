package billing

import (
	"context"
	"sync"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
)

// Config is what the use cases need of generate-invoice's configuration.
type Config struct {
	// Source is the function whose events the use cases emit.
	Source string
	// NumberPrefix is the default invoice number prefix.
	NumberPrefix string
	// DefaultNetDays is the payment term of an invoice that names neither
	// net_terms_days nor due_date.
	DefaultNetDays int
	// MaxLines caps the lines of one invoice.
	MaxLines int
	// BatchMax caps the invoices of one batch.
	BatchMax int
	// MaxCatchUp caps the periods one subscription bills in one run.
	MaxCatchUp int
	// DunningSchedule: retries of collection, counted from the due date.
	DunningSchedule []time.Duration
	// UncollectibleAfter: when an unpaid invoice is marked uncollectible,
	// counted from the due date (0 = never automatically).
	UncollectibleAfter time.Duration
}

// Service is generate-invoice's use cases over its store.
type Service struct {
	store Store
	accts Accounts
	cfg   Config
	now   func() time.Time
	mail  *Mail

	// Refused reports whether err refuses the work (the api's table maps
	// its code to a 4xx) rather than failing it: a sweep skips a refused
	// item and goes on, and retries on a failure.
	Refused func(error) bool
	// Changed is told of invoices and subscriptions changed by a committed
	// sweep (the api drops them from its caches; nil: nothing).
	Changed func(invoiceIDs, subIDs []string)
	// Touched is told of invoices an event handler changed in the
	// receiver's transaction, not committed yet (nil: nothing).
	Touched func(ctx context.Context, invoiceIDs []string)
	// Describe is the problem document of an error that refuses an
	// invoice request, recorded with it.
	Describe func(error) []byte
	// MailQueued is told that an email was queued in the current
	// transaction (the api wakes the sender after the commit; nil: nothing).
	MailQueued func(ctx context.Context)

	ratesMu sync.RWMutex
	rates   map[string]invoicing.TaxRate // immutable rows, cached forever

	// The group commit of synchronous creations (create_group.go).
	createMu    sync.Mutex
	createQueue []*createCall
	createBusy  bool // a call leads: it takes the queue when its group is done
}

// New returns the use cases over st, with accts the read model of the
// accounts billed, mail how emails go out (nil: they stay queued) and
// now the clock.
func New(st Store, accts Accounts, cfg Config, mail *Mail, now func() time.Time) *Service {
	return &Service{store: st, accts: accts, cfg: cfg, mail: mail, now: now, rates: map[string]invoicing.TaxRate{}}
}

// Clock is the use cases' time (UTC).
func (s *Service) Clock() time.Time { return s.now().UTC() }

func (s *Service) refused(err error) bool { return s.Refused != nil && s.Refused(err) }

func (s *Service) changed(invoiceIDs, subIDs []string) {
	if s.Changed != nil {
		s.Changed(invoiceIDs, subIDs)
	}
}

func (s *Service) touched(ctx context.Context, invoiceIDs []string) {
	if s.Touched != nil {
		s.Touched(ctx, invoiceIDs)
	}
}
