package billing

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/ids"
)

// Who an invoice, an invoice request or a subscription belongs to is the
// owner of its account, as the read model (the Accounts port) knows it: learnt from
// billfn.account.created/updated, read through from process-transaction
// for an account whose event has not arrived yet. The caller's word
// (user_id) is at most checked against it.

// accountRefusal marks an error that comes from the account's facts (an
// unknown account, a user_id or currency that is not the account's, an
// account that is not active), so ApplyRequests can
// refuse the command instead of recording an ordinary failure.
type accountRefusal struct{ err error }

func (e accountRefusal) Error() string { return e.err.Error() }
func (e accountRefusal) Unwrap() error { return e.err }

// isAccountRefusal reports whether err refuses the account a request names.
func isAccountRefusal(err error) bool {
	var r accountRefusal
	return errors.As(err, &r)
}

// AccountMemo remembers the facts already looked up for one request or
// one delivery (a batch of 500 invoices names the same account 500 times).
type AccountMemo map[string]accounts.Facts

// billable returns the facts of the account a new invoice or subscription
// names, for caller p:
//   - an unknown account, or one a customer does not own: 404 not_found,
//     the same answer, so a customer learns nothing of others' accounts;
//   - a user_id that is not the account's owner: 422 naming pointer+"user_id";
//   - a currency that is not the account's: 422 naming curField;
//   - a frozen or closed account: 409 account_not_active.
//
// Every refusal is an accountRefusal.
//
// q, when not nil, is the transaction the caller holds: the read model is
// read through it, so a delivery does not wait for a second connection.
func (s *Service) billable(ctx context.Context, q Tx, p auth.Principal, memo AccountMemo, id, userID, currency, pointer, curField string) (accounts.Facts, error) {
	f, ok := memo[id]
	if ok && !p.CanAccess(f.UserID) {
		ok = false // never for another caller's memo; For answers 404
	}
	if !ok {
		var err error
		if f, err = s.factsFor(ctx, q, p, id); err != nil {
			var pe *apperr.Error
			if errors.As(err, &pe) && pe.Code == apperr.NotFound {
				pe = apperr.New(apperr.NotFound, "no such account %s", id)
				pe.Errors = []apperr.FieldError{apperr.Field(pointer+"account_id", "is not an account you may bill")}
				return f, accountRefusal{pe}
			}
			return f, err // the read-through is down: 503, retry
		}
		if memo != nil {
			memo[id] = f
		}
	}
	var v apperr.Validator
	f.CheckUser(&v, pointer+"user_id", userID)
	f.CheckCurrency(&v, curField, currency)
	if err := v.Err(); err != nil {
		return f, accountRefusal{err}
	}
	if err := f.Active(); err != nil {
		return f, accountRefusal{err}
	}
	return f, nil
}

// factsFor is Directory.For read through q first (see billable).
func (s *Service) factsFor(ctx context.Context, q Tx, p auth.Principal, id string) (accounts.Facts, error) {
	if q != nil && ids.Valid(id) {
		f, ok, err := q.Account(ctx, id)
		if err != nil {
			return f, err
		}
		if ok {
			if !p.CanAccess(f.UserID) {
				return accounts.Facts{}, apperr.New(apperr.NotFound, "no such account")
			}
			return f, nil
		}
	}
	return s.accts.For(ctx, p, id)
}

// facts returns the facts of an account the function already bills
// (read through q, the caller's transaction).
func (s *Service) facts(ctx context.Context, q Tx, id string) (accounts.Facts, error) {
	return s.factsFor(ctx, q, auth.Principal{Role: auth.RoleService}, id)
}

// chargeable checks, at finalize or charge time, that the account of an
// existing invoice or subscription is still active: 409
// account_not_active otherwise.
func (s *Service) chargeable(ctx context.Context, q Tx, accountID string) error {
	f, err := s.facts(ctx, q, accountID)
	if err != nil {
		return err
	}
	return f.Active()
}

// ownedAccount checks a customer's ?account_id filter: 404 for an account
// it does not own (or that does not exist), as for any other resource.
func (s *Service) ownedAccount(ctx context.Context, p auth.Principal, id string) error {
	if p.Privileged() {
		return nil
	}
	_, err := s.accts.For(ctx, p, id)
	return err
}

// SkippedCharges counts charges and billing periods held back because
// the account is not active (registered by the api with the function's
// metrics).
var SkippedCharges = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "generate_invoice_inactive_account_skips_total",
	Help: "Recurring billing runs and dunning retries skipped because the account is frozen or closed, by step and account status.",
}, []string{"step", "status"})

// skipInactive counts and logs work held back because the account f is
// not active (step: "recurring billing", "dunning").
func (s *Service) skipInactive(ctx context.Context, step, what, id string, f accounts.Facts) {
	SkippedCharges.WithLabelValues(step, f.Status).Inc()
	slog.WarnContext(ctx, "account not active: skipped", "step", step, what, id, "account", f.ID, "status", f.Status)
}

// ParseCreate validates a creation body for principal p (see invoicing.
// ParseCreate). The invoice belongs to the owner of its account
// (billable), never to the user_id the body states; a well-formed body
// naming an account p may not bill is refused before any rule (currencies
// of lines, due date, coupon, tax rates) is looked at.
func (s *Service) ParseCreate(ctx context.Context, q Tx, p auth.Principal, memo AccountMemo, in *invoicing.CreateInvoiceIn, pointer string, now time.Time) (*invoicing.InvoiceDraft, error) {
	d, rule, err := invoicing.ParseCreate(p, in, pointer, now, s.cfg.NumberPrefix, s.cfg.MaxLines)
	if err != nil {
		return nil, err
	}
	f, err := s.billable(ctx, q, p, memo, d.Inv.AccountID, in.UserID, string(d.Inv.Currency), pointer, pointer+"currency")
	if err != nil {
		return nil, err
	}
	d.Inv.UserID = f.UserID
	if rule != nil {
		return nil, rule
	}
	return d, nil
}
