package payments

import (
	"fmt"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
)

// impliedStatus is the status each invoice event type describes.
var impliedStatus = map[string]string{events.TypeInvoiceCreated: invDraft, events.TypeInvoiceFinalized: invOpen, events.TypeInvoiceOverdue: invOpen,
	events.TypeInvoicePaymentRetryRequested: invOpen, events.TypeInvoicePaid: invPaid, events.TypeInvoiceVoided: invVoid, events.TypeInvoiceUncollectible: invUncollectible}

// InvoiceRank orders the statuses: a status never moves backwards. paid
// and void are both final; the first one learnt stays.
func InvoiceRank(status string) int {
	switch status {
	case invDraft:
		return 0
	case invOpen:
		return 1
	case invUncollectible:
		return 2
	case invPaid, invVoid:
		return 3
	}
	return -1
}

// payable reports whether an invoice in status may be paid: open, and
// uncollectible (generate-invoice's own rule: money that still arrives
// pays it).
func payable(status string) bool { return status == invOpen || status == invUncollectible }

// InvoiceFacts is what capture-payment knows of an invoice.
type InvoiceFacts struct {
	ID         string `json:"id"`
	InvoiceID  string `json:"invoice_id"` // the events' name of the id
	AccountID  string `json:"account_id"`
	UserID     string `json:"user_id"`
	Currency   string `json:"currency"`
	Total      int64  `json:"total"`
	AmountPaid int64  `json:"amount_paid"`
	AmountDue  int64  `json:"amount_due"`
	Status     string `json:"status"`
}

func (f *InvoiceFacts) validate() error {
	if f.ID == "" {
		f.ID = f.InvoiceID
	}
	id, ok := ids.Canonical(f.ID)
	if !ok {
		return fmt.Errorf("invoice id %q is not a UUID", f.ID)
	}
	acct, ok := ids.Canonical(f.AccountID)
	if !ok {
		return fmt.Errorf("invoice %s: account_id %q is not a UUID", f.ID, f.AccountID)
	}
	cur, err := money.ParseCurrency(f.Currency)
	if err != nil {
		return fmt.Errorf("invoice %s: currency %q: %w", f.ID, f.Currency, err)
	}
	if InvoiceRank(f.Status) < 0 {
		return fmt.Errorf("invoice %s: unknown status %q", f.ID, f.Status)
	}
	if f.Total < 0 || f.AmountPaid < 0 || f.AmountDue < 0 {
		return fmt.Errorf("invoice %s: negative amounts", f.ID)
	}
	f.UserID, _ = ids.Canonical(f.UserID) // "" when it is none
	f.ID, f.InvoiceID, f.AccountID, f.Currency = id, id, acct, string(cur)
	return nil
}

// InvoiceLoad is what capture-payment's own payments hold on an invoice
// besides p: captured, and whether one is in flight.
type InvoiceLoad struct {
	Captured int64
	InFlight int
}
