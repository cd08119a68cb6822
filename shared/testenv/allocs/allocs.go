// Package allocs counts heap allocations for tests that pin them. It
// imports nothing of billfn's, so the packages shared/testenv depends on
// (shared/server among them) may use it in their own tests.
package allocs

import "runtime"

// PerRun is testing.AllocsPerRun without its rounding down, which can turn
// a difference of 2 into 1 or 3: the average number of heap allocations of
// f over runs calls, after one call to warm up, on one P as AllocsPerRun
// measures.
func PerRun(runs int, f func()) float64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs)
}
