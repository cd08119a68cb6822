// Package api is aggregate-report's HTTP side: the route table, the report
// handlers (JSON and CSV), the dashboard and its assets, the admin's
// rebuild and check, the event handler that feeds the rollups and the
// tick that keeps snapshots. The rules are package rollup's; the SQL is
// package store's (report queries, the rollups, replay and rebuild).
package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/redis"
)

// API is aggregate-report: the event handler, the tick and the HTTP API.
type API struct {
	d     *platform.Deps
	now   func() time.Time
	cache *redis.Cache
	// cacheTTL bounds how long an unused report stays in Redis; freshness
	// does not depend on it (keys carry the data version).
	cacheTTL time.Duration
	// Store is the report queries, snapshots and compaction.
	Store *store.Store
}

// New builds the handlers and registers the event handler and the tick
// with d.Events.
func New(d *platform.Deps, now func() time.Time) *API {
	s := &API{d: d, now: now, cache: d.Cache("reports"), cacheTTL: 10 * time.Minute, Store: store.New(d.Pool, now)}
	d.Events.LogBatch = store.LogBatch(s.onEvents)
	d.Events.Tick = s.tick
	d.Events.TickEvery = 5 * time.Second
	d.Collect(store.Collectors()...)
	return s
}

// Routes is aggregate-report's HTTP surface.
func (s *API) Routes() *http.ServeMux { return s.d.Mux(s.RouteTable(), nil) }

// RouteTable is who may call what (docs/aggregate-report.md carries the
// same table). A customer's reports cover its own accounts; account_id
// narrows them to one it owns (someone else's is a 404).
func (s *API) RouteTable() []platform.Route {
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
func (s *API) onEvents(ctx context.Context, tx store.Tx, evs []events.Event) ([]bool, error) {
	now := s.now()
	in := make([]rollup.Event, len(evs))
	for i, ev := range evs {
		in[i] = rollup.FromCloudEvent(ev, now)
	}
	res, err := tx.Ingest(ctx, in)
	return res.Dup, err
}

// scopeOf resolves the caller's Scope: admin and service see everything, a
// customer its own accounts; account_id narrows to one account, which must
// be known and (for a customer) owned, or the answer is 404.
func (s *API) scopeOf(r *http.Request, account string) (store.Scope, error) {
	p := platform.Principal(r)
	ctx := r.Context()
	if account != "" {
		id, ok := ids.Canonical(account)
		if !ok {
			return store.Scope{}, problem.Invalid(problem.Param("account_id", "must be an account id (UUID)"))
		}
		owner, err := s.Store.AccountOwner(ctx, id)
		if errors.Is(err, store.ErrNoAccount) || (err == nil && !p.CanAccess(owner)) {
			return store.Scope{}, problem.New(problem.NotFound, "no account %s", id)
		}
		if err != nil {
			return store.Scope{}, err
		}
		return store.Scope{Accounts: []string{id}}, nil
	}
	if p.Privileged() {
		return store.Scope{All: true}, nil
	}
	ids, err := s.Store.AccountsOf(ctx, p.Subject)
	if err != nil {
		return store.Scope{}, err
	}
	return store.Scope{Accounts: ids}, nil
}

// cached serves a report through Redis. The key holds the report's
// parameters, the Scope and the data version of the days the report reads
// (from..to); a miss (or Redis being down) computes it with load.
func cached[T any](ctx context.Context, s *API, sc store.Scope, key string, from, to time.Time, load func(context.Context) (T, error)) (T, error) {
	v, err := s.Store.Version(ctx, from, to)
	if err != nil {
		var zero T
		return zero, err
	}
	full := key + "|" + sc.Key() + "|v" + itoa(v)
	return redis.GetOrLoad(ctx, s.cache, full, s.cacheTTL, load)
}

// tick runs on schedule ticks: it writes the daily snapshots (summary,
// aging and reconciliation of each of the last days, MRR of the last
// complete month) that are missing, so yesterday's report is one indexed
// read, and folds closed weeks for rankings (weeks.go). aggregate-report
// emits no events, so it has no outbox to sweep.
func (s *API) tick(ctx context.Context) error {
	if _, err := s.Store.WriteSnapshots(ctx); err != nil {
		return err
	}
	_, err := s.Store.CompactWeeks(ctx)
	return err
}
