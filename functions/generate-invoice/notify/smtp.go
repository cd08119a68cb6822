package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"
)

// SMTPConfig is where and how emails are sent, from SMTP_URL:
//
//	smtp://user:pass@host:587?starttls=required   STARTTLS (required: the default; opportunistic; none)
//	smtps://user:pass@host:465                    implicit TLS
//	smtp://127.0.0.1:1025?starttls=none           a local Mailpit
type SMTPConfig struct {
	Host        string
	Port        int
	Username    string
	Password    string
	ImplicitTLS bool
	StartTLS    string // required, opportunistic, none
	Timeout     time.Duration
}

// ParseSMTPURL reads SMTP_URL. Its error never repeats the password.
func ParseSMTPURL(raw string) (SMTPConfig, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return SMTPConfig{}, errors.New("SMTP_URL is not a URL (smtp://user:pass@host:port or smtps://…)")
	}
	c := SMTPConfig{Host: u.Hostname(), StartTLS: "required", Timeout: 15 * time.Second}
	switch u.Scheme {
	case "smtp":
		c.Port = 587
	case "smtps":
		c.Port, c.ImplicitTLS = 465, true
	default:
		return SMTPConfig{}, fmt.Errorf("SMTP_URL scheme %q: want smtp or smtps", u.Scheme)
	}
	if c.Host == "" {
		return SMTPConfig{}, errors.New("SMTP_URL names no host")
	}
	if p := u.Port(); p != "" {
		if c.Port, err = strconv.Atoi(p); err != nil || c.Port < 1 || c.Port > 65535 {
			return SMTPConfig{}, fmt.Errorf("SMTP_URL port %q is not a port", p)
		}
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	q := u.Query()
	if s := q.Get("starttls"); s != "" {
		switch s {
		case "required", "opportunistic", "none":
			c.StartTLS = s
		default:
			return SMTPConfig{}, fmt.Errorf("SMTP_URL starttls=%q: want required, opportunistic or none", s)
		}
	}
	if c.ImplicitTLS && q.Get("starttls") != "" {
		return SMTPConfig{}, errors.New("SMTP_URL: smtps:// is implicit TLS; starttls applies to smtp:// only")
	}
	if t := q.Get("timeout"); t != "" {
		if c.Timeout, err = time.ParseDuration(t); err != nil || c.Timeout <= 0 {
			return SMTPConfig{}, fmt.Errorf("SMTP_URL timeout=%q is not a positive duration", t)
		}
	}
	return c, nil
}

// Mailer sends emails through one SMTP server.
type Mailer struct{ cfg SMTPConfig }

// NewMailer returns a mailer for cfg.
func NewMailer(cfg SMTPConfig) *Mailer { return &Mailer{cfg: cfg} }

func (m *Mailer) client() (*gomail.Client, error) {
	opts := []gomail.Option{gomail.WithPort(m.cfg.Port), gomail.WithTimeout(m.cfg.Timeout),
		// go-mail's defaults add two round trips to every email of a
		// session: a NOOP before it (a dead connection fails the MAIL
		// command just as it fails the NOOP: the email is retried either
		// way, Session.Send closes the connection) and a RSET after it (the
		// end of DATA already ends the mail transaction, RFC 5321 4.1.1.4).
		gomail.WithoutNoop(), gomail.WithoutRset()}
	if m.cfg.ImplicitTLS {
		opts = append(opts, gomail.WithSSL())
	} else {
		policy := map[string]gomail.TLSPolicy{"required": gomail.TLSMandatory, "opportunistic": gomail.TLSOpportunistic, "none": gomail.NoTLS}[m.cfg.StartTLS]
		opts = append(opts, gomail.WithTLSPolicy(policy))
	}
	if m.cfg.Username != "" {
		// The strongest mechanism the server offers (SCRAM, CRAM-MD5, PLAIN,
		// LOGIN); PLAIN and LOGIN only over TLS.
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(m.cfg.Username), gomail.WithPassword(m.cfg.Password))
	}
	return gomail.NewClient(m.cfg.Host, opts...)
}

// Message builds e as a MIME message: multipart/alternative text and
// HTML, attachments, Message-ID and List-Unsubscribe.
func Message(e *Email, now time.Time) (*gomail.Msg, error) {
	m := gomail.NewMsg()
	if err := m.From(e.From); err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	if err := m.To(e.To); err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	if strings.Contains(e.Subject, "=?") {
		m.SetGenHeaderPreformatted(gomail.HeaderSubject, encodedWords(e.Subject))
	} else {
		m.Subject(e.Subject)
	}
	m.SetMessageIDWithValue(e.MessageID)
	m.SetDateWithValue(now)
	m.SetGenHeader(gomail.HeaderListUnsubscribe, e.ListUnsubscribe)
	m.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	m.SetBodyString(gomail.TypeTextPlain, e.Text)
	m.AddAlternativeString(gomail.TypeTextHTML, e.HTML)
	for _, a := range e.Attachments {
		if err := m.AttachReader(a.Name, bytes.NewReader(a.Data), gomail.WithFileContentType(gomail.ContentType(a.ContentType))); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// encodedWords writes a subject as RFC 2047 encoded words, base64 of at
// most 45 bytes each (a 75-character word), one per folded line. go-mail
// encodes a subject only when it holds more than printable ASCII, and
// writes "=?utf-8?q?=E2=80=AE?=" in a plan's name as it is: the reader's
// client decodes it, and the subject shows what the name could not hold
// (a right-to-left override, a line break, any text). Encoded, the
// subject reads as it was written.
func encodedWords(s string) string {
	var words []string
	for len(s) > 0 {
		n := min(len(s), 45)
		for n > 1 && n < len(s) && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?UTF-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, "\r\n ")
}

// ErrBadMessage marks an email that cannot be built (an address the
// server would refuse): permanent.
var ErrBadMessage = errors.New("the email cannot be built")

// Session sends emails one after the other over one SMTP connection:
// dialed at the first, closed and dialed again after any failure (the
// connection may be broken or the server may want it closed), so one
// sending pass costs one TCP (and TLS, and AUTH) handshake, not one per
// email. A Session is not safe for concurrent use.
type Session struct {
	m *Mailer
	c *gomail.Client // nil until dialed, and after a failure
}

// Session starts a session; Close ends it.
func (m *Mailer) Session() *Session { return &Session{m: m} }

// Send delivers e. The outcome says what the server answered; sent is
// true when it accepted the message. A dial failure or timeout is
// temporary (code 0): the next attempt may find the server back.
func (s *Session) Send(ctx context.Context, e *Email, now time.Time) (o Outcome, sent bool) {
	msg, err := Message(e, now)
	if err != nil {
		return Outcome{Response: fmt.Sprintf("%v: %v", ErrBadMessage, err)}, false
	}
	if s.c == nil {
		c, err := s.m.client()
		if err != nil {
			return Outcome{Response: "SMTP client: " + err.Error(), Temporary: true}, false
		}
		if err := c.DialWithContext(ctx); err != nil {
			return Outcome{Response: err.Error(), Temporary: true}, false
		}
		s.c = c
	}
	if err := s.c.Send(msg); err != nil {
		s.Close()
		var se *gomail.SendError
		if errors.As(err, &se) && se.ErrorCode() >= 400 {
			return Outcome{Code: se.ErrorCode(), Response: err.Error(), Temporary: se.ErrorCode() < 500}, false
		}
		// No answer from a server (refused, timeout, TLS): try again later.
		return Outcome{Response: err.Error(), Temporary: true}, false
	}
	resp := msg.ServerResponse()
	if resp == "" {
		resp = "accepted"
	}
	return Outcome{Code: 250, Response: resp}, true
}

// Close ends the session's connection (QUIT), if it has one.
func (s *Session) Close() {
	if s.c != nil {
		_ = s.c.Close()
		s.c = nil
	}
}
