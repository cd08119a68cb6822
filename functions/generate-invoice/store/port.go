package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/idempotency"
)

// The ports of the use cases (package billing): *Tx is a billing.Tx, and
// Billing adapts the store to billing.Store.

var _ billing.Tx = (*Tx)(nil)

// Invoice reads invoice id, locked when lock is set.
func (tx *Tx) Invoice(ctx context.Context, id string, lock bool) (*invoicing.Invoice, error) {
	return GetInvoice(ctx, tx, id, lock)
}

// InvoiceHead reads invoice id without its lines.
func (tx *Tx) InvoiceHead(ctx context.Context, id string) (*invoicing.Invoice, error) {
	return GetInvoiceHead(ctx, tx, id)
}

// InvoiceHeads reads the invoices of ids that exist without their lines.
func (tx *Tx) InvoiceHeads(ctx context.Context, ids []string) (map[string]*invoicing.Invoice, error) {
	return GetInvoiceHeads(ctx, tx, ids)
}

// SaveInvoice writes a changed invoice (not its lines).
func (tx *Tx) SaveInvoice(ctx context.Context, inv *invoicing.Invoice) error {
	return SaveInvoice(ctx, tx, inv)
}

// CompleteRequests records how invoice requests ended.
func (tx *Tx) CompleteRequests(ctx context.Context, outs []RequestOutcome, now time.Time) error {
	return CompleteRequests(ctx, tx, outs, now)
}

// InsertInvoices writes new invoices and their lines.
func (tx *Tx) InsertInvoices(ctx context.Context, invs []*invoicing.Invoice) error {
	return InsertInvoices(ctx, tx, invs)
}

// ReplaceLines rewrites the lines of an invoice.
func (tx *Tx) ReplaceLines(ctx context.Context, inv *invoicing.Invoice) error {
	return ReplaceLines(ctx, tx, inv)
}

// TaxRates returns the rates of ids that exist.
func (tx *Tx) TaxRates(ctx context.Context, ids []string) ([]invoicing.TaxRate, error) {
	return GetTaxRates(ctx, tx, ids)
}

// Coupon returns coupon id, locked when lock is set (ErrNotFound).
func (tx *Tx) Coupon(ctx context.Context, id string, lock bool) (invoicing.Coupon, error) {
	return GetCoupon(ctx, tx, id, lock)
}

// Subscription reads subscription id in the transaction.
func (tx *Tx) Subscription(ctx context.Context, id string) (*invoicing.Subscription, error) {
	return GetSub(ctx, tx, id, false)
}

// InsertSub writes a new subscription.
func (tx *Tx) InsertSub(ctx context.Context, sub *invoicing.Subscription) error {
	return InsertSub(ctx, tx, sub)
}

// SaveSub writes a changed subscription.
func (tx *Tx) SaveSub(ctx context.Context, sub *invoicing.Subscription) error {
	return SaveSub(ctx, tx, sub)
}

// Account reads the accounts' read model in the transaction.
func (tx *Tx) Account(ctx context.Context, id string) (accounts.Facts, bool, error) {
	if tx.accts == nil {
		return accounts.Facts{}, false, nil
	}
	return tx.accts.Get(ctx, tx, id)
}

// Record stores a request's answer, an idempotency.Response, in the
// transaction (nothing without an Idempotency-Key).
func (tx *Tx) Record(ctx context.Context, answer any) error {
	if answer == nil {
		return nil
	}
	resp, ok := answer.(idempotency.Response)
	if !ok {
		return fmt.Errorf("store: cannot record a %T as a request's answer", answer)
	}
	return tx.Complete(ctx, resp)
}

// InsertPendingRequests records invoice requests of source as pending.
func (tx *Tx) InsertPendingRequests(ctx context.Context, source string, ids, owners, accounts []string, byCustomer bool, now time.Time) error {
	return InsertPendingRequests(ctx, tx, source, ids, owners, accounts, byCustomer, now)
}

// CustomerRequests is the set of those of requests ids of source a customer made.
func (tx *Tx) CustomerRequests(ctx context.Context, source string, ids []string) (map[string]bool, error) {
	return CustomerRequests(ctx, tx, source, ids)
}

// InsertTaxRate adds a tax rate.
func (tx *Tx) InsertTaxRate(ctx context.Context, r invoicing.TaxRate) error {
	return InsertTaxRate(ctx, tx, r)
}

// InsertCoupon adds a coupon.
func (tx *Tx) InsertCoupon(ctx context.Context, c invoicing.Coupon) error {
	return InsertCoupon(ctx, tx, c)
}

// Notification reads notification id, locked when lock is set.
func (tx *Tx) Notification(ctx context.Context, id string, lock bool) (*notify.Notification, error) {
	return GetNotification(ctx, tx, id, lock)
}

// Billing is the store as the use cases see it (billing.Store).
func (s *Store) Billing() billing.Store { return port{s} }

type port struct{ s *Store }

func (p port) InTx(ctx context.Context, fn func(billing.Tx) error) error {
	return p.s.InTx(ctx, func(tx *Tx) error { return fn(tx) })
}

func (p port) UpdateSubscription(ctx context.Context, id string, fn func(billing.Tx, *invoicing.Subscription) ([]invoicing.Event, error)) (*invoicing.Subscription, error) {
	return p.s.UpdateSubscription(ctx, id, func(tx *Tx, sub *invoicing.Subscription) ([]invoicing.Event, error) { return fn(tx, sub) })
}

func (p port) Pipelined(ctx context.Context, fn func(billing.Tx) error) error {
	return p.s.Pipelined(ctx, func(tx *Tx) error { return fn(tx) })
}

func (p port) UpdateInvoice(ctx context.Context, id string, fn func(billing.Tx, *invoicing.Invoice) ([]invoicing.Event, error)) (*invoicing.Invoice, error) {
	return p.s.UpdateInvoice(ctx, id, func(tx *Tx, inv *invoicing.Invoice) ([]invoicing.Event, error) { return fn(tx, inv) })
}

func (p port) Request(ctx context.Context, id string) (*billing.InvoiceRequest, error) {
	return GetRequest(ctx, p.s.pool, id)
}

func (p port) Invoice(ctx context.Context, id string) (*invoicing.Invoice, error) {
	return ReadInvoice(ctx, p.s.pool, id)
}

func (p port) InvoicesByID(ctx context.Context, ids []string) (map[string]*invoicing.Invoice, error) {
	return ReadInvoices(ctx, p.s.pool, ids)
}

func (p port) Invoices(ctx context.Context, f billing.InvoiceFilter) ([]*invoicing.Invoice, error) {
	return ListInvoices(ctx, p.s.pool, f)
}

func (p port) Subscription(ctx context.Context, id string) (*invoicing.Subscription, error) {
	return GetSub(ctx, p.s.pool, id, false)
}

func (p port) Subscriptions(ctx context.Context, f billing.SubFilter) ([]*invoicing.Subscription, error) {
	return ListSubs(ctx, p.s.pool, f)
}

func (p port) Notification(ctx context.Context, id string) (*notify.Notification, error) {
	return p.s.GetNotification(ctx, id)
}

func (p port) Notifications(ctx context.Context, f billing.NotificationFilter) ([]*notify.Notification, error) {
	return p.s.ListNotifications(ctx, f)
}

func (p port) ClaimDueNotifications(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*notify.Notification, error) {
	return p.s.ClaimDueNotifications(ctx, now, lease, limit)
}

func (p port) PruneNotifications(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return p.s.PruneNotifications(ctx, cutoff, limit)
}

func (p port) RecordAttempts(ctx context.Context, ns []*notify.Notification) error {
	return p.s.RecordAttempts(ctx, ns)
}

func (p port) Coupon(ctx context.Context, id string) (invoicing.Coupon, error) {
	return GetCoupon(ctx, p.s.pool, id, false)
}

func (p port) CouponPage(ctx context.Context, after string, limit int) ([]invoicing.Coupon, error) {
	return ListCoupons(ctx, p.s.pool, after, limit)
}

func (p port) TaxRatePage(ctx context.Context, after string, limit int) ([]invoicing.TaxRate, error) {
	return ListTaxRates(ctx, p.s.pool, after, limit)
}

func (p port) TaxRates(ctx context.Context, ids []string) ([]invoicing.TaxRate, error) {
	return GetTaxRates(ctx, p.s.pool, ids)
}

var _ pgx.Tx = (*Tx)(nil)
