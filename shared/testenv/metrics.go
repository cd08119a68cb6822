package testenv

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Series reads a metric from g: for each series of name whose labels
// include every pair of where, its labels named in labels (in order,
// space-joined) → its counter value or, for a histogram, its sample count
// (series with the same key add up).
func Series(t testing.TB, g prometheus.Gatherer, name string, where map[string]string, labels ...string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			for k, v := range where {
				if l[k] != v {
					continue series
				}
			}
			k := make([]string, len(labels))
			for i, n := range labels {
				k[i] = l[n]
			}
			if h := m.GetHistogram(); h != nil {
				out[strings.Join(k, " ")] += float64(h.GetSampleCount())
			} else {
				out[strings.Join(k, " ")] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}
