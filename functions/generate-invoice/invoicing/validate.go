package invoicing

import (
	"bytes"
	"encoding/json"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/pan"
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

type CustomerIn struct {
	Name    string     `json:"name"`
	Email   string     `json:"email"`
	Phone   string     `json:"phone"`
	TaxID   string     `json:"tax_id"`
	Address *addressIn `json:"address"`
	Locale  string     `json:"locale"`
}

type discountIn struct {
	PercentOff  DecimalText `json:"percent_off"`
	AmountOff   *int64      `json:"amount_off"`
	Currency    string      `json:"currency"`
	Description string      `json:"description"`
}

type LineIn struct {
	Description string            `json:"description"`
	Quantity    DecimalText       `json:"quantity"`
	UnitAmount  *int64            `json:"unit_amount"`
	Currency    string            `json:"currency"`
	TaxRateIDs  []string          `json:"tax_rate_ids"`
	Discount    *discountIn       `json:"discount"`
	Metadata    map[string]string `json:"metadata"`
}

// CreateInvoiceIn is the POST /invoices body and the data of
// billfn.invoice.requested.
type CreateInvoiceIn struct {
	AccountID        string            `json:"account_id"`
	UserID           string            `json:"user_id"`
	Currency         string            `json:"currency"`
	Customer         *CustomerIn       `json:"customer"`
	LineItems        []LineIn          `json:"line_items"`
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

// PatchInvoiceIn is the PATCH /invoices/{id} body; absent members are kept.
type PatchInvoiceIn struct {
	Customer         *CustomerIn        `json:"customer"`
	LineItems        *[]LineIn          `json:"line_items"`
	Discounts        *[]discountIn      `json:"discounts"`
	Coupon           optional[string]   `json:"coupon"`
	NetTermsDays     optional[int]      `json:"net_terms_days"`
	DueDate          optional[string]   `json:"due_date"`
	Memo             *string            `json:"memo"`
	Metadata         *map[string]string `json:"metadata"`
	CollectionMethod *string            `json:"collection_method"`
	NumberPrefix     *string            `json:"number_prefix"`
}

// OnlyCoupon: the PATCH applies or removes a catalogue coupon and changes
// nothing else, which a customer may do on any draft of its own account,
// the merchant's included (billing.mayChangeDraft).
func (in *PatchInvoiceIn) OnlyCoupon() bool {
	return in.Coupon.Set && in.Customer == nil && in.LineItems == nil && in.Discounts == nil && !in.NetTermsDays.Set &&
		!in.DueDate.Set && in.Memo == nil && in.Metadata == nil && in.CollectionMethod == nil && in.NumberPrefix == nil
}

type AddLinesIn struct {
	LineItems []LineIn `json:"line_items"`
}

// Limits of free text.
const (
	MaxDescription = 500
	MaxMemo        = 5000
	MaxName        = 200
	maxMetaKeys    = 50
	maxMetaKey     = 40
	maxMetaValue   = 500
	MaxRatesLine   = 5
	MaxDiscounts   = 5
	maxQuantity    = 1_000_000_000 * QuantityScale
)

func TextOK(s string, max int) bool { return utf8.ValidString(s) && utf8.RuneCountInString(s) <= max }

func CheckMetadata(v *apperr.Validator, path string, m map[string]string) {
	if len(m) > maxMetaKeys {
		v.Check(false, path, "may hold at most "+strconv.Itoa(maxMetaKeys)+" keys")
		return
	}
	for k, val := range m {
		v.Check(k != "" && TextOK(k, maxMetaKey), path, "keys must be 1-"+strconv.Itoa(maxMetaKey)+" characters")
		v.Check(TextOK(val, maxMetaValue), path+"/"+k, "must be at most "+strconv.Itoa(maxMetaValue)+" characters")
	}
}

func ParseCustomer(v *apperr.Validator, path string, in *CustomerIn) Customer {
	if in == nil {
		return Customer{}
	}
	c := Customer{Name: strings.TrimSpace(in.Name), Email: strings.TrimSpace(in.Email), Phone: in.Phone, TaxID: in.TaxID}
	v.Check(TextOK(c.Name, MaxName), path+"/name", "must be at most 200 characters")
	if c.Email != "" {
		a, err := mail.ParseAddress(c.Email)
		v.Check(err == nil && a.Address == c.Email && len(c.Email) <= 254, path+"/email", "must be an e-mail address")
	}
	v.Check(TextOK(c.Phone, 40), path+"/phone", "must be at most 40 characters")
	v.Check(TextOK(c.TaxID, 64), path+"/tax_id", "must be at most 64 characters")
	c.Locale = strings.ReplaceAll(strings.TrimSpace(in.Locale), "_", "-")
	v.Check(c.Locale == "" || localeTag.MatchString(c.Locale), path+"/locale", `must be a BCP 47 language tag such as "en-US" or "de-DE"`)
	if a := in.Address; a != nil {
		c.Address = &Address{Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, State: a.State,
			Country: strings.ToUpper(a.Country)}
		for name, val := range map[string]string{"line1": a.Line1, "line2": a.Line2, "city": a.City, "postal_code": a.PostalCode, "state": a.State} {
			v.Check(TextOK(val, MaxName), path+"/address/"+name, "must be at most 200 characters")
		}
		v.Check(c.Address.Country == "" || (len(c.Address.Country) == 2 && AllUpper(c.Address.Country)), path+"/address/country",
			"must be an ISO 3166-1 alpha-2 code")
	}
	return c
}

// localeTag is a language with an optional script and region ("de",
// "de-CH", "sr-Latn-RS", "es-419").
var localeTag = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?$`)

func AllUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// ParseDiscount validates one discount; currency mismatches are returned
// separately (they are a rule of their own, not a malformed field).
func ParseDiscount(v *apperr.Validator, path string, in discountIn, cur money.Currency) (Discount, *apperr.Error) {
	d := Discount{Description: in.Description}
	v.Check(TextOK(in.Description, MaxDescription), path+"/description", "must be at most 500 characters")
	switch {
	case in.PercentOff.Set && in.AmountOff != nil:
		v.Check(false, path, "give percent_off or amount_off, not both")
	case in.PercentOff.Set:
		p, msg := in.PercentOff.Parse(PercentDecimals)
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
			return d, CurrencyMismatch(path+"/currency", c, cur)
		}
	}
	return d, nil
}

func CurrencyMismatch(path string, got, want money.Currency) *apperr.Error {
	return &apperr.Error{Code: CodeCurrencyMismatch,
		Detail: "the amount is in " + string(got) + " but the invoice is in " + string(want),
		Errors: []apperr.FieldError{apperr.Field(path, "must be "+string(want))}}
}

// LineDraft is a validated line waiting for its tax rates.
type LineDraft struct {
	Line   Line
	TaxIDs []string
}

func ParseLine(v *apperr.Validator, path string, in LineIn, cur money.Currency, mayDiscount bool) (LineDraft, *apperr.Error) {
	var rule *apperr.Error
	desc := strings.TrimSpace(in.Description)
	v.Check(desc != "" && TextOK(desc, MaxDescription), path+"/description", "is required, at most 500 characters")
	q := int64(QuantityScale)
	if in.Quantity.Set {
		var msg string
		q, msg = in.Quantity.Parse(quantityDecimals)
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
			rule = CurrencyMismatch(path+"/currency", c, cur)
		}
	}
	v.Check(len(in.TaxRateIDs) <= MaxRatesLine, path+"/tax_rate_ids", "at most 5 tax rates per line")
	seen := map[string]bool{}
	rateIDs := make([]string, 0, len(in.TaxRateIDs))
	for j, id := range in.TaxRateIDs {
		id = strings.ToLower(id)
		v.Check(ids.Valid(id), path+"/tax_rate_ids/"+strconv.Itoa(j), "must be a tax rate id")
		v.Check(!seen[id], path+"/tax_rate_ids/"+strconv.Itoa(j), "is listed twice")
		seen[id] = true
		rateIDs = append(rateIDs, id)
	}
	l := Line{ID: ids.New(), Description: desc, Quantity: Quantity(q), UnitAmount: unit, Metadata: in.Metadata, Taxes: []LineTax{}}
	if l.Metadata == nil {
		l.Metadata = map[string]string{}
	}
	CheckMetadata(v, path+"/metadata", in.Metadata)
	if in.Discount != nil {
		if !mayDiscount {
			return LineDraft{}, apperr.New(apperr.Forbidden, "only admin and service callers set discounts; customers may apply a coupon")
		}
		d, r := ParseDiscount(v, path+"/discount", *in.Discount, cur)
		if r != nil && rule == nil {
			rule = r
		}
		v.Check(unit > 0, path+"/discount", "applies only to a line with a positive unit_amount")
		l.Discount = &d
	}
	return LineDraft{Line: l, TaxIDs: rateIDs}, rule
}

// InvoiceDraft is a validated creation request.
type InvoiceDraft struct {
	Inv          *Invoice
	Lines        []LineDraft
	Coupon       string
	AutoFinalize bool
	Pointer      string // "" or "invoices/3/" in a batch
}

// ParseCreate validates a creation body for principal p. now decides
// whether a due date is in the past. It returns the draft (without its
// owner) and, apart, the first rule the body breaks (currencies of lines,
// due date): the caller checks the account first, so a well-formed body
// naming an account p may not bill is refused before any rule is looked
// at.
func ParseCreate(p auth.Principal, in *CreateInvoiceIn, pointer string, now time.Time, numberPrefix string, maxLines int) (*InvoiceDraft, *apperr.Error, error) {
	// No card number in any of its texts (memo, customer, lines, metadata…),
	// whether the body came over HTTP or in a billfn.invoice.requested event;
	// checked first, so no other message quotes one.
	var c pan.Checker
	c.Value(strings.TrimSuffix(pointer, "/"), in)
	if err := c.Err(); err != nil {
		return nil, nil, err
	}
	var v apperr.Validator
	var rule *apperr.Error
	account := strings.ToLower(in.AccountID)
	v.Check(ids.Valid(account), pointer+"account_id", "is required: the id of the account billed (a UUID)")
	v.Check(in.UserID == "" || ids.Valid(in.UserID), pointer+"user_id", "must be a UUID: the account's owner, or left out")
	cur, cerr := money.ParseCurrency(in.Currency)
	v.Check(cerr == nil, pointer+"currency", "is required: an ISO 4217 code such as USD")
	inv := &Invoice{Object: "invoice", ID: ids.New(), AccountID: account, Status: StatusDraft,
		BillingReason: ReasonManual, Currency: cur, Memo: in.Memo, Metadata: in.Metadata,
		NumberPrefix: numberPrefix, CollectionMethod: ChargeAutomatically, Discounts: []Discount{},
		CreatedAt: now, UpdatedAt: now, DraftedByCustomer: !p.Privileged()}
	inv.Customer = ParseCustomer(&v, pointer+"customer", in.Customer)
	v.Check(TextOK(in.Memo, MaxMemo), pointer+"memo", "must be at most 5000 characters")
	if inv.Metadata == nil {
		inv.Metadata = map[string]string{}
	}
	CheckMetadata(&v, pointer+"metadata", in.Metadata)
	if in.CollectionMethod != "" {
		v.Check(in.CollectionMethod == ChargeAutomatically || in.CollectionMethod == SendInvoice,
			pointer+"collection_method", "must be charge_automatically or send_invoice")
		inv.CollectionMethod = in.CollectionMethod
	}
	if in.NumberPrefix != "" {
		v.Check(ValidPrefix(in.NumberPrefix), pointer+"number_prefix", "must be 1-10 upper-case letters and digits, starting with a letter")
		inv.NumberPrefix = in.NumberPrefix
	}
	if r := ParseTerms(&v, pointer, in.NetTermsDays, in.DueDate, inv, now); r != nil {
		rule = r
	}
	if len(in.LineItems) > maxLines {
		v.Check(false, pointer+"line_items", "at most "+strconv.Itoa(maxLines)+" lines per invoice")
	}
	d := &InvoiceDraft{Inv: inv, Coupon: in.Coupon, AutoFinalize: in.AutoFinalize, Pointer: pointer}
	if in.AutoFinalize && len(in.LineItems) == 0 {
		v.Check(false, pointer+"line_items", "an invoice finalized at once needs at least one line")
	}
	for i, li := range in.LineItems {
		ld, r := ParseLine(&v, pointer+"line_items/"+strconv.Itoa(i), li, cur, p.Privileged())
		if r != nil {
			if r.Code == apperr.Forbidden {
				return nil, nil, r
			}
			if rule == nil {
				rule = r
			}
		}
		d.Lines = append(d.Lines, ld)
	}
	if len(in.Discounts) > 0 && !p.Privileged() {
		return nil, nil, apperr.New(apperr.Forbidden, "only admin and service callers set discounts; customers may apply a coupon")
	}
	v.Check(len(in.Discounts) <= MaxDiscounts, pointer+"discounts", "at most 5 invoice discounts")
	for i, di := range in.Discounts {
		dd, r := ParseDiscount(&v, pointer+"discounts/"+strconv.Itoa(i), di, cur)
		if r != nil && rule == nil {
			rule = r
		}
		inv.Discounts = append(inv.Discounts, dd)
	}
	if in.Coupon != "" {
		v.Check(ValidCouponID(in.Coupon), pointer+"coupon", "must be a coupon id")
	}
	if err := v.Err(); err != nil {
		return nil, nil, err
	}
	return d, rule, nil
}

// ParseTerms applies net_terms_days / due_date to inv.
func ParseTerms(v *apperr.Validator, pointer string, net *int, due *string, inv *Invoice, now time.Time) *apperr.Error {
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
		if t.Before(UTCDate(now)) {
			return &apperr.Error{Code: CodeDueDateInPast, Detail: "due_date " + *due + " is before today (" + now.Format(time.DateOnly) + " UTC)",
				Errors: []apperr.FieldError{apperr.Field(pointer+"due_date", "must be today or later")}}
		}
		inv.DueDate = &Date{t}
	}
	return nil
}

func ValidCouponID(id string) bool {
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

// ValidPrefix reports whether p is an invoice number prefix: 1-10
// upper-case letters and digits, starting with a letter.
func ValidPrefix(p string) bool {
	if len(p) < 1 || len(p) > 10 || p[0] < 'A' || p[0] > 'Z' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !(p[i] >= 'A' && p[i] <= 'Z' || p[i] >= '0' && p[i] <= '9') {
			return false
		}
	}
	return true
}

// ParseTime checks an optional RFC 3339 timestamp at path (UTC; nil when
// absent or bad).
func ParseTime(v *apperr.Validator, path string, s *string) *time.Time {
	if s == nil {
		return nil
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		v.Check(false, path, "must be an RFC 3339 timestamp")
		return nil
	}
	return ptr(t.UTC())
}
