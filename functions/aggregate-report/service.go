package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/redis"
)

// Problem codes of this function.
const (
	codeNotAcceptable problem.Code = "not_acceptable"
)

func init() {
	problem.Register(codeNotAcceptable, http.StatusNotAcceptable, "Not acceptable")
}

// service is aggregate-report: the event handler, the tick and the HTTP API.
type service struct {
	d     *platform.Deps
	now   func() time.Time
	cache *redis.Cache
	// cacheTTL bounds how long an unused report stays in Redis; freshness
	// does not depend on it (keys carry the data version).
	cacheTTL time.Duration
	// reconGrace is how long after a day's end a ledger posting still
	// counts for that day's reconciliation (postings follow captures by
	// moments, so a capture at 23:59:59 is not a mismatch).
	reconGrace time.Duration
	// snapshotDays is how many past days the tick keeps snapshots of.
	snapshotDays int
}

func newService(d *platform.Deps, now func() time.Time) *service {
	s := &service{d: d, now: now, cache: d.Cache("reports"), cacheTTL: 10 * time.Minute,
		reconGrace: 15 * time.Minute, snapshotDays: 7}
	d.Events.Batch = s.onEvents
	d.Events.Tick = s.tick
	d.Events.TickEvery = 5 * time.Second
	return s
}

func (s *service) routes() *http.ServeMux { return s.d.Mux(s.routeTable()) }

// routeTable is who may call what (docs/aggregate-report.md carries the
// same table). A customer's reports cover its own accounts; account_id
// narrows them to one it owns (someone else's is a 404).
func (s *service) routeTable() []platform.Route {
	account := map[string]string{"?account_id": "account"}
	var routes []platform.Route
	for _, r := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"summary", s.getSummary},
		{"timeseries", s.getTimeseries},
		{"aging", s.getAging},
		{"mrr", s.getMRR},
		{"reconciliation", s.getReconciliation},
		{"top-accounts", s.getTopAccounts},
	} {
		routes = append(routes,
			platform.Route{Pattern: "GET /reports/" + r.name, Access: platform.Customer, Refs: account, Handler: r.h},
			platform.Route{Pattern: "GET /reports/" + r.name + ".csv", Access: platform.Customer, Refs: account, Handler: r.h})
	}
	return append(routes,
		// The page and its assets hold no data; the panels they fetch do.
		platform.Route{Pattern: "GET /dashboard", Access: platform.Public, Refs: map[string]string{}, Handler: http.HandlerFunc(s.dashboardPage)},
		platform.Route{Pattern: "GET /dashboard/assets/{file}", Access: platform.Public, Refs: map[string]string{"{file}": "asset"}, Handler: http.HandlerFunc(s.dashboardAsset)},
		platform.Route{Pattern: "GET /dashboard/panels", Access: platform.Customer, Refs: account, Handler: http.HandlerFunc(s.dashboardPanels)},
		platform.Route{Pattern: "POST /admin/rebuild", Access: platform.Admin, Refs: map[string]string{}, Handler: http.HandlerFunc(s.postRebuild)},
		platform.Route{Pattern: "GET /admin/check", Access: platform.Admin, Refs: map[string]string{}, Handler: http.HandlerFunc(s.getCheck)},
		platform.Route{Pattern: "POST /{$}", Access: platform.Delivery, Refs: map[string]string{}, Handler: s.d.Events},
	)
}

// onEvents is the receiver's batch handler: every delivery, one event or
// many, lands here already deduplicated, inside its transaction.
func (s *service) onEvents(ctx context.Context, tx pgx.Tx, evs []events.Event) error {
	now := s.now()
	in := make([]rollup.Event, len(evs))
	for i, ev := range evs {
		in[i] = rollup.FromCloudEvent(ev, now)
	}
	_, err := rollup.Ingest(ctx, tx, in)
	return err
}

// scope is whose figures a request sees: everything, or a set of accounts.
type scope struct {
	All      bool
	Accounts []string // sorted account ids
}

// key names the scope in cache keys: a set of accounts always has the same
// figures, whoever asks.
func (sc scope) key() string {
	if sc.All {
		return "all"
	}
	h := sha256.Sum256([]byte(strings.Join(sc.Accounts, ",")))
	return "acct:" + hex.EncodeToString(h[:12])
}

// scopeOf resolves the caller's scope: admin and service see everything, a
// customer its own accounts; account_id narrows to one account, which must
// be known and (for a customer) owned, or the answer is 404.
func (s *service) scopeOf(r *http.Request, account string) (scope, error) {
	p := platform.Principal(r)
	ctx := r.Context()
	if account != "" {
		id, err := uuid.Parse(account)
		if err != nil {
			return scope{}, problem.Invalid(problem.Param("account_id", "must be an account id (UUID)"))
		}
		var owner string
		err = s.d.Pool.QueryRow(ctx, `SELECT user_id::text FROM report_accounts WHERE account_id = $1`, id.String()).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !p.CanAccess(owner)) {
			return scope{}, problem.New(problem.NotFound, "no account %s", id)
		}
		if err != nil {
			return scope{}, err
		}
		return scope{Accounts: []string{id.String()}}, nil
	}
	if p.Privileged() {
		return scope{All: true}, nil
	}
	rows, err := s.d.Pool.Query(ctx, `SELECT account_id::text FROM report_accounts WHERE user_id = $1 ORDER BY account_id`, p.Subject)
	if err != nil {
		return scope{}, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return scope{}, err
	}
	return scope{Accounts: ids}, nil
}

// version is the data version of the days in [from, to): it changes
// whenever an event of one of those days lands, so it is part of every
// cache key and a newer event makes older entries unreachable at once.
func (s *service) version(ctx context.Context, from, to time.Time) (int64, error) {
	var v int64
	err := s.d.Pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM report_changes WHERE day >= $1::date AND day < $2::date`,
		from, to).Scan(&v)
	return v, err
}

// beginning is the first day any figure can belong to.
var beginning = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)

// cached serves a report through Redis. The key holds the report's
// parameters, the scope and the data version of the days the report reads
// (from..to); a miss (or Redis being down) computes it with load.
func cached[T any](ctx context.Context, s *service, sc scope, key string, from, to time.Time, load func(context.Context) (T, error)) (T, error) {
	v, err := s.version(ctx, from, to)
	if err != nil {
		var zero T
		return zero, err
	}
	full := key + "|" + sc.key() + "|v" + itoa(v)
	return redis.GetOrLoad(ctx, s.cache, full, s.cacheTTL, load)
}
