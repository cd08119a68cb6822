package billing

import (
	"context"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/shared/auth"
)

// What the read endpoints ask. The api caches invoices and subscriptions
// (and checks who may read a cached one); the queries read the store.

// InvoiceFilter selects a page of invoices.
type InvoiceFilter struct {
	Owner          string // forced for customers
	AccountID      string
	SubscriptionID string
	Status         string
	DueBefore      *time.Time
	After          string // keyset: ids below this one
	Limit          int
}

// SubFilter selects a page of subscriptions.
type SubFilter struct {
	Owner, AccountID, Status, After string
	Limit                           int
}

// NotificationFilter selects a page of the delivery log.
type NotificationFilter struct {
	InvoiceID, SubscriptionID, Status string
	Before                            string // keyset: ids below this one (newest first)
	Limit                             int
}

// Invoice reads invoice id (for the api's cache, which authorizes).
func (s *Service) Invoice(ctx context.Context, id string) (*invoicing.Invoice, error) {
	return s.store.Invoice(ctx, id)
}

// Invoices lists the invoices f selects for p. A customer naming another's
// account or subscription gets the 404 an unknown one gets, not an empty
// page.
func (s *Service) Invoices(ctx context.Context, p auth.Principal, f InvoiceFilter) ([]*invoicing.Invoice, error) {
	if f.AccountID != "" {
		if err := s.ownedAccount(ctx, p, f.AccountID); err != nil {
			return nil, err
		}
	}
	if f.SubscriptionID != "" && !p.Privileged() {
		if sub, err := s.store.Subscription(ctx, f.SubscriptionID); err != nil || !p.CanAccess(sub.UserID) {
			return nil, invoicing.NotFound("subscription", f.SubscriptionID)
		}
	}
	return s.store.Invoices(ctx, f)
}

// Subscription reads subscription id (for the api's cache, which
// authorizes).
func (s *Service) Subscription(ctx context.Context, id string) (*invoicing.Subscription, error) {
	return s.store.Subscription(ctx, id)
}

// Subscriptions lists the subscriptions f selects for p (an account p may
// not see is not_found).
func (s *Service) Subscriptions(ctx context.Context, p auth.Principal, f SubFilter) ([]*invoicing.Subscription, error) {
	if f.AccountID != "" {
		if err := s.ownedAccount(ctx, p, f.AccountID); err != nil {
			return nil, err
		}
	}
	return s.store.Subscriptions(ctx, f)
}

// Notifications lists the delivery log as f selects it.
func (s *Service) Notifications(ctx context.Context, f NotificationFilter) ([]*notify.Notification, error) {
	return s.store.Notifications(ctx, f)
}

// Notification reads one notification of the delivery log.
func (s *Service) Notification(ctx context.Context, id string) (*notify.Notification, error) {
	return s.store.Notification(ctx, id)
}
