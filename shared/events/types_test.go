package events_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/events"
)

// docSection is docs/events.md's "## Data of each type": the table of
// types and, per Go type, its field table.
type docSection struct {
	types    map[string]string   // event type -> Go type name
	fields   map[string][]string // Go type name -> documented fields
	embedded map[string][]string // Go type name -> "Every field of X, Y, and:"
}

var (
	typeRow  = regexp.MustCompile("^\\| `(billfn\\.[a-z_.]+)` \\| ([A-Za-z]+) \\|$")
	fieldRow = regexp.MustCompile("^\\| `([a-z0-9_]+)` \\|")
	everyOf  = regexp.MustCompile(`^Every field of ([A-Za-z, ]+), and:$`)
)

func readDataSection(t *testing.T) docSection {
	t.Helper()
	doc, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "\n## Data of each type\n")
	if !ok {
		t.Fatal(`docs/events.md has no "## Data of each type"`)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	d := docSection{types: map[string]string{}, fields: map[string][]string{}, embedded: map[string][]string{}}
	current := ""
	for _, line := range strings.Split(rest, "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(line, "### "); ok {
			current = name
			if _, dup := d.fields[name]; dup {
				t.Errorf("docs/events.md describes %s twice", name)
			}
			d.fields[name] = nil
			continue
		}
		if current == "" {
			if m := typeRow.FindStringSubmatch(line); m != nil {
				if _, dup := d.types[m[1]]; dup {
					t.Errorf("docs/events.md lists %s twice", m[1])
				}
				d.types[m[1]] = m[2]
			}
			continue
		}
		if m := everyOf.FindStringSubmatch(line); m != nil {
			d.embedded[current] = strings.Split(m[1], ", ")
		}
		if m := fieldRow.FindStringSubmatch(line); m != nil {
			d.fields[current] = append(d.fields[current], m[1])
		}
	}
	return d
}

// jsonFields are t's own JSON members, in order, and the types it embeds.
func jsonFields(t reflect.Type) (fields []string, embedded []reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			embedded = append(embedded, f.Type)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields = append(fields, name)
	}
	return fields, embedded
}

// nested are the contract's own struct types a field holds.
func nested(t reflect.Type) []reflect.Type {
	var out []reflect.Type
	for i := 0; i < t.NumField(); i++ {
		ft := t.Field(i).Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == reflect.TypeOf(events.Spec{}).PkgPath() {
			out = append(out, ft)
		}
	}
	return out
}

// TestDocsDescribeEveryEventType: every event type of the contract is in
// docs/events.md with the Go type of its data, every field of every such
// type (and of the types they hold) is documented, and nothing is
// documented that does not exist.
func TestDocsDescribeEveryEventType(t *testing.T) {
	d := readDataSection(t)
	reachable := map[string]reflect.Type{}
	var queue []reflect.Type
	for _, s := range events.Contract() {
		ty := reflect.TypeOf(s.Data)
		got, ok := d.types[s.Type]
		switch {
		case !ok:
			t.Errorf("docs/events.md does not say what %s carries (%s)", s.Type, ty.Name())
		case got != ty.Name():
			t.Errorf("docs/events.md: %s carries %s, the contract says %s", s.Type, got, ty.Name())
		}
		queue = append(queue, ty)
	}
	for typ := range d.types {
		if _, ok := events.SpecOf(typ); !ok {
			t.Errorf("docs/events.md lists %s, the contract does not", typ)
		}
	}
	for len(queue) > 0 {
		ty := queue[0]
		queue = queue[1:]
		if _, seen := reachable[ty.Name()]; seen {
			continue
		}
		reachable[ty.Name()] = ty
		_, emb := jsonFields(ty)
		queue = append(append(queue, emb...), nested(ty)...)
	}
	for name, ty := range reachable {
		documented, ok := d.fields[name]
		if !ok {
			t.Errorf("docs/events.md has no \"### %s\"", name)
			continue
		}
		want, emb := jsonFields(ty)
		for _, f := range want {
			if !slices.Contains(documented, f) {
				t.Errorf("docs/events.md: %s.%s is not documented", name, f)
			}
		}
		for _, f := range documented {
			if !slices.Contains(want, f) {
				t.Errorf("docs/events.md: %s has no field %q", name, f)
			}
		}
		var embNames []string
		for _, e := range emb {
			embNames = append(embNames, e.Name())
		}
		if !slices.Equal(embNames, d.embedded[name]) {
			t.Errorf("docs/events.md: %s holds every field of %v, the doc says %v", name, embNames, d.embedded[name])
		}
	}
	for name := range d.fields {
		if _, ok := reachable[name]; !ok {
			t.Errorf("docs/events.md describes %s, which no event carries", name)
		}
	}
}

// The check above must be able to fail: a field the doc lacks, one it
// invents and a type it forgets are each found.
func TestDocCheckFindsWhatIsMissing(t *testing.T) {
	fields, emb := jsonFields(reflect.TypeOf(events.PaymentCaptured{}))
	if !slices.Equal(fields, []string{"amount", "payment_amount"}) || len(emb) != 1 || emb[0].Name() != "Payment" {
		t.Fatalf("jsonFields(PaymentCaptured) = %v, %v", fields, emb)
	}
	if n := nested(reflect.TypeOf(events.Payment{})); len(n) != 2 {
		t.Fatalf("nested(Payment) = %v, want PaymentError and NextAction", n)
	}
	if m := fieldRow.FindStringSubmatch("| `amount` | integer | minor units |"); m == nil || m[1] != "amount" {
		t.Fatalf("fieldRow does not read a field row: %v", m)
	}
	if m := typeRow.FindStringSubmatch("| `billfn.payment.captured` | PaymentCaptured |"); m == nil || m[2] != "PaymentCaptured" {
		t.Fatalf("typeRow does not read a type row: %v", m)
	}
}

// Every row's data round-trips through JSON with the members the
// producers emit today, so consumers keep decoding what is on the wire.
func TestContractRowsAreWellFormed(t *testing.T) {
	for _, s := range events.Contract() {
		topic, ok := events.ContractTopic(s.Type)
		if !ok || topic != s.Topic {
			t.Errorf("%s: ContractTopic = %q, %v; row says %q", s.Type, topic, ok, s.Topic)
		}
		if s.Command() != events.IsCommand(s.Type) {
			t.Errorf("%s: IsCommand disagrees with the row", s.Type)
		}
		if !s.Command() && !slices.Contains(events.Functions, s.Emitter) {
			t.Errorf("%s: emitter %q is not a function", s.Type, s.Emitter)
		}
		if _, err := json.Marshal(s.Data); err != nil {
			t.Errorf("%s: %v", s.Type, err)
		}
	}
}

// The transfer request capture-payment emitted before the shared type
// (metadata a map of strings, description and reference always present)
// still decodes, and the shared type writes what process-transaction read.
func TestTransactionRequestedKeepsTheWire(t *testing.T) {
	old := `{"from_account_number":"SYS-CLEARING-USD","to_account_id":"0190a0b4-0000-7000-8000-000000000001",` +
		`"amount":1050,"currency":"USD","description":"payment_capture of payment p1","reference_id":"p1:payment_capture:1",` +
		`"metadata":{"kind":"payment_capture","payment_id":"p1","gateway":"sandbox"},"pending":false}`
	var r events.TransactionRequested
	if err := json.Unmarshal([]byte(old), &r); err != nil {
		t.Fatal(err)
	}
	if r.Amount != 1050 || r.FromAccountNumber != "SYS-CLEARING-USD" || r.ReferenceID != "p1:payment_capture:1" {
		t.Fatalf("decoded %+v", r)
	}
	var md map[string]string
	if err := json.Unmarshal(r.Metadata, &md); err != nil || md["kind"] != "payment_capture" {
		t.Fatalf("metadata %s: %v", r.Metadata, err)
	}
	r.TransferID = "t1"
	b, _ := json.Marshal(r)
	var back map[string]any
	_ = json.Unmarshal(b, &back)
	if back["transfer_id"] != "t1" || back["amount"] != float64(1050) || back["to_account_id"] == nil {
		t.Fatalf("encoded %s", b)
	}
	if string(events.MetadataOf(map[string]string{"kind": "refund"})) != `{"kind":"refund"}` || events.MetadataOf(nil) != nil {
		t.Fatal("MetadataOf")
	}
}

// TransferKinds is what process-transaction refuses a customer's
// transfer to claim as its metadata.kind: a kind declared beside the
// others but missing from it (refund_reversal was) lets a customer post
// a transfer that reads as capture-payment's fact. Every Kind constant
// of types.go is in the list, and the list holds nothing else.
func TestTransferKindsListEveryKind(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "types.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			for i, n := range v.Names {
				if !strings.HasPrefix(n.Name, "Kind") || i >= len(v.Values) {
					continue
				}
				lit, ok := v.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				k, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				declared = append(declared, k)
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("no Kind constant found in types.go")
	}
	for _, k := range declared {
		if !slices.Contains(events.TransferKinds, k) {
			t.Errorf("kind %q is declared but not in events.TransferKinds", k)
		}
	}
	if len(events.TransferKinds) != len(declared) {
		t.Errorf("events.TransferKinds %v, the declared kinds %v", events.TransferKinds, declared)
	}
}
