package billing

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/postgres"
)

// The customer's emails: a billfn.notification.requested is logged as a
// notification (queued, or suppressed with its reason), the sender sends
// what is due and records each attempt, an admin may resend one.

// Mail is how the customer's emails go out.
type Mail struct {
	// SMTP sends (nil without SMTP_URL: everything stays queued).
	SMTP *notify.Mailer
	// From is the From address of every email.
	From notify.Sender
	// MaxAttempts bounds the attempts of an email whose server answers
	// temporary failures; then it is failed.
	MaxAttempts int
	// Operator is the merchant's operator's address, to which the notices
	// about billfn itself go (a webhook endpoint disabled); empty: those
	// are logged suppressed (notify.ReasonNoOperator).
	Operator string
	// LogRetention is how long a notification that is done with (sent,
	// failed, suppressed) stays in the log; 0 keeps them for ever.
	LogRetention time.Duration
	// Connections is how many SMTP sessions the sender holds open at once
	// (0: DefaultConnections; at most MaxConnections).
	Connections int

	sendMu sync.Mutex // one sending pass at a time per process
}

// EmailsSent counts the attempts of the sender by outcome (registered by
// the api with the function's metrics).
var EmailsSent = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "generate_invoice_emails_total",
	Help: "Customer email attempts by kind and outcome (sent, retry, failed) and notifications logged as suppressed.",
}, []string{"kind", "outcome"})

// Sending reports whether emails go out at all (SMTP_URL is set).
func (s *Service) Sending() bool { return s.mail != nil && s.mail.SMTP != nil }

// QueueNotification logs the email a billfn.notification.requested asks
// for, in the receiver's transaction: queued for the sender, or
// suppressed with its reason (the customer has no address). The
// recipient is the invoice's customer, or the subscription's for a
// subscription's notice.
func (s *Service) QueueNotification(ctx context.Context, tx Tx, ev events.Event, req *events.NotificationRequested) error {
	if notify.AboutSubscription(req.Kind) {
		return s.queueSubscriptionNotice(ctx, tx, ev, req)
	}
	// The subject and the recipient are the invoice's own columns; the
	// sender reads the lines when it composes the email.
	inv, err := tx.InvoiceHead(ctx, req.InvoiceID)
	var pe *apperr.Error
	if errors.As(err, &pe) && pe.Code == apperr.NotFound {
		return events.Permanent(fmt.Errorf("%s %s names invoice %q, which does not exist", ev.Type(), ev.ID(), req.InvoiceID))
	}
	if err != nil {
		return err
	}
	return s.logNotification(ctx, tx, s.invoiceNotification(ev, req, inv))
}

// QueueNotifications is QueueNotification for the requests reqs of the
// events evs of a batch delivery, in the receiver's transaction: the
// invoices' heads are read in one statement and the notifications written
// in one round trip, not two round trips per email. A request naming an
// invoice that does not exist fails the batch permanently (the receiver
// then applies its events one by one, and parks that one).
func (s *Service) QueueNotifications(ctx context.Context, tx Tx, evs []events.Event, reqs []*events.NotificationRequested) error {
	var invoiceIDs []string
	for i, req := range reqs {
		if notify.AboutSubscription(req.Kind) {
			if err := s.queueSubscriptionNotice(ctx, tx, evs[i], req); err != nil {
				return err
			}
			continue
		}
		invoiceIDs = append(invoiceIDs, req.InvoiceID)
	}
	if len(invoiceIDs) == 0 {
		return nil
	}
	invs, err := tx.InvoiceHeads(ctx, invoiceIDs)
	if err != nil {
		return err
	}
	ns := make([]*notify.Notification, 0, len(invoiceIDs))
	for i, req := range reqs {
		if notify.AboutSubscription(req.Kind) {
			continue
		}
		inv := invs[req.InvoiceID]
		if inv == nil {
			return events.Permanent(fmt.Errorf("%s %s names invoice %q, which does not exist", evs[i].Type(), evs[i].ID(), req.InvoiceID))
		}
		ns = append(ns, s.invoiceNotification(evs[i], req, inv))
	}
	fresh, err := tx.InsertNotifications(ctx, ns)
	if err != nil {
		return err
	}
	for i, n := range ns {
		if fresh[i] {
			s.notificationLogged(ctx, n)
		}
	}
	return nil
}

// invoiceNotification is the log's row for req, about inv. An invoice its
// customer made is not e-mailed: the address, name, memo and lines are
// the customer's word, and the merchant's server would send them, From
// the merchant, to whoever the customer named.
func (s *Service) invoiceNotification(ev events.Event, req *events.NotificationRequested, inv *invoicing.Invoice) *notify.Notification {
	n := notify.New(ids.New(), ev.Source(), ev.ID(), *req, inv.Customer.Email, s.mail.From.Domain(), s.Clock())
	if inv.DraftedByCustomer {
		n.Withhold(notify.ReasonCustomerMade)
	}
	n.AccountID, n.UserID = inv.AccountID, inv.UserID // the invoice's own, whatever the event says
	if notify.Kinds[n.Kind] {
		n.Subject = notify.Subject(n.Kind, inv, *req, s.mail.From.Name())
	}
	return n
}

// QueueEndpointDisabled logs the operator's notice of a webhook endpoint
// handle-webhook disabled (billfn.webhook_endpoint.disabled), in the
// receiver's transaction: once per event (its source and id), queued to
// the operator's address, or suppressed when none is configured.
func (s *Service) QueueEndpointDisabled(ctx context.Context, tx Tx, ev events.Event, d *events.WebhookEndpointDisabled) error {
	if d.EndpointID == "" || !ids.Valid(d.EndpointID) || d.URL == "" {
		return events.Permanent(fmt.Errorf("%s %s names no endpoint (id %q, url %q)", ev.Type(), ev.ID(), d.EndpointID, d.URL))
	}
	n := notify.NewEndpointDisabled(ids.New(), ev.Source(), ev.ID(), *d, s.mail.Operator, s.mail.From.Domain(), s.Clock())
	return s.logNotification(ctx, tx, n)
}

func (s *Service) queueSubscriptionNotice(ctx context.Context, tx Tx, ev events.Event, req *events.NotificationRequested) error {
	sub, err := tx.Subscription(ctx, req.SubscriptionID)
	var pe *apperr.Error
	if errors.As(err, &pe) && pe.Code == apperr.NotFound {
		return events.Permanent(fmt.Errorf("%s %s names subscription %q, which does not exist", ev.Type(), ev.ID(), req.SubscriptionID))
	}
	if err != nil {
		return err
	}
	req.InvoiceID = "" // a subscription's notice is about no invoice
	n := notify.New(ids.New(), ev.Source(), ev.ID(), *req, sub.Customer.Email, s.mail.From.Domain(), s.Clock())
	n.AccountID, n.UserID = sub.AccountID, sub.UserID // the subscription's own, whatever the event says
	n.Subject = notify.SubscriptionSubject(n.Kind, sub, *req)
	return s.logNotification(ctx, tx, n)
}

// logNotification writes n to the log once per requesting event and
// wakes the sender when it is to be sent.
func (s *Service) logNotification(ctx context.Context, tx Tx, n *notify.Notification) error {
	fresh, err := tx.InsertNotification(ctx, n)
	if err != nil || !fresh {
		return err
	}
	s.notificationLogged(ctx, n)
	return nil
}

// notificationLogged counts and logs a suppressed notification n just
// written to the log, or wakes the sender for one to send.
func (s *Service) notificationLogged(ctx context.Context, n *notify.Notification) {
	if n.Status == notify.Suppressed {
		EmailsSent.WithLabelValues(n.Kind, "suppressed").Inc()
		slog.InfoContext(ctx, "email suppressed", "notification_id", n.ID, "kind", n.Kind, "about", n.About(), "reason", *n.Reason)
		return
	}
	if s.MailQueued != nil {
		s.MailQueued(ctx)
	}
}

// Sending: claimed rows are leased this long; a sender that dies while
// sending leaves its rows to the next one after the lease.
const mailLease = 2 * time.Minute

// DefaultConnections is how many SMTP sessions a sender holds open at
// once when Mail.Connections is not set (EMAIL_SMTP_CONNECTIONS);
// MaxConnections bounds what may be configured. Each is one worker
// sending one email after the other (a session carries one message at a
// time), so the connections bound the emails in flight towards the
// server; an SMTP relay limits the sessions one client may hold open.
const (
	DefaultConnections = 8
	MaxConnections     = 64
)

// claimPerConnection is how many rows a claim leases per connection: a
// claim of connections × claimPerConnection rows, and at most two claims
// in flight (claimed, not yet recorded), so that every connection has its
// next email waiting while the last claim's outcomes are written.
const claimPerConnection = 5

// connections is how many SMTP sessions the sender uses.
func (m *Mail) connections() int {
	if m.Connections < 1 {
		return DefaultConnections
	}
	return min(m.Connections, MaxConnections)
}

// attemptResult is a worker's outcome for one claimed email: n to record,
// or err (n stays as it was: it comes back when its lease ends).
type attemptResult struct {
	n   *notify.Notification
	err error
}

// claimed is a claimed email and, when it is about an invoice that
// exists, that invoice as read with the rest of its claim.
type claimed struct {
	n   *notify.Notification
	inv *invoicing.Invoice
}

// SendDue sends every queued email whose attempt has come: each is
// composed from the invoice (or subscription) as it is now, sent through
// SMTP, and its outcome written to the log (sent; queued again with
// backoff after a 4xx or no answer; failed after a 5xx). Without SMTP it
// sends nothing. Safe from several replicas (rows are leased), idempotent.
//
// It is a pipeline: a claimer leases due rows by batches (connections ×
// claimPerConnection) and hands each to the worker of its recipient; each
// of the workers sends over its own SMTP session, held for the whole pass;
// a recorder writes the outcomes in one transaction per batch's worth. The
// claimer leases the next batch while the last one is sent, at most two
// batches in flight, so no connection waits for the slowest of a batch
// nor for the database. The invoices a batch's emails are about are read
// with it, in one round trip, not one read (and one commit) per email.
func (s *Service) SendDue(ctx context.Context) (int, error) {
	if !s.Sending() {
		return 0, nil
	}
	s.mail.sendMu.Lock()
	defer s.mail.sendMu.Unlock()
	workers := s.mail.connections()
	batch := workers * claimPerConnection

	var (
		mu       sync.Mutex
		room     = sync.NewCond(&mu)
		inFlight int     // claimed, not yet recorded (or dropped)
		errs     []error // the first stops the claimer
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		room.Broadcast()
	}
	results := make(chan attemptResult, 2*batch)
	queues := make([]chan claimed, workers)
	var wg sync.WaitGroup
	for w := range queues {
		// Never full: a worker holds at most what is in flight.
		queues[w] = make(chan claimed, 2*batch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			smtp := s.mail.SMTP.Session()
			defer smtp.Close()
			for c := range queues[w] {
				results <- attemptResult{c.n, s.attempt(ctx, smtp, c.n, c.inv)}
			}
		}()
	}

	// The recorder writes the outcomes by batches: once a batch's worth
	// has come, and what is left at the end. The outcomes are written even
	// when the context ends: the server has answered.
	total := 0
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		var done []*notify.Notification
		got := 0
		flush := func() {
			if len(done) > 0 {
				rctx, cancel := postgres.Detached(ctx)
				err := s.store.RecordAttempts(rctx, done)
				cancel()
				if err != nil {
					fail(err) // an email not recorded comes back when its lease ends
				} else {
					total += len(done)
				}
			}
			mu.Lock()
			inFlight -= got
			mu.Unlock()
			room.Broadcast()
			done, got = done[:0], 0
		}
		for r := range results {
			got++
			if r.err != nil {
				fail(r.err)
			} else {
				done = append(done, r.n)
			}
			if got >= batch {
				flush()
			}
		}
		flush()
	}()

	// The claimer: a recipient's emails go through one worker, in the
	// order they were claimed (an invoice before its receipt).
	for {
		mu.Lock()
		for inFlight > batch && len(errs) == 0 {
			room.Wait()
		}
		stop := len(errs) > 0
		mu.Unlock()
		if stop {
			break
		}
		ns, err := s.store.ClaimDueNotifications(ctx, s.Clock(), mailLease, batch)
		if err != nil {
			fail(err)
			break
		}
		invs, err := s.claimedInvoices(ctx, ns)
		if err != nil {
			fail(err) // the claimed rows come back when their lease ends
			break
		}
		mu.Lock()
		inFlight += len(ns)
		mu.Unlock()
		for _, n := range ns {
			c := claimed{n: n}
			if n.InvoiceID != nil {
				c.inv = invs[*n.InvoiceID]
			}
			queues[worker(n.Recipient, workers)] <- c
		}
		if len(ns) < batch {
			break
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	close(results)
	<-recorded
	return total, errors.Join(errs...)
}

// worker is the sender worker of a recipient's emails, of workers.
func worker(recipient string, workers int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(strings.ToLower(recipient)))
	return int(h.Sum32() % uint32(workers))
}

// claimedInvoices reads the invoices the claimed emails ns are about, in
// one round trip.
func (s *Service) claimedInvoices(ctx context.Context, ns []*notify.Notification) (map[string]*invoicing.Invoice, error) {
	var ids []string
	for _, n := range ns {
		if n.InvoiceID != nil && n.EndpointID == nil && !notify.AboutSubscription(n.Kind) {
			ids = append(ids, *n.InvoiceID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return s.store.InvoicesByID(ctx, ids)
}

// attempt composes and sends n over smtp and applies the outcome to n
// (notify.Notification.Record); an error (the database) leaves n as it
// was, to come back when its lease ends. inv, when not nil, is the invoice
// n is about, read with n's claim.
func (s *Service) attempt(ctx context.Context, smtp *notify.Session, n *notify.Notification, inv *invoicing.Invoice) error {
	e, err := s.compose(ctx, n, inv)
	var (
		o    notify.Outcome
		sent bool
	)
	var pe *apperr.Error
	switch {
	case err == nil:
		n.Subject = e.Subject
		o, sent = smtp.Send(ctx, e, s.Clock())
	case errors.As(err, &pe) && pe.Code == apperr.NotFound, errors.Is(err, errCannotCompose):
		o = notify.Outcome{Response: "cannot compose: " + err.Error()} // permanent
	default:
		return err
	}
	n.Record(o, sent, s.Clock(), s.mail.MaxAttempts)
	outcome := map[string]string{notify.Sent: "sent", notify.Queued: "retry", notify.Failed: "failed"}[n.Status]
	EmailsSent.WithLabelValues(n.Kind, outcome).Inc()
	log := slog.InfoContext
	if !sent {
		log = slog.WarnContext
	}
	log(ctx, "email attempt", "notification_id", n.ID, "kind", n.Kind, "about", n.About(), "attempt", n.Attempts,
		"status", n.Status, "smtp_code", o.Code, "smtp_response", o.Response)
	return nil
}

// errCannotCompose: the email cannot be written (a template failed, the
// PDF could not be rendered): permanent.
var errCannotCompose = errors.New("the email cannot be composed")

// compose writes n's email from what it is about as it is now: the
// invoice (with its PDF where the kind attaches it) or the subscription.
// inv, when not nil, is the invoice, read with n's claim; else it is read
// here (not found: the email cannot be composed).
func (s *Service) compose(ctx context.Context, n *notify.Notification, inv *invoicing.Invoice) (*notify.Email, error) {
	var (
		e   *notify.Email
		err error
	)
	switch {
	case n.EndpointID != nil && n.Kind == notify.KindEndpointDisabled:
		e, err = notify.ComposeEndpointDisabled(n, s.mail.From)
	case n.SubscriptionID != nil && notify.AboutSubscription(n.Kind):
		sub, serr := s.store.Subscription(ctx, *n.SubscriptionID)
		if serr != nil {
			return nil, serr
		}
		e, err = notify.ComposeSubscription(n, sub, s.mail.From)
	case n.InvoiceID != nil:
		if inv == nil {
			var ierr error
			if inv, ierr = s.store.Invoice(ctx, *n.InvoiceID); ierr != nil {
				return nil, ierr
			}
		}
		e, err = notify.Compose(n, inv, s.mail.From)
	default:
		err = fmt.Errorf("a %s names neither an invoice nor a subscription", n.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCannotCompose, err)
	}
	return e, nil
}

// Pruning: a tick deletes at most pruneRounds × pruneBatch notifications,
// in short transactions; a backlog goes over the next ticks.
const (
	pruneBatch  = 5000
	pruneRounds = 10
)

// PruneNotifications deletes the notifications done with (sent, failed,
// suppressed) whose last change is older than the log's retention, and
// answers how many: tick work.
func (s *Service) PruneNotifications(ctx context.Context, now time.Time) (int, error) {
	if s.mail == nil || s.mail.LogRetention <= 0 {
		return 0, nil
	}
	total := 0
	for range pruneRounds {
		n, err := s.store.PruneNotifications(ctx, now.Add(-s.mail.LogRetention), pruneBatch)
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
	}
	return total, nil
}

// ResendNotification queues a new email like a sent or failed one (its
// own row and Message-ID; resend_of names the original), with the answer
// done makes of it.
func (s *Service) ResendNotification(ctx context.Context, id string, done Answer) (*notify.Notification, error) {
	var out *notify.Notification
	err := s.store.InTx(ctx, func(tx Tx) error {
		n, err := tx.Notification(ctx, id, true)
		if err != nil {
			return err
		}
		if out, err = notify.Resend(n, ids.New(), s.mail.From.Domain(), s.Clock()); err != nil {
			return err
		}
		out.Subject = n.Subject
		if _, err := tx.InsertNotification(ctx, out); err != nil {
			return err
		}
		return complete(ctx, tx, done, out)
	})
	return out, err
}
