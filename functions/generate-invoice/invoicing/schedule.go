package invoicing

import (
	"time"

	"github.com/billfn/billfn/shared/money"
)

// Billing periods of a subscription. Every boundary is computed from the
// cycle's anchor and a period index, never by adding to the previous
// boundary, so month ends do not drift: with anchor day 31 the boundaries
// are Jan 31, Feb 28 (29 in a leap year), Mar 31, Apr 30, ...

// Intervals of a plan.
const (
	IntervalDay   = "day"
	IntervalWeek  = "week"
	IntervalMonth = "month"
	IntervalYear  = "year"
)

// Cycle describes a subscription's billing periods.
type Cycle struct {
	Interval  string
	Count     int
	AnchorDay int       // 1–31, month and year intervals
	Start     time.Time // billing start: the subscription start, or the trial end
	Anchor    time.Time // the boundary the cycle is aligned on (boundary 0)
}

// NewCycle builds the cycle of a plan billed from start. anchorDay 0 means
// start's own day (no partial first period).
func NewCycle(interval string, count, anchorDay int, start time.Time) Cycle {
	start = start.UTC()
	c := Cycle{Interval: interval, Count: count, Start: start, Anchor: start, AnchorDay: start.Day()}
	if interval != IntervalMonth && interval != IntervalYear {
		return c
	}
	if anchorDay > 0 {
		c.AnchorDay = anchorDay
	}
	y, m, _ := start.Date()
	h, mi, s := start.Clock()
	c.Anchor = time.Date(y, m, min(c.AnchorDay, daysIn(y, m)), h, mi, s, start.Nanosecond(), time.UTC)
	return c
}

// AddMonths returns t plus n months, its day clamped to the last day of
// the month reached (Jan 31 + 1 month = Feb 28, or 29), as billing periods
// are; time.AddDate would normalize "Feb 31" to Mar 3.
func AddMonths(t time.Time, n int) time.Time {
	y, m, d := t.Date()
	h, mi, s := t.Clock()
	total := int(m) - 1 + n
	ty, tm := y+floorDiv(total, 12), time.Month(total-12*floorDiv(total, 12)+1)
	return time.Date(ty, tm, min(d, daysIn(ty, tm)), h, mi, s, t.Nanosecond(), t.Location())
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// boundary returns the n-th boundary of the cycle (n may be negative).
func (c Cycle) boundary(n int) time.Time {
	a := c.Anchor
	switch c.Interval {
	case IntervalDay:
		return a.AddDate(0, 0, n*c.Count)
	case IntervalWeek:
		return a.AddDate(0, 0, 7*n*c.Count)
	}
	y, m, _ := a.Date()
	h, mi, s := a.Clock()
	var ty int
	var tm time.Month
	if c.Interval == IntervalYear {
		ty, tm = y+n*c.Count, m
	} else {
		total := int(m) - 1 + n*c.Count
		ty, tm = y+floorDiv(total, 12), time.Month(total-12*floorDiv(total, 12)+1)
	}
	return time.Date(ty, tm, min(c.AnchorDay, daysIn(ty, tm)), h, mi, s, a.Nanosecond(), time.UTC)
}

// At returns L_k, the start of billing period k (k ≥ 0). When the anchor
// differs from the start, period 0 is a partial period from the start to
// the first boundary after it.
func (c Cycle) At(k int) time.Time {
	switch {
	case k == 0:
		return c.Start
	case c.Anchor.Equal(c.Start):
		return c.boundary(k)
	case c.Anchor.After(c.Start):
		return c.boundary(k - 1)
	default:
		return c.boundary(k)
	}
}

// Period returns billing period k: its bounds, and the length of a full
// period there (which differs from end−start only for a partial period 0).
func (c Cycle) Period(k int) (start, end time.Time, full time.Duration) {
	start, end = c.At(k), c.At(k+1)
	full = end.Sub(start)
	if k == 0 && !c.Anchor.Equal(c.Start) {
		if c.Anchor.After(c.Start) {
			full = c.boundary(0).Sub(c.boundary(-1))
		} else {
			full = c.boundary(1).Sub(c.boundary(0))
		}
	}
	return start, end, full
}

// Prorate returns amount × part / full, half-even, on whole seconds.
func Prorate(amount int64, part, full time.Duration) (int64, error) {
	ps, fs := int64(part/time.Second), int64(full/time.Second)
	if fs <= 0 || ps >= fs {
		return amount, nil
	}
	if ps <= 0 {
		return 0, nil
	}
	return money.MulDivHalfEven(amount, ps, fs)
}

// mrr is a plan's amount normalised to a month (docs/events.md): year →
// amount/12, week → amount×52/12, day → amount×365/12, divided by the
// interval count; one half-even rounding.
func mrr(amount int64, interval string, count int) int64 {
	v, err := MRR(amount, interval, count)
	if err != nil {
		return 0 // parsePlan refuses such a plan; a stored one predates the check
	}
	return v
}

// MRR is mrr, or money.ErrOverflow when the monthly equivalent does not
// fit in int64 (a daily plan above MaxInt64×12/365).
func MRR(amount int64, interval string, count int) (int64, error) {
	num, den := int64(1), int64(count)
	switch interval {
	case IntervalYear:
		den *= 12
	case IntervalWeek:
		num, den = 52, den*12
	case IntervalDay:
		num, den = 365, den*12
	}
	return money.MulDivHalfEven(amount, num, den)
}
