package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/pan"
	"github.com/billfn/billfn/shared/problem"
)

// Request bodies and their validation: plain rules, no SQL. A body is
// turned into domain values here; every invalid field is reported at once
// (validation_failed with JSON pointers); rule violations that need the
// database (unknown tax rate, coupon) are checked in resolve.

type addressIn struct {
	Line1      string `json:"line1"`
	Line2      string `json:"line2"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	State      string `json:"state"`
	Country    string `json:"country"`
}

type customerIn struct {
	Name    string     `json:"name"`
	Email   string     `json:"email"`
	Phone   string     `json:"phone"`
	TaxID   string     `json:"tax_id"`
	Address *addressIn `json:"address"`
}

type discountIn struct {
	PercentOff  decimalText `json:"percent_off"`
	AmountOff   *int64      `json:"amount_off"`
	Currency    string      `json:"currency"`
	Description string      `json:"description"`
}

type lineIn struct {
	Description string            `json:"description"`
	Quantity    decimalText       `json:"quantity"`
	UnitAmount  *int64            `json:"unit_amount"`
	Currency    string            `json:"currency"`
	TaxRateIDs  []string          `json:"tax_rate_ids"`
	Discount    *discountIn       `json:"discount"`
	Metadata    map[string]string `json:"metadata"`
}

// createInvoiceIn is the POST /invoices body and the data of
// billfn.invoice.requested.
type createInvoiceIn struct {
	AccountID        string            `json:"account_id"`
	UserID           string            `json:"user_id"`
	Currency         string            `json:"currency"`
	Customer         *customerIn       `json:"customer"`
	LineItems        []lineIn          `json:"line_items"`
	Discounts        []discountIn      `json:"discounts"`
	Coupon           string            `json:"coupon"`
	NetTermsDays     *int              `json:"net_terms_days"`
	DueDate          *string           `json:"due_date"`
	Memo             string            `json:"memo"`
	Metadata         map[string]string `json:"metadata"`
	AutoFinalize     bool              `json:"auto_finalize"`
	CollectionMethod string            `json:"collection_method"`
	NumberPrefix     string            `json:"number_prefix"`
}

// optional is a PATCH member: absent, null, or a value.
type optional[T any] struct {
	Set  bool
	Null bool
	V    T
}

func (o *optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.V)
}

// patchInvoiceIn is the PATCH /invoices/{id} body; absent members are kept.
type patchInvoiceIn struct {
	Customer         *customerIn        `json:"customer"`
	LineItems        *[]lineIn          `json:"line_items"`
	Discounts        *[]discountIn      `json:"discounts"`
	Coupon           optional[string]   `json:"coupon"`
	NetTermsDays     optional[int]      `json:"net_terms_days"`
	DueDate          optional[string]   `json:"due_date"`
	Memo             *string            `json:"memo"`
	Metadata         *map[string]string `json:"metadata"`
	CollectionMethod *string            `json:"collection_method"`
	NumberPrefix     *string            `json:"number_prefix"`
}

type addLinesIn struct {
	LineItems []lineIn `json:"line_items"`
}

// Limits of free text.
const (
	maxDescription = 500
	maxMemo        = 5000
	maxName        = 200
	maxMetaKeys    = 50
	maxMetaKey     = 40
	maxMetaValue   = 500
	maxRatesLine   = 5
	maxDiscounts   = 5
	maxQuantity    = 1_000_000_000 * QuantityScale
)

func textOK(s string, max int) bool { return utf8.ValidString(s) && utf8.RuneCountInString(s) <= max }

func checkMetadata(v *problem.Validator, path string, m map[string]string) {
	if len(m) > maxMetaKeys {
		v.Check(false, path, "may hold at most "+strconv.Itoa(maxMetaKeys)+" keys")
		return
	}
	for k, val := range m {
		v.Check(k != "" && textOK(k, maxMetaKey), path, "keys must be 1-"+strconv.Itoa(maxMetaKey)+" characters")
		v.Check(textOK(val, maxMetaValue), path+"/"+k, "must be at most "+strconv.Itoa(maxMetaValue)+" characters")
	}
}

func parseCustomer(v *problem.Validator, path string, in *customerIn) Customer {
	if in == nil {
		return Customer{}
	}
	c := Customer{Name: strings.TrimSpace(in.Name), Email: strings.TrimSpace(in.Email), Phone: in.Phone, TaxID: in.TaxID}
	v.Check(textOK(c.Name, maxName), path+"/name", "must be at most 200 characters")
	if c.Email != "" {
		a, err := mail.ParseAddress(c.Email)
		v.Check(err == nil && a.Address == c.Email && len(c.Email) <= 254, path+"/email", "must be an e-mail address")
	}
	v.Check(textOK(c.Phone, 40), path+"/phone", "must be at most 40 characters")
	v.Check(textOK(c.TaxID, 64), path+"/tax_id", "must be at most 64 characters")
	if a := in.Address; a != nil {
		c.Address = &Address{Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, State: a.State,
			Country: strings.ToUpper(a.Country)}
		for name, val := range map[string]string{"line1": a.Line1, "line2": a.Line2, "city": a.City, "postal_code": a.PostalCode, "state": a.State} {
			v.Check(textOK(val, maxName), path+"/address/"+name, "must be at most 200 characters")
		}
		v.Check(c.Address.Country == "" || (len(c.Address.Country) == 2 && allUpper(c.Address.Country)), path+"/address/country",
			"must be an ISO 3166-1 alpha-2 code")
	}
	return c
}

func allUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// parseDiscount validates one discount; currency mismatches are returned
// separately (they are a rule of their own, not a malformed field).
func parseDiscount(v *problem.Validator, path string, in discountIn, cur money.Currency) (Discount, *problem.Error) {
	d := Discount{Description: in.Description}
	v.Check(textOK(in.Description, maxDescription), path+"/description", "must be at most 500 characters")
	switch {
	case in.PercentOff.set && in.AmountOff != nil:
		v.Check(false, path, "give percent_off or amount_off, not both")
	case in.PercentOff.set:
		p, msg := in.PercentOff.parse(percentDecimals)
		if msg == "" && (p <= 0 || p > RateDen) {
			msg = "must be more than 0 and at most 100"
		}
		v.Check(msg == "", path+"/percent_off", msg)
		d.PercentOff = Percent(p)
	case in.AmountOff != nil:
		v.Check(*in.AmountOff > 0, path+"/amount_off", "must be a positive amount in minor units")
		d.AmountOff = *in.AmountOff
	default:
		v.Check(false, path, "needs percent_off or amount_off")
	}
	if in.Currency != "" {
		c, err := money.ParseCurrency(in.Currency)
		if err != nil {
			v.Check(false, path+"/currency", "must be an ISO 4217 code")
		} else if c != cur {
			return d, currencyMismatch(path+"/currency", c, cur)
		}
	}
	return d, nil
}

func currencyMismatch(path string, got, want money.Currency) *problem.Error {
	return &problem.Error{Code: codeCurrencyMismatch,
		Detail: "the amount is in " + string(got) + " but the invoice is in " + string(want),
		Errors: []problem.FieldError{problem.Field(path, "must be "+string(want))}}
}

// lineDraft is a validated line waiting for its tax rates.
type lineDraft struct {
	line   Line
	taxIDs []string
}

func parseLine(v *problem.Validator, path string, in lineIn, cur money.Currency, mayDiscount bool) (lineDraft, *problem.Error) {
	var rule *problem.Error
	desc := strings.TrimSpace(in.Description)
	v.Check(desc != "" && textOK(desc, maxDescription), path+"/description", "is required, at most 500 characters")
	q := int64(QuantityScale)
	if in.Quantity.set {
		var msg string
		q, msg = in.Quantity.parse(quantityDecimals)
		if msg == "" && (q <= 0 || q > maxQuantity) {
			msg = "must be more than 0 and at most 1000000000"
		}
		v.Check(msg == "", path+"/quantity", msg)
	}
	var unit int64
	if in.UnitAmount == nil {
		v.Check(false, path+"/unit_amount", "is required: the price of one unit in minor units")
	} else {
		unit = *in.UnitAmount
	}
	if in.Currency != "" {
		c, err := money.ParseCurrency(in.Currency)
		if err != nil {
			v.Check(false, path+"/currency", "must be an ISO 4217 code")
		} else if c != cur {
			rule = currencyMismatch(path+"/currency", c, cur)
		}
	}
	v.Check(len(in.TaxRateIDs) <= maxRatesLine, path+"/tax_rate_ids", "at most 5 tax rates per line")
	seen := map[string]bool{}
	ids := make([]string, 0, len(in.TaxRateIDs))
	for j, id := range in.TaxRateIDs {
		id = strings.ToLower(id)
		v.Check(validUUID(id), path+"/tax_rate_ids/"+strconv.Itoa(j), "must be a tax rate id")
		v.Check(!seen[id], path+"/tax_rate_ids/"+strconv.Itoa(j), "is listed twice")
		seen[id] = true
		ids = append(ids, id)
	}
	l := Line{ID: newID(), Description: desc, Quantity: Quantity(q), UnitAmount: unit, Metadata: in.Metadata, Taxes: []LineTax{}}
	if l.Metadata == nil {
		l.Metadata = map[string]string{}
	}
	checkMetadata(v, path+"/metadata", in.Metadata)
	if in.Discount != nil {
		if !mayDiscount {
			return lineDraft{}, problem.New(problem.Forbidden, "only admin and service callers set discounts; customers may apply a coupon")
		}
		d, r := parseDiscount(v, path+"/discount", *in.Discount, cur)
		if r != nil && rule == nil {
			rule = r
		}
		v.Check(unit > 0, path+"/discount", "applies only to a line with a positive unit_amount")
		l.Discount = &d
	}
	return lineDraft{line: l, taxIDs: ids}, rule
}

// invoiceDraft is a validated creation request.
type invoiceDraft struct {
	inv          *Invoice
	lines        []lineDraft
	coupon       string
	autoFinalize bool
	pointer      string // "" or "invoices/3/" in a batch
}

// parseCreate validates a creation body for principal p. now decides
// whether a due date is in the past. The invoice belongs to the owner of
// its account (billable), never to the user_id the body states; a
// well-formed body naming an account p may not bill is refused before any
// rule (currencies of lines, due date, coupon, tax rates) is looked at.
func (s *service) parseCreate(ctx context.Context, q querier, p auth.Principal, memo accountMemo, in *createInvoiceIn, pointer string, now time.Time) (*invoiceDraft, error) {
	// No card number in any of its texts (memo, customer, lines, metadata…),
	// whether the body came over HTTP or in a billfn.invoice.requested event;
	// checked first, so no other message quotes one.
	var c pan.Checker
	c.Value(strings.TrimSuffix(pointer, "/"), in)
	if err := c.Err(); err != nil {
		return nil, err
	}
	var v problem.Validator
	var rule *problem.Error
	account := strings.ToLower(in.AccountID)
	v.Check(validUUID(account), pointer+"account_id", "is required: the id of the account billed (a UUID)")
	v.Check(in.UserID == "" || validUUID(in.UserID), pointer+"user_id", "must be a UUID: the account's owner, or left out")
	cur, cerr := money.ParseCurrency(in.Currency)
	v.Check(cerr == nil, pointer+"currency", "is required: an ISO 4217 code such as USD")
	inv := &Invoice{Object: "invoice", ID: newID(), AccountID: account, Status: StatusDraft,
		BillingReason: ReasonManual, Currency: cur, Memo: in.Memo, Metadata: in.Metadata,
		NumberPrefix: s.cfg.NumberPrefix, CollectionMethod: ChargeAutomatically, Discounts: []Discount{},
		CreatedAt: now, UpdatedAt: now}
	inv.Customer = parseCustomer(&v, pointer+"customer", in.Customer)
	v.Check(textOK(in.Memo, maxMemo), pointer+"memo", "must be at most 5000 characters")
	if inv.Metadata == nil {
		inv.Metadata = map[string]string{}
	}
	checkMetadata(&v, pointer+"metadata", in.Metadata)
	if in.CollectionMethod != "" {
		v.Check(in.CollectionMethod == ChargeAutomatically || in.CollectionMethod == SendInvoice,
			pointer+"collection_method", "must be charge_automatically or send_invoice")
		inv.CollectionMethod = in.CollectionMethod
	}
	if in.NumberPrefix != "" {
		v.Check(validPrefix(in.NumberPrefix), pointer+"number_prefix", "must be 1-10 upper-case letters and digits, starting with a letter")
		inv.NumberPrefix = in.NumberPrefix
	}
	if r := parseTerms(&v, pointer, in.NetTermsDays, in.DueDate, inv, now); r != nil {
		rule = r
	}
	if len(in.LineItems) > s.cfg.MaxLines {
		v.Check(false, pointer+"line_items", "at most "+strconv.Itoa(s.cfg.MaxLines)+" lines per invoice")
	}
	d := &invoiceDraft{inv: inv, coupon: in.Coupon, autoFinalize: in.AutoFinalize, pointer: pointer}
	if in.AutoFinalize && len(in.LineItems) == 0 {
		v.Check(false, pointer+"line_items", "an invoice finalized at once needs at least one line")
	}
	for i, li := range in.LineItems {
		ld, r := parseLine(&v, pointer+"line_items/"+strconv.Itoa(i), li, cur, p.Privileged())
		if r != nil {
			if r.Code == problem.Forbidden {
				return nil, r
			}
			if rule == nil {
				rule = r
			}
		}
		d.lines = append(d.lines, ld)
	}
	if len(in.Discounts) > 0 && !p.Privileged() {
		return nil, problem.New(problem.Forbidden, "only admin and service callers set discounts; customers may apply a coupon")
	}
	v.Check(len(in.Discounts) <= maxDiscounts, pointer+"discounts", "at most 5 invoice discounts")
	for i, di := range in.Discounts {
		dd, r := parseDiscount(&v, pointer+"discounts/"+strconv.Itoa(i), di, cur)
		if r != nil && rule == nil {
			rule = r
		}
		inv.Discounts = append(inv.Discounts, dd)
	}
	if in.Coupon != "" {
		v.Check(validCouponID(in.Coupon), pointer+"coupon", "must be a coupon id")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	f, err := s.billable(ctx, q, p, memo, account, in.UserID, string(cur), pointer, pointer+"currency")
	if err != nil {
		return nil, err
	}
	inv.UserID = f.UserID
	if rule != nil {
		return nil, rule
	}
	return d, nil
}

// parseTerms applies net_terms_days / due_date to inv.
func parseTerms(v *problem.Validator, pointer string, net *int, due *string, inv *Invoice, now time.Time) *problem.Error {
	if net != nil && due != nil {
		v.Check(false, pointer+"due_date", "give net_terms_days or due_date, not both")
		return nil
	}
	inv.NetTermsDays, inv.DueDate = nil, nil
	if net != nil {
		v.Check(*net >= 0 && *net <= 365, pointer+"net_terms_days", "must be from 0 to 365 days")
		inv.NetTermsDays = ptr(*net)
	}
	if due != nil {
		t, err := time.Parse(time.DateOnly, *due)
		if err != nil {
			v.Check(false, pointer+"due_date", "must be a date: YYYY-MM-DD")
			return nil
		}
		if t.Before(utcDate(now)) {
			return &problem.Error{Code: codeDueDateInPast, Detail: "due_date " + *due + " is before today (" + now.Format(time.DateOnly) + " UTC)",
				Errors: []problem.FieldError{problem.Field(pointer+"due_date", "must be today or later")}}
		}
		inv.DueDate = &Date{t}
	}
	return nil
}

func validCouponID(id string) bool {
	if len(id) < 1 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// newID returns a UUIDv7: time-ordered, so keyset pages by id are newest first.
func newID() string { return uuid.Must(uuid.NewV7()).String() }
