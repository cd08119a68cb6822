// Package outgoing is the domain of handle-webhook's outgoing webhooks:
// the merchant's endpoints (what they subscribe to, their signing secrets
// and the 24-hour overlap of a rotation), which events an endpoint gets
// (Matches, Deliverable), how a delivery is signed (Standard Webhooks,
// Sign) and when it is tried again (Schedule, After). It knows neither
// HTTP nor SQL: package store keeps endpoints and deliveries, package api
// serves them and sends.
package outgoing

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/egress"
	"github.com/billfn/billfn/shared/events"
)

// Delivery statuses (webhook_deliveries.status).
const (
	Pending   = "pending"   // waiting for its (next) attempt
	Succeeded = "succeeded" // the endpoint answered 2xx
	Failed    = "failed"    // every attempt of the schedule failed
)

// TestType is the type of the event POST /endpoints/{id}/test sends: not
// in the contract (it never travels on Kafka), sent whatever the
// endpoint subscribed to.
const TestType = "billfn.webhook.test"

// SecretPrefix starts every signing secret (Standard Webhooks' whsec_).
const SecretPrefix = "whsec_"

// RotationOverlap is how long the previous secret still signs after a
// rotation.
const RotationOverlap = 24 * time.Hour

// Errors of the outgoing webhooks.
var (
	ErrNoEndpoint = apperr.New(apperr.NotFound, "no such webhook endpoint")
	ErrNoDelivery = apperr.New(apperr.NotFound, "no such webhook delivery")
)

// Endpoint is a merchant's webhook endpoint as the API shows it. Secret is
// set only in the answers to its creation and to a rotation.
type Endpoint struct {
	ID                 string     `json:"id"`
	URL                string     `json:"url"`
	Events             []string   `json:"events"`
	Description        string     `json:"description"`
	Disabled           bool       `json:"disabled"`
	DisabledReason     *string    `json:"disabled_reason"`
	Secret             string     `json:"secret,omitempty"`
	PreviousSecretEnds *time.Time `json:"previous_secret_expires_at"`
	CreatedAt          time.Time  `json:"created_at"`
	UpdatedAt          time.Time  `json:"updated_at"`

	secret, previous string
}

// SetSecrets gives e its current secret and the previous one (empty when
// none) — the store's business, never shown.
func (e *Endpoint) SetSecrets(current, previous string) { e.secret, e.previous = current, previous }

// Secrets are the secrets e's deliveries are signed with at now: the
// current one and, for RotationOverlap after a rotation, the previous.
func (e *Endpoint) Secrets(now time.Time) []string {
	s := []string{e.secret}
	if e.previous != "" && e.PreviousSecretEnds != nil && now.Before(*e.PreviousSecretEnds) {
		s = append(s, e.previous)
	}
	return s
}

// CurrentSecret is the secret new signatures are made with.
func (e *Endpoint) CurrentSecret() string { return e.secret }

// PreviousSecret is the secret before the last rotation ("" when none).
func (e *Endpoint) PreviousSecret() string { return e.previous }

// Rotate gives e a new secret at now; the old one signs too until
// now+RotationOverlap. A second rotation within the overlap drops the
// oldest secret.
func (e *Endpoint) Rotate(now time.Time) {
	ends := now.Add(RotationOverlap)
	e.previous, e.secret, e.PreviousSecretEnds = e.secret, NewSecret(), &ends
	e.Secret = e.secret
	e.UpdatedAt = now
}

// NewSecret is a fresh signing secret: whsec_ and 32 random bytes in
// base64 (Standard Webhooks: between 24 and 64 bytes).
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// EndpointRequest is the body of POST /endpoints and PATCH
// /endpoints/{id}: on a PATCH, absent fields are left as they are.
type EndpointRequest struct {
	URL         *string   `json:"url"`
	Events      *[]string `json:"events"`
	Description *string   `json:"description"`
	Disabled    *bool     `json:"disabled"`
}

// Limits of an endpoint's fields.
const (
	MaxURL         = 2048
	MaxDescription = 500
	MaxEvents      = 100
)

// Validate checks every field present (create: url and events required),
// all bad fields at once. The URL's address is the api's (egress) check.
func (r *EndpointRequest) Validate(create bool) error {
	var v apperr.Validator
	if r.URL != nil || create {
		v.Check(r.URL != nil && *r.URL != "", "url", "is required")
		if r.URL != nil && *r.URL != "" {
			v.Check(len(*r.URL) <= MaxURL, "url", "must be at most 2048 characters")
			u, err := url.Parse(*r.URL)
			v.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil && u.Fragment == "",
				"url", "must be an absolute http or https URL without credentials or fragment")
		}
	}
	if r.Events != nil || create {
		switch {
		case r.Events == nil || len(*r.Events) == 0:
			v.Check(false, "events", "must name at least one event type or prefix (billfn.invoice.*)")
		case len(*r.Events) > MaxEvents:
			v.Check(false, "events", "must name at most 100 types or prefixes")
		default:
			for i, p := range *r.Events {
				v.Check(KnownPattern(p), "events/"+strconv.Itoa(i),
					"is not an event type endpoints may receive, nor a prefix of some written billfn.<aggregate>.* (docs/events.md)")
			}
		}
	}
	if r.Description != nil {
		v.Check(len(*r.Description) <= MaxDescription, "description", "must be at most 500 characters")
	}
	return v.Err()
}

// Apply sets the fields of r present on e at now.
func (r *EndpointRequest) Apply(e *Endpoint, now time.Time) {
	if r.URL != nil {
		e.URL = *r.URL
	}
	if r.Events != nil {
		e.Events = Normalize(*r.Events)
	}
	if r.Description != nil {
		e.Description = *r.Description
	}
	if r.Disabled != nil {
		e.Disabled = *r.Disabled
		if !e.Disabled {
			e.DisabledReason = nil
		} else if e.DisabledReason == nil {
			reason := "disabled by an admin"
			e.DisabledReason = &reason
		}
	}
	e.UpdatedAt = now
}

// Normalize is a subscription list sorted, without duplicates.
func Normalize(patterns []string) []string {
	out := slices.Clone(patterns)
	slices.Sort(out)
	return slices.Compact(out)
}

// deliverable is every event type an endpoint may subscribe to: the facts
// of the contract (a command asks a function to do something; it is not
// news for a merchant), but billfn.payment.gateway_updated, handle-webhook's
// own relay of the gateways' webhooks, which capture-payment turns into
// the payment events an endpoint wants.
var deliverable = func() []string {
	var out []string
	for _, s := range events.Contract() {
		if !s.Command() && s.Type != events.TypeGatewayUpdated {
			out = append(out, s.Type)
		}
	}
	return out
}()

// Deliverable is every event type an endpoint may subscribe to, in the
// contract's order.
func Deliverable() []string { return slices.Clone(deliverable) }

// IsDeliverable reports whether endpoints may receive events of typ.
func IsDeliverable(typ string) bool { return slices.Contains(deliverable, typ) }

// KnownPattern reports whether p is a deliverable type or a prefix
// "billfn.<aggregate>.*" covering at least one.
func KnownPattern(p string) bool {
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		if !strings.HasSuffix(prefix, ".") || strings.Count(prefix, ".") != 2 || !strings.HasPrefix(prefix, "billfn.") {
			return false
		}
		return slices.ContainsFunc(deliverable, func(t string) bool { return strings.HasPrefix(t, prefix) })
	}
	return IsDeliverable(p)
}

// Matches reports whether an endpoint subscribed to patterns wants typ.
func Matches(patterns []string, typ string) bool { return events.MatchesType(patterns, typ) }

// AnyWants reports whether one of the endpoints, each subscribed to its
// patterns, wants typ.
func AnyWants(subs [][]string, typ string) bool {
	return slices.ContainsFunc(subs, func(patterns []string) bool { return Matches(patterns, typ) })
}

// Sign is the webhook-signature header of Standard Webhooks
// (standardwebhooks.com) for message id sent at ts with body: one
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per secret, keyed by the
// base64-decoded part after whsec_, space-separated.
func Sign(secrets []string, id string, ts time.Time, body []byte) string {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
		if err != nil {
			continue // every stored secret is NewSecret's
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
		m.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}

// Schedule is the wait before each retry, after the first attempt: as
// Standard Webhooks and Svix (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h),
// with 10 h steps on to about three days: 12 attempts over 67 h 35 min 5 s.
var Schedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour,
	10 * time.Hour, 10 * time.Hour, 10 * time.Hour, 10 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Window is the time from the first attempt to the last.
func Window() time.Duration {
	var w time.Duration
	for _, d := range Schedule {
		w += d
	}
	return w
}

// After is when a delivery that failed its attempts-th attempt (1 for
// the first) at now is tried again; false when the schedule is spent.
func After(attempts int, now time.Time) (time.Time, bool) {
	if attempts < 1 || attempts > len(Schedule) {
		return time.Time{}, false
	}
	return now.Add(Schedule[attempts-1]), true
}

// Delivery is one event for one endpoint, with the outcome of its last
// attempt: the delivery log.
type Delivery struct {
	ID             string     `json:"id"` // also the webhook-id header, the same on every attempt
	EndpointID     string     `json:"endpoint_id"`
	EventID        string     `json:"event_id"`
	EventType      string     `json:"event_type"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	LastAttemptAt  *time.Time `json:"last_attempt_at"`
	ResponseStatus *int       `json:"response_status"`
	ResponseBody   *string    `json:"response_body"`
	LatencyMS      *int64     `json:"latency_ms"`
	Error          *string    `json:"error"`
	CreatedAt      time.Time  `json:"created_at"`
	Payload        []byte     `json:"-"` // the CloudEvent JSON, as sent
	// Retries counts the retries by hand: an attempt is recorded only
	// over the count its claim read, so one asked meanwhile stands.
	Retries int `json:"-"`
}

// Outcome is what one attempt got: the endpoint's status code (0 when no
// answer came), the start of its body, the time it took, the error.
type Outcome struct {
	Status  int
	Body    string
	Latency time.Duration
	Err     string
}

// OK reports whether the endpoint accepted the delivery (2xx).
func (o Outcome) OK() bool { return o.Status >= 200 && o.Status < 300 }

// Describe is the outcome in a line, for the log and a disabled reason.
func (o Outcome) Describe() string {
	if o.Err != "" {
		return o.Err
	}
	return "HTTP " + strconv.Itoa(o.Status)
}

// Filter selects a page of deliveries.
type Filter struct {
	EndpointID string
	Status     string
	Limit      int
	After      string
}

// Record applies to d the outcome o of its attempt at now: succeeded on a
// 2xx, else pending until the next step of the Schedule, else (the
// schedule spent) failed — and then disable is the reason its endpoint is
// disabled.
func Record(d *Delivery, o Outcome, now time.Time) (disable *string) {
	d.Attempts++
	d.LastAttemptAt = &now
	d.LatencyMS = ptr(o.Latency.Milliseconds())
	d.ResponseStatus, d.ResponseBody, d.Error = nil, nil, nil
	if o.Status != 0 {
		d.ResponseStatus = ptr(o.Status)
		d.ResponseBody = ptr(o.Body)
	}
	if o.Err != "" {
		d.Error = ptr(o.Err)
	}
	if o.OK() {
		d.Status, d.NextAttemptAt = Succeeded, nil
		return nil
	}
	if next, ok := After(d.Attempts, now); ok {
		d.Status, d.NextAttemptAt = Pending, &next
		return nil
	}
	d.Status, d.NextAttemptAt = Failed, nil
	reason := "delivery " + d.ID + " failed " + strconv.Itoa(d.Attempts) + " attempts over " + Window().String() +
		", the last with " + o.Describe()
	return &reason
}

// Notice is what billfn.webhook_endpoint.disabled says when endpoint e is
// disabled at now with reason because d spent its schedule (Record). It
// names the endpoint's URL without its query (egress.DisplayURL): the
// notice travels on Kafka and is e-mailed.
func Notice(e *Endpoint, d *Delivery, reason string, now time.Time) *events.WebhookEndpointDisabled {
	return &events.WebhookEndpointDisabled{EndpointID: e.ID, URL: egress.DisplayURL(e.URL), Reason: reason, DisabledAt: now.UTC(),
		DeliveryID: d.ID, EventType: d.EventType, Attempts: d.Attempts, FailingSince: d.CreatedAt.UTC(),
		LastStatus: d.ResponseStatus, LastError: d.Error}
}

func ptr[T any](v T) *T { return &v }
