package main

// moreRuns are the scenarios of the other functions (invoices, payments,
// webhooks, a mixed day); each is skipped in the report when loadgen does
// not know it yet.
func moreRuns(gw string, quick bool) []*run {
	return nil
}
