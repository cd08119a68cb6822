package api

import (
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
)

// maxRange bounds every report's date range.
const maxRange = 3660 * 24 * time.Hour

// maxParam bounds every query parameter's value, in bytes. A report's
// parameters are in its cache key and echoed in the report cached under
// it (dim, cursor), so an unbounded one put as much as a URL holds into
// Redis per request; the longest a report takes (a cursor, a dimension
// such as "stripe|insufficient_funds") is well under it.
const maxParam = 256

// query reads a report's query parameters and collects every mistake, so
// one 422 names them all. Unknown parameters are mistakes too: a typo such
// as "currencty" must not silently widen a report.
type query struct {
	v         url.Values
	errs      []problem.FieldError
	malformed error
}

func newQuery(r *http.Request, allowed ...string) *query {
	v, err := url.ParseQuery(r.URL.RawQuery)
	q := &query{v: v, malformed: err}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range q.v {
			if !yield(k) {
				return
			}
		}
	}) {
		switch {
		case !slices.Contains(allowed, name):
			q.fail(name, "unknown parameter; this report takes "+strings.Join(allowed, ", "))
		case len(q.v[name]) > 1:
			q.fail(name, "must be given once")
		case len(q.v[name][0]) > maxParam:
			q.fail(name, "must be at most "+strconv.Itoa(maxParam)+" bytes")
		}
	}
	return q
}

func (q *query) fail(name, detail string) {
	for _, e := range q.errs {
		if e.Parameter == name {
			return
		}
	}
	q.errs = append(q.errs, problem.Param(name, detail))
}

func (q *query) get(name string) string { return strings.TrimSpace(q.v.Get(name)) }

func (q *query) err() error {
	if q.malformed != nil {
		return problem.New(problem.BadRequest, "the query string is malformed: %v", q.malformed)
	}
	if len(q.errs) == 0 {
		return nil
	}
	return problem.Invalid(q.errs...)
}

// instant reads a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time on
// an hour boundary.
func (q *query) instant(name string) (time.Time, bool) {
	s := q.get(name)
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		q.fail(name, "must be a date (2026-01-31) or an RFC 3339 time on the hour (2026-01-31T13:00:00Z)")
		return time.Time{}, false
	}
	t = t.UTC()
	if !t.Truncate(time.Hour).Equal(t) {
		q.fail(name, "must fall on an hour boundary: figures are kept per hour")
		return time.Time{}, false
	}
	return t, true
}

// date reads a YYYY-MM-DD date.
func (q *query) date(name string) (time.Time, bool) {
	s := q.get(name)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		q.fail(name, "must be a date (2026-01-31)")
		return time.Time{}, false
	}
	return t, true
}

// month reads a YYYY-MM month.
func (q *query) month(name string) (time.Time, bool) {
	s := q.get(name)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01", s)
	if err != nil {
		q.fail(name, "must be a month (2026-01)")
		return time.Time{}, false
	}
	return t, true
}

// currency reads an ISO 4217 code (any case); "" when absent.
func (q *query) currency(required bool) string {
	s := q.get("currency")
	if s == "" {
		if required {
			q.fail("currency", "is required: amounts of different currencies do not add up")
		}
		return ""
	}
	c, err := money.ParseCurrency(s)
	if err != nil {
		q.fail("currency", "must be an ISO 4217 currency code such as USD")
		return ""
	}
	return string(c)
}

// span reads from/to as a half-open range [from, to). Defaults: to is the
// end of the current unit (hour or day), from is def before to.
func (q *query) span(now time.Time, unit, def time.Duration) (from, to time.Time) {
	f, fok := q.instant("from")
	t, tok := q.instant("to")
	if !tok {
		t = now.UTC().Truncate(unit).Add(unit)
		if unit == 24*time.Hour {
			t = rollup.DayStart(now).AddDate(0, 0, 1)
		}
	}
	if !fok {
		f = t.Add(-def)
	}
	if len(q.errs) == 0 {
		switch {
		case !f.Before(t):
			q.fail("to", "must be after from")
		case t.Sub(f) > maxRange:
			q.fail("to", "the range may span at most 3660 days")
		case f.Year() < 0:
			// A default start before year 0, which no report can write
			// (time.Time's JSON holds years 0 to 9999).
			q.fail("to", "the range would start before 0000-01-01: give from")
		}
	}
	return f, t
}

func (q *query) requireDays(from, to time.Time, why string) {
	if len(q.errs) == 0 && !rollup.DayAligned(from, to) {
		q.fail("from", "from and to must be dates: "+why)
	}
}

// paging reads "limit" (def when absent, 1..max) and "cursor" (decoded
// into pos; after reports whether one was given) by the shared rule,
// httpx.Paging; their mistakes join the others.
func (q *query) paging(r *http.Request, def, maxN int, pos any) (limit int, after bool) {
	limit, after, err := httpx.Paging(r, def, maxN, pos)
	if err != nil {
		for _, e := range problem.From(err).Errors {
			q.fail(e.Parameter, e.Detail)
		}
		return def, false
	}
	return limit, after
}

func (q *query) boolean(name string) bool {
	switch q.get(name) {
	case "", "false", "0":
		return false
	case "true", "1":
		return true
	}
	q.fail(name, "must be true or false")
	return false
}

// wantsCSV chooses the representation: a ".csv" path or an Accept header
// preferring text/csv gives CSV; JSON otherwise. An Accept header naming
// neither (nor a wildcard) is answered 406.
func wantsCSV(r *http.Request) (bool, error) {
	if strings.HasSuffix(r.URL.Path, ".csv") {
		return true, nil
	}
	accept := r.Header.Get("Accept")
	if accept == "" {
		return false, nil
	}
	best, bestQ := "", -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		qv := 1.0
		if s, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				qv = f
			}
		}
		switch mt {
		case "text/csv", "application/json", "application/problem+json", "*/*", "application/*", "text/*":
		default:
			continue
		}
		if qv > bestQ || (qv == bestQ && mt == "text/csv") {
			best, bestQ = mt, qv
		}
	}
	switch {
	case best == "" || bestQ <= 0:
		return false, problem.New(apperr.NotAcceptable, "reports are served as application/json or text/csv")
	case best == "text/csv" || best == "text/*":
		return true, nil
	}
	return false, nil
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
