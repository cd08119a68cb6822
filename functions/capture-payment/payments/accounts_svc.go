package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
)

// Who owns an account is decided by capture-payment's read model of
// accounts (shared/accounts, table payment_accounts), never by the caller:
// the owner of a payment or a saved payment method is its account's owner.

// AuthorizeAccount decides whether pr may charge or pay into the account
// of in, and makes the account's owner the payment's owner. A customer
// naming an account it does not own gets a 404, as for one that does not
// exist; a user_id that is not the owner, or a currency that is not the
// account's, is a 422 naming the field; a frozen or closed account is a
// 409 account_not_active.
func (s *Service) AuthorizeAccount(ctx context.Context, pr auth.Principal, in *CreateInput) error {
	f, err := s.Accounts.For(ctx, pr, in.AccountID)
	if err != nil {
		return err
	}
	var v apperr.Validator
	f.CheckUser(&v, "user_id", in.UserID)
	f.CheckCurrency(&v, "currency", string(in.Currency))
	if err := v.Err(); err != nil {
		return err
	}
	if err := f.Active(); err != nil {
		return err
	}
	in.UserID = f.UserID
	return nil
}

// AccountFor returns the facts of the account of an /accounts/{id}/… path
// for pr: a 404 for a malformed id, an unknown account, or one pr does not
// own.
func (s *Service) AccountFor(ctx context.Context, pr auth.Principal, id string) (accounts.Facts, error) {
	return s.Accounts.For(ctx, pr, id)
}

// lookupIn is Accounts.Lookup for a caller holding tx (an event handler in
// the receiver's transaction, a confirmation): the read model is read in
// tx, never on another of the pool's connections, which a holder of one
// must not wait for. With as many such holders as the pool has
// connections, each would wait for a connection none of them gives back,
// and so would every request, until their deadlines (the 504s of POST
// /payments in the mixed bench). Only an account the read model does not
// know yet is read through, as Lookup does.
func (s *Service) lookupIn(ctx context.Context, tx Tx, id string) (accounts.Facts, error) {
	if c, ok := ids.Canonical(id); ok {
		f, known, err := tx.Account(ctx, c)
		if err != nil || known {
			return f, err
		}
	}
	return s.Accounts.Lookup(ctx, id)
}

// chargeable is nil when the account may be charged or paid into now: f
// when the caller read its facts already (known, as PaymentWithAccount
// does), else read through in tx, the caller's transaction.
func (s *Service) chargeable(ctx context.Context, tx Tx, accountID string, f accounts.Facts, known bool) error {
	if !known {
		var err error
		if f, err = s.lookupIn(ctx, tx, accountID); err != nil {
			return err
		}
	}
	return f.Active()
}

// collectionAccount returns the facts of the account an invoice asks to
// collect from, read in the handler's transaction tx. An account nobody
// knows can never be collected from (the event is parked); one that
// cannot be looked up now is retried.
func (s *Service) collectionAccount(ctx context.Context, tx Tx, inv events.Invoice) (accounts.Facts, error) {
	f, err := s.lookupIn(ctx, tx, inv.AccountID)
	var pe *apperr.Error
	if errors.As(err, &pe) && pe.Code == apperr.NotFound {
		return accounts.Facts{}, events.Permanent(fmt.Errorf("invoice %s: no account %s", inv.InvoiceID, inv.AccountID))
	}
	return f, err
}

// refuseCollection records that an invoice's payment p was not charged
// because its account is not active: the payment waits for a payment
// method (requires_payment_method) with last_payment_error
// account_not_active, and payment.failed tells generate-invoice why (its
// dunning counts it as a failed attempt). p is inserted when new (its id
// is derived from the invoice), or updated when it exists.
func (s *Service) refuseCollection(ctx context.Context, tx Tx, p *Payment, f accounts.Facts, exists bool) error {
	err := s.recordRefusal(ctx, tx, p, exists, string(accounts.NotActive), "account "+f.ID+" is "+f.Status+": it cannot be charged")
	if err == nil {
		slog.InfoContext(ctx, "invoice not collected: the account is not active", "invoice_id", Str(p.InvoiceID),
			"account_id", f.ID, "status", f.Status)
	}
	return err
}

// recordRefusal records p as a collection billfn refused before any
// gateway was asked (code says why), with its events.
func (s *Service) recordRefusal(ctx context.Context, tx Tx, p *Payment, exists bool, code, message string) error {
	now := s.now()
	p.Status = RequiresPaymentMethod
	p.Touch(now)
	p.LastPaymentError = &PaymentError{Code: code, Reason: code, Message: message, Attempt: p.Attempts, Gateway: p.GatewayName()}
	p.Finish()
	e := emitter{ctx: ctx}
	if !exists {
		p.Announced = true
		inserted, err := tx.InsertPayment(ctx, p)
		if err != nil || !inserted {
			return err // a redelivery: refused once already
		}
		e.payment(events.TypePaymentCreated, p, nil)
	} else if err := tx.UpdatePayment(ctx, p); err != nil {
		return err
	}
	e.changed(p, Change{Failed: true})
	return e.flush(tx)
}
