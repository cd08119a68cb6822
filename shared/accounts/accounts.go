// Package accounts keeps, in a function that takes account ids, the facts
// about each account it needs to decide authorization: who owns it, its
// currency and its status.
//
// process-transaction owns accounts. Every other function keeps a read
// model of its own (one table, named by the function), fed by
// billfn.account.created and billfn.account.updated from user-events,
// newest version wins, so replays and reordering are harmless. An account
// whose event has not arrived yet (created a moment ago, or before the
// function existed) is read through: process-transaction's
// GET /accounts/{id} with the function's service token, and the answer is
// stored in the same table, so it is asked once. The caller's word is
// never used: a customer's request naming an account it does not own is a
// 404, exactly like an account that does not exist.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/readthrough"
)

// Event types that carry account facts, and their only allowed source.
const (
	TypeCreated = events.TypeAccountCreated
	TypeUpdated = events.TypeAccountUpdated
	Owner       = "process-transaction"
)

// Account statuses, as process-transaction defines them.
const (
	Active = "active"
	Frozen = "frozen"
	Closed = "closed"
)

// NotActive is the problem code for a frozen or closed account asked to
// be invoiced or charged (a shared code: 409 in every function).
const NotActive = problem.AccountNotActive

// Facts are what a function knows of an account.
type Facts struct {
	ID       string `json:"id"`
	UserID   string `json:"user_id"`
	Currency string `json:"currency"`
	Status   string `json:"status"`
	Version  int64  `json:"version"`
}

// Active reports nil when the account can be invoiced or charged, and a
// 409 account_not_active naming its status otherwise.
func (f Facts) Active() error {
	if f.Status == Active {
		return nil
	}
	return problem.New(NotActive, "account %s is %s: it cannot be invoiced or charged", f.ID, f.Status).
		With("account_id", f.ID).With("account_status", f.Status)
}

// CheckUser checks a user_id an admin or service caller sent along with
// an account: empty, or the account's owner. Anything else is refused,
// naming the field, rather than silently corrected.
func (f Facts) CheckUser(v *problem.Validator, field, userID string) {
	if userID == "" {
		return
	}
	u, ok := ids.Canonical(userID)
	v.Check(ok && u == f.UserID, field, "must be the account's owner, or be left out (the owner comes from the account)")
}

// CheckCurrency checks that cur (an ISO 4217 code) is the account's currency.
func (f Facts) CheckCurrency(v *problem.Validator, field, cur string) {
	if cur == "" {
		return
	}
	v.Check(strings.EqualFold(cur, f.Currency), field, fmt.Sprintf("must be the account's currency, %s", f.Currency))
}

// ErrUnknown is returned by a Source for an account that does not exist.
var ErrUnknown = errors.New("accounts: no such account")

// Source answers for an account the read model has not learnt yet.
type Source interface {
	Account(ctx context.Context, id string) (Facts, error)
}

var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Directory is a function's read model of accounts.
type Directory struct {
	table  string
	pool   *pgxpool.Pool
	source Source
}

// New returns the read model kept in table (created by the function's
// migration with the columns id, user_id, currency, status, version,
// updated_at). source may be nil: then an account is known only once its
// event has arrived.
func New(pool *pgxpool.Pool, table string, source Source) *Directory {
	if !tableName.MatchString(table) {
		panic(fmt.Sprintf("accounts: bad table name %q", table))
	}
	return &Directory{table: table, pool: pool, source: source}
}

// Register makes rc apply the account events to the read model, each in
// the transaction that records its delivery, and only from their owner.
func (d *Directory) Register(rc *events.Receiver) {
	rc.On(TypeCreated, d.apply)
	rc.On(TypeUpdated, d.apply)
}

func (d *Directory) apply(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	if !events.From(ev, Owner) {
		return events.Permanent(fmt.Errorf("%s from %q: account facts are accepted only from %s", ev.Type(), ev.Source(), Owner))
	}
	var f Facts
	if err := events.Decode(ev, &f); err != nil {
		return err
	}
	if err := f.validate(); err != nil {
		return events.Permanent(err)
	}
	_, err := d.put(ctx, tx, f)
	return err
}

func (f *Facts) validate() error {
	id, ok := ids.Canonical(f.ID)
	if !ok {
		return fmt.Errorf("account id %q is not a UUID", f.ID)
	}
	user, ok := ids.Canonical(f.UserID)
	if !ok {
		return fmt.Errorf("account %s: user_id %q is not a UUID", f.ID, f.UserID)
	}
	if f.Currency == "" || f.Status == "" {
		return fmt.Errorf("account %s: currency and status are required", f.ID)
	}
	f.ID, f.UserID, f.Currency = id, user, strings.ToUpper(f.Currency)
	return nil
}

// Put stores f unless a newer (or the same) version is already known, and
// reports whether it was stored.
func (d *Directory) Put(ctx context.Context, f Facts) (bool, error) {
	if err := f.validate(); err != nil {
		return false, err
	}
	return d.put(ctx, d.pool, f)
}

type execer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (d *Directory) put(ctx context.Context, q execer, f Facts) (bool, error) {
	var stored bool
	err := q.QueryRow(ctx, `INSERT INTO `+d.table+` AS a (id, user_id, currency, status, version, updated_at)
		VALUES ($1, $2, $3, $4, $5, now())
		ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, currency = EXCLUDED.currency,
			status = EXCLUDED.status, version = EXCLUDED.version, updated_at = now()
		WHERE a.version < EXCLUDED.version
		RETURNING true`, f.ID, f.UserID, f.Currency, f.Status, f.Version).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return stored, err
}

// Get returns the stored facts of account id; ok is false when the read
// model does not know it. It never reads through.
func (d *Directory) Get(ctx context.Context, q execer, id string) (f Facts, ok bool, err error) {
	if q == nil {
		q = d.pool
	}
	err = q.QueryRow(ctx, `SELECT id, user_id, currency, status, version FROM `+d.table+` WHERE id = $1`, id).
		Scan(&f.ID, &f.UserID, &f.Currency, &f.Status, &f.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return Facts{}, false, nil
	}
	return f, err == nil, err
}

// Known returns the stored facts of those of ids the read model knows,
// by id, in one query (ids that are no UUID are skipped). It never reads
// through: an account missing from the answer is for Lookup.
func (d *Directory) Known(ctx context.Context, accountIDs []string) (map[string]Facts, error) {
	want := make([]string, 0, len(accountIDs))
	for _, id := range accountIDs {
		if c, ok := ids.Canonical(id); ok {
			want = append(want, c)
		}
	}
	out := make(map[string]Facts, len(want))
	if len(want) == 0 {
		return out, nil
	}
	rows, err := d.pool.Query(ctx, `SELECT id, user_id, currency, status, version FROM `+d.table+` WHERE id = ANY($1::uuid[])`, want)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var f Facts
		if err := rows.Scan(&f.ID, &f.UserID, &f.Currency, &f.Status, &f.Version); err != nil {
			return nil, err
		}
		out[f.ID] = f
	}
	return out, rows.Err()
}

// Lookup returns the facts of account id, reading through to the source
// when the read model does not know it yet. An id that is no UUID, or an
// account nobody knows, is a 404 problem; a source that cannot answer is a
// 503 (the client may retry), never a guess.
func (d *Directory) Lookup(ctx context.Context, id string) (Facts, error) {
	id, ok := ids.Canonical(id)
	if !ok {
		return Facts{}, notFound()
	}
	f, ok, err := d.Get(ctx, nil, id)
	if err != nil || ok {
		return f, err
	}
	if d.source == nil {
		return Facts{}, notFound()
	}
	f, err = d.source.Account(ctx, id)
	if errors.Is(err, ErrUnknown) {
		return Facts{}, notFound()
	}
	if err != nil {
		pe := problem.New(problem.Unavailable, "the account could not be looked up; retry later")
		pe.Err, pe.RetryAfter = err, time.Second
		return Facts{}, pe
	}
	if f.ID != id {
		return Facts{}, problem.New(problem.Unavailable, "the account service answered for another account")
	}
	if _, err := d.Put(ctx, f); err != nil {
		return Facts{}, err
	}
	return f, nil
}

// For returns the facts of account id for the caller p: a customer gets a
// 404 for an account it does not own, exactly as for one that does not
// exist; admin and service callers reach every account.
func (d *Directory) For(ctx context.Context, p auth.Principal, id string) (Facts, error) {
	f, err := d.Lookup(ctx, id)
	if err != nil {
		return Facts{}, err
	}
	if !p.CanAccess(f.UserID) {
		return Facts{}, notFound()
	}
	return f, nil
}

func notFound() error { return problem.New(problem.NotFound, "no such account") }

// Config configures the read-through: where process-transaction answers
// and the service token to ask it with (a secret file, never an
// environment copy in production).
type Config struct {
	LedgerURL    string `envconfig:"LEDGER_URL" default:"http://gateway.openfaas:8080/function/process-transaction"`
	ServiceToken string `envconfig:"SERVICE_TOKEN" secret:"service-token"`
}

// Source returns the read-through source cfg describes, or nil when no
// service token is configured (then only events fill the read model).
func (cfg Config) Source() Source {
	if cfg.LedgerURL == "" || cfg.ServiceToken == "" {
		return nil
	}
	return httpSource{readthrough.New(cfg.LedgerURL, cfg.ServiceToken)}
}

// httpSource reads an account from process-transaction's
// GET {LEDGER_URL}/accounts/{id} with the service token.
type httpSource struct{ c *readthrough.Client }

// Account implements Source.
func (h httpSource) Account(ctx context.Context, id string) (Facts, error) {
	var f Facts
	err := h.c.Get(ctx, "accounts", id, &f)
	if errors.Is(err, readthrough.ErrUnknown) {
		return Facts{}, ErrUnknown
	}
	if err != nil {
		return Facts{}, err
	}
	return f, f.validate()
}
