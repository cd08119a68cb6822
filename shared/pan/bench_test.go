package pan

import "testing"

// BenchmarkCheckerValue walks a request struct shaped as an invoice's
// creation (generate-invoice's ParseCreate checks each one so, for every
// invoice of a batch and every billfn.invoice.requested event).
func BenchmarkCheckerValue(b *testing.B) {
	type line struct {
		Description string `json:"description"`
		Quantity    string `json:"quantity"`
		UnitAmount  int64  `json:"unit_amount"`
	}
	in := struct {
		AccountID string            `json:"account_id"`
		UserID    string            `json:"user_id"`
		Currency  string            `json:"currency"`
		Customer  map[string]string `json:"customer"`
		Memo      string            `json:"memo"`
		NetTerms  int               `json:"net_terms_days"`
		Lines     []line            `json:"line_items"`
		Metadata  map[string]string `json:"metadata"`
	}{AccountID: "73625508-2962-4106-a925-e0e02156fa08", UserID: "0f8fad5b-d9cb-469f-a165-70867728950e", Currency: "USD",
		Customer: map[string]string{"name": "Ada Lovelace & Co", "email": "ada@example.com", "phone": "+1 415-555-0100"},
		Memo:     "Thank you for your business", NetTerms: 30,
		Lines:    []line{{"Seats", "3", 1200}, {"Storage", "1", 450}, {"Support <priority>", "1", 2500}},
		Metadata: map[string]string{"order": "ord_20261206_0042", "region": "eu-west"}}
	b.ReportAllocs()
	for b.Loop() {
		var c Checker
		c.Value("", in)
		if c.Err() != nil {
			b.Fatal(c.Err())
		}
	}
}
