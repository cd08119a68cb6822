package main

// moreRuns are the scenarios of the other functions (invoices, payments,
// webhooks, a mixed day); each is skipped in the report when loadgen does
// not know it yet. A rate target is judged on rateTargets' rate (budget.go);
// Check is for the others.
func moreRuns(gw, secretsDir string, quick bool) []*run {
	return []*run{
		{Name: "invoices", Title: "invoices (sync create+finalize, 10 lines)", Args: []string{"invoices", "-c", "4", "-n", scale(4000, quick), "-url", gw + "generate-invoice", "-gateway", "http://" + gatewayAddr},
			Target: "p99 < 50 ms", Check: func(r *loadResult) bool { _, _, p99 := r.Main(); return p99 < 50 }},
		{Name: "invoices-batch", Title: "invoices (POST /invoices/batch, 100 finalized each)", Args: []string{"invoices-batch", "-c", "4", "-n", scale(200, quick), "-batch", "100", "-url", gw + "generate-invoice", "-gateway", "http://" + gatewayAddr},
			Target: "≥ 2,000 invoices/s"},
		{Name: "payments", Title: "payments (create+confirm+capture, sandbox)", Args: []string{"payments", "-c", "16", "-n", scale(10000, quick), "-url", gw + "capture-payment", "-gateway", "http://" + gatewayAddr},
			Target: "≥ 1,000/s"}, // p99: payments-open
		{Name: "webhooks", Title: "webhooks (signed sandbox deliveries)", Args: []string{"webhooks", "-c", "16", "-n", scale(20000, quick), "-url", gw + "handle-webhook", "-gateway", "http://" + gatewayAddr, "-secrets", secretsDir},
			Target: "≥ 2,000/s"}, // p99: webhooks-open
		{Name: "mixed", Title: "mixed day of business (all functions)", Args: []string{"mixed", "-c", "16", "-n", scale(20000, quick), "-gateway", "http://" + gatewayAddr, "-secrets", secretsDir}},
	}
}
