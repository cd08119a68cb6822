package invoicing

import (
	"testing"
	"time"
)

func day(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t, err = time.Parse("2006-01-02", s)
		if err != nil {
			panic(err)
		}
	}
	return t.UTC()
}

func TestCycleMonthEndsAndLeapYears(t *testing.T) {
	c := NewCycle(IntervalMonth, 1, 0, day("2027-12-31T09:30:00Z"))
	want := []string{
		"2027-12-31T09:30:00Z", "2028-01-31T09:30:00Z", "2028-02-29T09:30:00Z", // 2028 is a leap year
		"2028-03-31T09:30:00Z", "2028-04-30T09:30:00Z", "2028-05-31T09:30:00Z",
	}
	for k, w := range want {
		if got := c.At(k).Format(time.RFC3339); got != w {
			t.Errorf("period %d starts %s, want %s", k, got, w)
		}
	}
	c = NewCycle(IntervalMonth, 1, 31, day("2026-01-31"))
	for k, w := range []string{"2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"} {
		if got := c.At(k).Format("2006-01-02"); got != w {
			t.Errorf("anchor 31: period %d starts %s, want %s", k, got, w)
		}
	}
	c = NewCycle(IntervalMonth, 1, 30, day("2026-01-30"))
	if got := c.At(1).Format("2006-01-02"); got != "2026-02-28" {
		t.Errorf("anchor 30 in February = %s", got)
	}
	if got := c.At(2).Format("2006-01-02"); got != "2026-03-30" {
		t.Errorf("anchor 30 in March = %s (must not drift to the 28th)", got)
	}
}

func TestCycleYearlyOnFebruary29(t *testing.T) {
	c := NewCycle(IntervalYear, 1, 0, day("2028-02-29"))
	for k, w := range []string{"2028-02-29", "2029-02-28", "2030-02-28", "2031-02-28", "2032-02-29"} {
		if got := c.At(k).Format("2006-01-02"); got != w {
			t.Errorf("period %d starts %s, want %s", k, got, w)
		}
	}
}

func TestCycleQuarterlyAndWeekly(t *testing.T) {
	c := NewCycle(IntervalMonth, 3, 0, day("2026-11-30"))
	for k, w := range []string{"2026-11-30", "2027-02-28", "2027-05-30", "2027-08-30"} {
		if got := c.At(k).Format("2006-01-02"); got != w {
			t.Errorf("quarterly period %d starts %s, want %s", k, got, w)
		}
	}
	w := NewCycle(IntervalWeek, 2, 0, day("2026-12-28"))
	if got := w.At(1).Format("2006-01-02"); got != "2027-01-11" {
		t.Errorf("fortnightly period 1 = %s", got)
	}
	d := NewCycle(IntervalDay, 1, 0, day("2028-02-28"))
	if got := d.At(1).Format("2006-01-02"); got != "2028-02-29" {
		t.Errorf("daily period 1 = %s", got)
	}
}

func TestCycleAnchorDayMakesAProratedFirstPeriod(t *testing.T) {
	// Start on the 10th, anchored on the 1st: [Jan 10, Feb 1) is a partial
	// period of January's 31 days.
	c := NewCycle(IntervalMonth, 1, 1, day("2026-01-10"))
	s, e, full := c.Period(0)
	if s.Format("2006-01-02") != "2026-01-10" || e.Format("2006-01-02") != "2026-02-01" || full != 31*24*time.Hour {
		t.Fatalf("period 0 = %s..%s full %s", s, e, full)
	}
	amt, _ := Prorate(3100, e.Sub(s), full)
	if amt != 2200 { // 22 of 31 days
		t.Fatalf("prorated = %d, want 2200", amt)
	}
	s, e, _ = c.Period(1)
	if s.Format("2006-01-02") != "2026-02-01" || e.Format("2006-01-02") != "2026-03-01" {
		t.Fatalf("period 1 = %s..%s", s, e)
	}
	// Start on the 20th, anchored on the 15th: first boundary is next month's 15th.
	c = NewCycle(IntervalMonth, 1, 15, day("2026-04-20"))
	s, e, full = c.Period(0)
	if e.Format("2006-01-02") != "2026-05-15" || full != 30*24*time.Hour {
		t.Fatalf("period 0 = %s..%s full %s", s, e, full)
	}
}

func TestMRR(t *testing.T) {
	for _, c := range []struct {
		amount   int64
		interval string
		count    int
		want     int64
	}{
		{2900, IntervalMonth, 1, 2900}, {12000, IntervalYear, 1, 1000}, {1000, IntervalWeek, 1, 4333},
		{100, IntervalDay, 1, 3042}, {9000, IntervalMonth, 3, 3000}, {2500, IntervalMonth, 2, 1250},
	} {
		if got := mrr(c.amount, c.interval, c.count); got != c.want {
			t.Errorf("mrr(%d %s/%d) = %d, want %d", c.amount, c.interval, c.count, got, c.want)
		}
	}
}
