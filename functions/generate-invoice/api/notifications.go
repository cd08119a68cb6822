package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
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
	// Operator is the merchant's operator's address: the notices about
	// billfn itself (a webhook endpoint handle-webhook disabled) go there.
	// Empty: they are logged as not sent (reason no_operator_email).
	Operator string `envconfig:"EMAIL_OPERATOR"`
	// LogRetention is how long a notification that is done with (sent,
	// failed, suppressed) stays in the delivery log after its last
	// change; the tick deletes older ones. 0 keeps them for ever.
	LogRetention config.Duration `envconfig:"EMAIL_LOG_RETENTION" default:"8760h"`
	// Connections is how many SMTP sessions the sender holds open at once,
	// each a worker sending one email after the other: what the relay
	// allows one client (1 to billing.MaxConnections).
	Connections int `envconfig:"EMAIL_SMTP_CONNECTIONS" default:"8"`
}

func (c EmailConfig) check() error {
	if _, err := (notify.Sender{From: c.From}).Address(); err != nil {
		return err
	}
	if c.LogRetention < 0 {
		return fmt.Errorf("EMAIL_LOG_RETENTION must not be negative")
	}
	if c.MaxAttempts < 1 {
		return fmt.Errorf("EMAIL_MAX_ATTEMPTS must be at least 1")
	}
	if c.Connections < 1 || c.Connections > billing.MaxConnections {
		return fmt.Errorf("EMAIL_SMTP_CONNECTIONS must be between 1 and %d", billing.MaxConnections)
	}
	if c.Operator != "" {
		if _, err := mail.ParseAddress(c.Operator); err != nil {
			return fmt.Errorf("EMAIL_OPERATOR %q is not an address: %w", c.Operator, err)
		}
	}
	if c.SMTPURL != "" {
		if _, err := notify.ParseSMTPURL(c.SMTPURL); err != nil {
			return err
		}
	}
	return nil
}

// mailer wakes the background sender when an email is queued.
type mailer struct {
	wake chan struct{}
}

// newMail is how the use cases send emails, from cfg (checked by
// LoadConfig): without SMTP_URL everything stays queued.
func newMail(cfg EmailConfig) *billing.Mail {
	m := &billing.Mail{From: notify.Sender{From: cfg.From}, MaxAttempts: cfg.MaxAttempts, Operator: cfg.Operator, LogRetention: time.Duration(cfg.LogRetention),
		Connections: cfg.Connections}
	if cfg.SMTPURL != "" {
		if c, err := notify.ParseSMTPURL(cfg.SMTPURL); err == nil {
			m.SMTP = notify.NewMailer(c)
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

// onNotificationRequested decodes a billfn.notification.requested (the
// function's own, consumed back from billing-events) and has billing log
// its email (billing.QueueNotification).
func (s *Service) onNotificationRequested(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var req events.NotificationRequested
	if err := decodeLoose(ev, &req); err != nil {
		return events.Permanent(err)
	}
	return s.b.QueueNotification(ctx, tx, ev, &req)
}

// onEndpointDisabled decodes a billfn.webhook_endpoint.disabled (from
// handle-webhook: the receiver refuses it from anyone else) and has
// billing log the operator's notice (billing.QueueEndpointDisabled).
func (s *Service) onEndpointDisabled(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var d events.WebhookEndpointDisabled
	if err := decodeLoose(ev, &d); err != nil {
		return events.Permanent(err)
	}
	return s.b.QueueEndpointDisabled(ctx, tx, ev, &d)
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

// SendDue sends every queued email whose attempt has come
// (billing.Service.SendDue).
func (s *Service) SendDue(ctx context.Context) (int, error) { return s.b.SendDue(ctx) }

// StartSender runs the background sender until ctx ends: woken when an
// email is queued, and every interval for retries whose time has come.
// (The schedule tick sends too, so a replica without it loses nothing.)
func (s *Service) StartSender(ctx context.Context, interval time.Duration) {
	if !s.b.Sending() {
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

// listNotifications: GET /notifications?invoice_id=&subscription_id=&status=,
// newest first.
func (s *Service) listNotifications(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var v problem.Validator
	f := billing.NotificationFilter{Status: q.Get("status")}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"invoice_id", &f.InvoiceID}, {"subscription_id", &f.SubscriptionID}} {
		name, dst := p.name, p.dst
		if id := q.Get(name); id != "" {
			c, ok := ids.Canonical(id)
			v.Check(ok, name, "must be a UUID")
			*dst = c
		}
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
	ns, err := s.b.Notifications(r.Context(), f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(ns, limit, func(n *notify.Notification) any { return httpx.IDCursor{ID: n.ID} }))
}

// getNotification: GET /notifications/{id}.
func (s *Service) getNotification(w http.ResponseWriter, r *http.Request) {
	n, err := s.b.Notification(r.Context(), strings.ToLower(r.PathValue("id")))
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
	// No member: one sent ({"to": another address}) would be ignored.
	var none struct{}
	if err := decodeOptional(r, &none); err != nil {
		problem.Write(w, r, err)
		return
	}
	id := strings.ToLower(r.PathValue("id"))
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	out, err := s.b.ResendNotification(ctx, id, answer(http.StatusAccepted, ""))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.mail.kick()
	w.Header().Set("Location", "/notifications/"+out.ID)
	httpx.WriteJSON(w, http.StatusAccepted, out)
}
