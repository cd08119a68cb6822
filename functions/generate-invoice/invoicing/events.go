package invoicing

import (
	"time"

	"github.com/billfn/billfn/shared/events"
)

// Summarize is the data of every invoice event (the shared contract).
func Summarize(inv *Invoice) events.Invoice {
	return events.Invoice{InvoiceID: inv.ID, Number: inv.Number, AccountID: inv.AccountID, UserID: inv.UserID,
		SubscriptionID: inv.SubscriptionID, Currency: string(inv.Currency), Subtotal: inv.Subtotal, Discount: inv.Discount,
		Tax: inv.Tax, Total: inv.Total, AmountPaid: inv.AmountPaid, AmountDue: inv.AmountDue,
		AmountRefunded: inv.AmountRefunded, Status: inv.Status, Overdue: inv.Overdue, DueDate: dateText(inv.DueDate),
		CollectionMethod: inv.CollectionMethod, BillingReason: inv.BillingReason, PeriodStart: inv.PeriodStart,
		PeriodEnd: inv.PeriodEnd, FinalizedAt: inv.FinalizedAt, PaidAt: inv.PaidAt}
}

// dateText writes a date as the contract does: YYYY-MM-DD, or nil.
func dateText(d *Date) *string {
	if d == nil {
		return nil
	}
	return ptr(d.Format(time.DateOnly))
}

// Event is a fact a change emits: its type, subject and partition key,
// and its data (a type of the shared contract, shared/events). The store writes it to the outbox in the change's
// transaction.
type Event struct {
	Type, Subject, Key string
	Data               any
}

func NewEvent(typ, subject, key string, data any) Event {
	return Event{Type: typ, Subject: subject, Key: key, Data: data}
}

func InvoiceEvent(typ string, inv *Invoice, attempt int) Event {
	sum := Summarize(inv)
	sum.Attempt = attempt
	return NewEvent(typ, inv.ID, inv.AccountID, sum)
}

// Notification asks for a message to the customer about inv (kind:
// events.Notify…). generate-invoice consumes it itself: it becomes one
// email to the invoice's customer.
func Notification(kind string, inv *Invoice) Event {
	return notification(kind, inv, 0, "")
}

// Reminder asks for dunning reminder attempt about overdue inv.
func Reminder(inv *Invoice, attempt int) Event {
	return notification(events.NotifyInvoiceReminder, inv, attempt, "")
}

// PaymentFailedNotice tells the customer a payment of inv failed, and why.
func PaymentFailedNotice(inv *Invoice, reason string) Event {
	return notification(events.NotifyPaymentFailed, inv, 0, reason)
}

func notification(kind string, inv *Invoice, attempt int, reason string) Event {
	return NewEvent(events.TypeNotificationRequested, inv.ID, inv.AccountID, events.NotificationRequested{Kind: kind,
		AccountID: inv.AccountID, UserID: inv.UserID, InvoiceID: inv.ID, Number: inv.Number,
		AmountDue: inv.AmountDue, Currency: string(inv.Currency), DueDate: dateText(inv.DueDate), Email: inv.Customer.Email,
		AmountPaid: inv.AmountPaid, Attempt: attempt, Reason: reason})
}

// SubscriptionEvent is a subscription fact of type typ about sub.
func SubscriptionEvent(typ string, sub *Subscription) Event {
	sub.Derive()
	p := sub.Plan
	return NewEvent(typ, sub.ID, sub.AccountID, events.Subscription{SubscriptionID: sub.ID,
		AccountID: sub.AccountID, UserID: sub.UserID, Status: sub.Status,
		Plan: events.Plan{Name: p.Name, Amount: p.Amount, Currency: string(p.Currency), Interval: p.Interval, IntervalCount: p.IntervalCount},
		MRR:  sub.MRR, Currency: string(sub.Plan.Currency), CurrentPeriodStart: sub.CurrentPeriodStart,
		CurrentPeriodEnd: sub.CurrentPeriodEnd, CancelAt: sub.CancelAt, CanceledAt: sub.CanceledAt})
}

// planOf is p as the contract writes it.
func planOf(p Plan) *events.Plan {
	return &events.Plan{Name: p.Name, Amount: p.Amount, Currency: string(p.Currency), Interval: p.Interval, IntervalCount: p.IntervalCount}
}

// PlanChangedNotice tells sub's customer its plan changed from previous
// to the plan it has now.
func PlanChangedNotice(sub *Subscription, previous Plan) Event {
	return subscriptionNotice(events.NotifySubscriptionChanged, sub, &previous)
}

// CanceledNotice tells sub's customer the subscription ended (after
// EndSubscription).
func CanceledNotice(sub *Subscription) Event {
	return subscriptionNotice(events.NotifySubscriptionCanceled, sub, nil)
}

func subscriptionNotice(kind string, sub *Subscription, previous *Plan) Event {
	req := events.NotificationRequested{Kind: kind, AccountID: sub.AccountID, UserID: sub.UserID,
		SubscriptionID: sub.ID, Currency: string(sub.Plan.Currency), Email: sub.Customer.Email, Plan: planOf(sub.Plan)}
	if previous != nil {
		req.PreviousPlan = planOf(*previous)
	}
	if kind == events.NotifySubscriptionCanceled {
		req.EndedAt = sub.CanceledAt // EndSubscription: when it took effect
	}
	return NewEvent(events.TypeNotificationRequested, sub.ID, sub.AccountID, req)
}
