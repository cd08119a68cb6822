package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

// EmailConfig is how generate-invoice sends the customer's emails.
type EmailConfig struct {
	// SMTPURL is the SMTP server (secret smtp-url): smtp://user:pass@host:587
	// (?starttls=required|opportunistic|none) or smtps://… for implicit
	// TLS. Without it emails stay queued in the delivery log until it is set.
	SMTPURL string `envconfig:"SMTP_URL" secret:"smtp-url"`
	// From is the From address of every email.
	From string `envconfig:"EMAIL_FROM" default:"billfn billing <billing@billfn.local>"`
	// MaxAttempts bounds the attempts of an email whose server answers
	// temporary failures (4xx, no answer); then it is failed.
	MaxAttempts int `envconfig:"EMAIL_MAX_ATTEMPTS" default:"20"`
}

func (c EmailConfig) check() error {
	if _, err := (notify.Sender{From: c.From}).Address(); err != nil {
		return err
	}
	if c.MaxAttempts < 1 {
		return fmt.Errorf("EMAIL_MAX_ATTEMPTS must be at least 1")
	}
	if c.SMTPURL != "" {
		if _, err := notify.ParseSMTPURL(c.SMTPURL); err != nil {
			return err
		}
	}
	return nil
}

// emailsSent counts the attempts of the sender by outcome.
var emailsSent = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "generate_invoice_emails_total",
	Help: "Customer email attempts by kind and outcome (sent, retry, failed) and notifications logged as suppressed.",
}, []string{"kind", "outcome"})

// mailer is the sending half of the customer's emails: the SMTP client
// (nil without SMTP_URL: everything stays queued) and what wakes the
// background sender.
type mailer struct {
	smtp   *notify.Mailer
	from   notify.Sender
	max    int
	wake   chan struct{}
	sendMu sync.Mutex // one sending pass at a time per process
}

func newMailer(cfg EmailConfig) *mailer {
	m := &mailer{from: notify.Sender{From: cfg.From}, max: cfg.MaxAttempts, wake: make(chan struct{}, 1)}
	if cfg.SMTPURL != "" {
		if c, err := notify.ParseSMTPURL(cfg.SMTPURL); err == nil { // checked by LoadConfig
			m.smtp = notify.NewMailer(c)
		}
	}
	return m
}

// kick wakes the background sender (never blocks).
func (m *mailer) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// onNotificationRequested logs the email a billfn.notification.requested
// asks for, in the receiver's transaction: queued for the sender, or
// suppressed with its reason (the invoice's customer has no address). The
// event is generate-invoice's own, consumed back from billing-events.
func (s *Service) onNotificationRequested(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var req events.NotificationRequested
	if err := decodeLoose(ev, &req); err != nil {
		return events.Permanent(err)
	}
	inv, err := store.GetInvoice(ctx, tx, req.InvoiceID, false)
	var pe *problem.Error
	if errors.As(err, &pe) && pe.Code == problem.NotFound {
		return events.Permanent(fmt.Errorf("%s %s names invoice %q, which does not exist", ev.Type(), ev.ID(), req.InvoiceID))
	}
	if err != nil {
		return err
	}
	n := notify.New(ids.New(), ev.Source(), ev.ID(), req, inv.Customer.Email, s.mail.from.Domain(), s.clock())
	n.AccountID, n.UserID = inv.AccountID, inv.UserID // the invoice's own, whatever the event says
	if notify.Kinds[n.Kind] {
		n.Subject = notify.Subject(n.Kind, inv, req, s.mail.from.Name())
	}
	fresh, err := tx.InsertNotification(ctx, n)
	if err != nil || !fresh {
		return err
	}
	if n.Status == notify.Suppressed {
		emailsSent.WithLabelValues(n.Kind, "suppressed").Inc()
		slog.InfoContext(ctx, "email suppressed", "notification_id", n.ID, "kind", n.Kind, "invoice_id", n.InvoiceID, "reason", *n.Reason)
		return nil
	}
	s.mailQueued(ctx)
	return nil
}

// mailQueued wakes the sender once the current delivery has committed
// (eventsHandler), at once outside one.
func (s *Service) mailQueued(ctx context.Context) {
	if c, ok := ctx.Value(invalidationsKey{}).(*invalidations); ok {
		c.mu.Lock()
		c.mail = true
		c.mu.Unlock()
		return
	}
	s.mail.kick()
}

// Sending: claimed rows are leased this long; a sender that dies while
// sending leaves its rows to the next one after the lease.
const (
	mailLease = 2 * time.Minute
	mailBatch = 20
)

// SendDue sends every queued email whose attempt has come: each is
// composed from the invoice as it is now, sent through SMTP, and its
// outcome written to the log (sent; queued again with backoff after a 4xx
// or no answer; failed after a 5xx). Without SMTP_URL it sends nothing.
// Safe from several replicas (rows are leased), idempotent.
func (s *Service) SendDue(ctx context.Context) (int, error) {
	if s.mail.smtp == nil {
		return 0, nil
	}
	s.mail.sendMu.Lock()
	defer s.mail.sendMu.Unlock()
	total := 0
	for {
		ns, err := s.st.ClaimDueNotifications(ctx, s.clock(), mailLease, mailBatch)
		if err != nil {
			return total, err
		}
		for _, n := range ns {
			if err := s.sendOne(ctx, n); err != nil {
				return total, err
			}
			total++
		}
		if len(ns) < mailBatch {
			return total, nil
		}
	}
}

func (s *Service) sendOne(ctx context.Context, n *notify.Notification) error {
	inv, err := store.GetInvoice(ctx, s.d.Pool, n.InvoiceID, false)
	if err != nil {
		return err // the database: the lease brings it back
	}
	var (
		o    notify.Outcome
		sent bool
	)
	e, err := notify.Compose(n, inv, s.mail.from)
	if err == nil {
		n.Subject = e.Subject
		o, sent = s.mail.smtp.Send(ctx, e, s.clock())
	} else {
		o = notify.Outcome{Response: "cannot compose: " + err.Error()} // permanent
	}
	n.Record(o, sent, s.clock(), s.mail.max)
	outcome := map[string]string{notify.Sent: "sent", notify.Queued: "retry", notify.Failed: "failed"}[n.Status]
	emailsSent.WithLabelValues(n.Kind, outcome).Inc()
	log := slog.InfoContext
	if !sent {
		log = slog.WarnContext
	}
	log(ctx, "email attempt", "notification_id", n.ID, "kind", n.Kind, "invoice_id", n.InvoiceID, "attempt", n.Attempts,
		"status", n.Status, "smtp_code", o.Code, "smtp_response", o.Response)
	ctx, cancel := postgres.Detached(ctx)
	defer cancel()
	_, err = s.st.RecordAttempt(ctx, n)
	return err
}

// StartSender runs the background sender until ctx ends: woken when an
// email is queued, and every interval for retries whose time has come.
// (The schedule tick sends too, so a replica without it loses nothing.)
func (s *Service) StartSender(ctx context.Context, interval time.Duration) {
	if s.mail.smtp == nil {
		slog.Warn("SMTP_URL is not set: customer emails stay queued in the delivery log until it is")
		return
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.mail.wake:
			case <-t.C:
			}
			if _, err := s.SendDue(ctx); err != nil && ctx.Err() == nil {
				slog.Warn("email sender", "err", err.Error())
			}
		}
	}()
}

// ---- the delivery log's endpoints ----

var notificationStatuses = map[string]bool{notify.Queued: true, notify.Sent: true, notify.Failed: true, notify.Suppressed: true}

// listNotifications: GET /notifications?invoice_id=&status=, newest first.
func (s *Service) listNotifications(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var v problem.Validator
	f := store.NotificationFilter{Status: q.Get("status")}
	if id := q.Get("invoice_id"); id != "" {
		c, ok := ids.Canonical(id)
		v.Check(ok, "invoice_id", "must be a UUID")
		f.InvoiceID = c
	}
	v.Check(f.Status == "" || notificationStatuses[f.Status], "status", "must be queued, sent, failed or suppressed")
	limit, after, err := httpx.PagingByID(r, 20, 100)
	if err == nil {
		err = v.Err()
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	f.Before, f.Limit = after, limit+1
	ns, err := s.st.ListNotifications(r.Context(), f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(ns, limit, func(n *notify.Notification) any { return httpx.IDCursor{ID: n.ID} }))
}

// getNotification: GET /notifications/{id}.
func (s *Service) getNotification(w http.ResponseWriter, r *http.Request) {
	n, err := s.st.GetNotification(r.Context(), strings.ToLower(r.PathValue("id")))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, n)
}

// resendNotification: POST /notifications/{id}/resend queues a new email
// like a sent or failed one (its own row and Message-ID; resend_of names
// the original), once per Idempotency-Key.
func (s *Service) resendNotification(w http.ResponseWriter, r *http.Request) {
	id := strings.ToLower(r.PathValue("id"))
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	var out *notify.Notification
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		n, err := store.GetNotification(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if out, err = notify.Resend(n, ids.New(), s.mail.from.Domain(), s.clock()); err != nil {
			return err
		}
		out.Subject = n.Subject
		if _, err := tx.InsertNotification(ctx, out); err != nil {
			return err
		}
		return tx.Complete(ctx, idempotency.Response{Status: http.StatusAccepted, Body: out})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.mail.kick()
	w.Header().Set("Location", "/notifications/"+out.ID)
	httpx.WriteJSON(w, http.StatusAccepted, out)
}
