package testenv

import "sync"

// Together runs every call in its own goroutine, each held at one gate
// until all are launched, then released at once so that they race as
// closely as the scheduler allows; it returns when all have returned.
// Concurrency tests fire the requests that must not interfere with it;
// what each call saw is for the call to record (a mutex-guarded counter,
// a slice indexed by call), or use TogetherResults.
func Together(calls ...func()) {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c()
		}()
	}
	close(start)
	wg.Wait()
}

// TogetherResults is Together for calls that return what they saw (an
// HTTP answer, an error): the results, in the order of calls.
func TogetherResults[T any](calls ...func() T) []T {
	out := make([]T, len(calls))
	fns := make([]func(), len(calls))
	for i, c := range calls {
		fns[i] = func() { out[i] = c() }
	}
	Together(fns...)
	return out
}
