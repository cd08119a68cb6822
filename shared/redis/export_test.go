package redis

import "github.com/prometheus/client_golang/prometheus"

func FallbacksFor(name string) prometheus.Counter {
	return cacheRequests.WithLabelValues(name, "fallback")
}
