package events_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

var (
	capturePayment = events.Source("capture-payment")
	generateInv    = events.Source("generate-invoice")
)

// originRig is newRig with the origin check on: the test deployments'
// keys (every function and testenv.IntegratorSource), and a handler for
// the transfer command beside the payment fact.
func originRig(t *testing.T, batch bool) *rig {
	t.Helper()
	g := newRig(t, batch)
	g.rc.SkipOriginCheck = false
	g.rc.Origins = testenv.OriginKeys()
	g.rc.On("billfn.transaction.requested", func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+g.table+` VALUES ($1, 1000000)`, ev.ID())
		return err
	})
	return g
}

func (g *rig) deliver(ev events.Event) (int, events.Result) {
	g.t.Helper()
	b := structured(g.t, ev)
	return g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeStructured}}), b)
}

// deadLetter is the reason ev was parked for ("" when it was not).
func (g *rig) deadLetter(ev events.Event) string {
	g.t.Helper()
	var reason string
	_ = testenv.Pool(g.t).QueryRow(context.Background(), `SELECT error FROM dead_letters WHERE consumer = $1 AND source = $2 AND event_id = $3`,
		g.consumer, ev.Source(), ev.ID()).Scan(&reason)
	return reason
}

func paymentFact(t *testing.T, source string, amount int64) events.Event {
	t.Helper()
	ev := newEvent(t, amount)
	ev.SetSource(source)
	return ev
}

func signedAs(source string, ev events.Event) events.Event {
	testenv.OriginSigner(source).Sign(&ev)
	return ev
}

// A valid broker principal producing another source's fact — unsigned, or
// signed with the integrator's or another function's key, or signed by the
// owner and then altered — gets it parked with the reason, answered 200
// and counted; nothing happens. The genuine event with the same source and
// id still applies afterwards: a forgery cannot use up a real event's id.
func TestForgedFactIsParkedAndChangesNothing(t *testing.T) {
	g := originRig(t, false)
	genuine := signedAs(capturePayment, paymentFact(t, capturePayment, 500))

	unsigned := paymentFact(t, capturePayment, 7000)
	unsigned.SetID(genuine.ID())
	byIntegrator := signedAs(testenv.IntegratorSource, paymentFact(t, capturePayment, 7000))
	byOtherFunction := signedAs(generateInv, paymentFact(t, capturePayment, 7000))
	altered := signedAs(capturePayment, paymentFact(t, capturePayment, 1))
	if err := altered.SetData(event.ApplicationJSON, payment{7000}); err != nil {
		t.Fatal(err)
	}
	foreignKid := signedAs(capturePayment, paymentFact(t, capturePayment, 7000))
	foreignKid.SetExtension(events.OriginKidExt, testenv.OriginSigner(generateInv).KeyID())
	garbage := paymentFact(t, capturePayment, 7000)
	garbage.SetExtension(events.OriginSigExt, "not-a-signature")
	garbage.SetExtension(events.OriginKidExt, testenv.OriginSigner(capturePayment).KeyID())
	half := paymentFact(t, capturePayment, 7000)
	half.SetExtension(events.OriginSigExt, signedAs(capturePayment, half.Clone()).Extensions()[events.OriginSigExt])

	for _, c := range []struct {
		name   string
		ev     events.Event
		reason string
	}{
		{"unsigned, with the genuine event's id", unsigned, events.ReasonNoOrigin},
		{"signed with the integrator's key", byIntegrator, events.ReasonBadOrigin},
		{"signed with generate-invoice's key", byOtherFunction, events.ReasonBadOrigin},
		{"signed by the owner, then its data altered", altered, events.ReasonBadOrigin},
		{"the owner's signature under another key id", foreignKid, events.ReasonBadOrigin},
		{"a malformed signature", garbage, events.ReasonBadOrigin},
		{"a signature without a key id", half, events.ReasonBadOrigin},
	} {
		before := unexpectedCount(t, g.consumer)["billfn.payment.captured "+c.reason]
		code, res := g.deliver(c.ev)
		if code != http.StatusOK || res.Parked != 1 || res.Processed != 0 {
			t.Errorf("%s: %d %+v, want 200 and parked", c.name, code, res)
		}
		if n, _ := g.sum(); n != 0 {
			t.Fatalf("%s: %d effects; a forged fact took effect", c.name, n)
		}
		if r := g.deadLetter(c.ev); !strings.Contains(r, "origin proof") {
			t.Errorf("%s: dead letter reason %q does not say the origin proof failed", c.name, r)
		}
		if after := unexpectedCount(t, g.consumer)["billfn.payment.captured "+c.reason]; after != before+1 {
			t.Errorf("%s: %s counted %v → %v, want one more", c.name, c.reason, before, after)
		}
		// Redelivered: parked again (the same 200), still nothing.
		if code, res := g.deliver(c.ev); code != http.StatusOK || res.Processed != 0 {
			t.Errorf("%s redelivered: %d %+v", c.name, code, res)
		}
	}
	if code, res := g.deliver(genuine); code != http.StatusOK || res.Processed != 1 {
		t.Fatalf("the genuine event after the forgeries: %d %+v, want applied", code, res)
	}
	if n, total := g.sum(); n != 1 || total != 500 {
		t.Fatalf("%d effects summing to %d, want the genuine 500 alone", n, total)
	}
}

// The integrator's key requests a transfer and nothing else: its command
// is applied, a fact under its own source is a foreign fact, a fact under
// the owner's source does not verify.
func TestIntegratorKeySignsOnlyCommands(t *testing.T) {
	g := originRig(t, false)
	cmd, err := events.New(context.Background(), "x", "billfn.transaction.requested", "acct", payment{1})
	if err != nil {
		t.Fatal(err)
	}
	cmd.SetSource(testenv.IntegratorSource)
	cmd = signedAs(testenv.IntegratorSource, cmd)
	if code, res := g.deliver(cmd); code != http.StatusOK || res.Processed != 1 {
		t.Fatalf("the integrator's transfer request: %d %+v, want applied", code, res)
	}
	own := signedAs(testenv.IntegratorSource, paymentFact(t, testenv.IntegratorSource, 9))
	if code, res := g.deliver(own); code != http.StatusOK || res.Parked != 1 {
		t.Errorf("a payment fact from the integrator's source: %d %+v, want parked", code, res)
	}
	if r := g.deadLetter(own); !strings.Contains(r, "only capture-payment") {
		t.Errorf("reason %q, want the foreign-source refusal", r)
	}
	claimed := signedAs(testenv.IntegratorSource, paymentFact(t, capturePayment, 9))
	if code, res := g.deliver(claimed); code != http.StatusOK || res.Parked != 1 {
		t.Errorf("a payment fact claiming capture-payment, signed by the integrator: %d %+v, want parked", code, res)
	}
	// A command signed by a key of another source does not verify either.
	stolen := cmd.Clone()
	stolen.SetID(uuid.NewString())
	stolen = signedAs(generateInv, stolen)
	if code, res := g.deliver(stolen); code != http.StatusOK || res.Parked != 1 {
		t.Errorf("a command under the integrator's source signed by generate-invoice: %d %+v, want parked", code, res)
	}
	if n, total := g.sum(); n != 1 || total != 1000000 {
		t.Fatalf("%d effects summing to %d, want the one transfer request", n, total)
	}
}

// Each signed attribute is covered: changing any of them after signing
// fails verification; extensions outside the proof (traceparent) do not.
func TestOriginProofCoversEverySignedAttribute(t *testing.T) {
	ks := testenv.OriginKeys()
	base := signedAs(capturePayment, paymentFact(t, capturePayment, 5))
	base.SetDataContentType(event.ApplicationJSON)
	base = signedAs(capturePayment, base)
	if err := ks.Verify(base); err != nil {
		t.Fatalf("control: %v", err)
	}
	for name, change := range map[string]func(*events.Event){
		"id":              func(e *events.Event) { e.SetID(uuid.NewString()) },
		"source":          func(e *events.Event) { e.SetSource(generateInv) },
		"type":            func(e *events.Event) { e.SetType("billfn.payment.failed") },
		"time":            func(e *events.Event) { e.SetTime(e.Time().Add(time.Nanosecond)) },
		"subject":         func(e *events.Event) { e.SetSubject("another") },
		"subject removed": func(e *events.Event) { e.SetSubject("") },
		"datacontenttype": func(e *events.Event) { e.SetDataContentType("text/json") },
		"data":            func(e *events.Event) { _ = e.SetData(event.ApplicationJSON, payment{6}) },
	} {
		ev := base.Clone()
		change(&ev)
		if err := ks.Verify(ev); !errors.Is(err, events.ErrBadOrigin) {
			t.Errorf("%s changed: %v, want ErrBadOrigin", name, err)
		}
	}
	ev := base.Clone()
	ev.SetExtension(events.TraceParentExt, events.NewTraceParent())
	if err := ks.Verify(ev); err != nil {
		t.Errorf("a new traceparent: %v, want the proof to hold", err)
	}
}

// The proof survives every delivery form: structured mode re-encoded,
// binary mode (ce-* headers, the data as the body) and batches.
func TestOriginProofSurvivesEveryDeliveryForm(t *testing.T) {
	g := originRig(t, true)
	one := signedAs(capturePayment, paymentFact(t, capturePayment, 1))
	// Structured, with the data spelled with spaces: the bytes as sent.
	raw := `{"specversion":"1.0","id":"` + uuid.NewString() + `","source":"` + capturePayment +
		`","type":"billfn.payment.captured","time":"2026-12-02T23:00:00.5+01:00","datacontenttype":"application/json",` +
		`"data":{ "amount" : 2 }}`
	spaced, err := events.Unmarshal([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	spaced = signedAs(capturePayment, spaced)
	b := structured(t, spaced)
	if code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeStructured}}), b); code != 200 || res.Processed != 1 {
		t.Fatalf("structured: %d %+v", code, res)
	}
	// Binary mode.
	bin := signedAs(capturePayment, paymentFact(t, capturePayment, 4))
	h := http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {bin.ID()}, "Ce-Source": {bin.Source()},
		"Ce-Type": {bin.Type()}, "Ce-Subject": {bin.Subject()}, "Ce-Time": {bin.Time().Format(time.RFC3339Nano)},
		"Ce-Originsig": {bin.Extensions()[events.OriginSigExt].(string)}, "Ce-Originkid": {bin.Extensions()[events.OriginKidExt].(string)}}
	bin.SetDataContentType("application/json")
	if code, res := g.send(g.signed(bin.Data(), h), bin.Data()); code != 200 || res.Processed != 1 {
		t.Fatalf("binary: %d %+v", code, res)
	}
	// A batch with one forged event: the rest applies.
	forged := paymentFact(t, capturePayment, 1000)
	evs := []events.Event{one, forged, signedAs(capturePayment, paymentFact(t, capturePayment, 8))}
	bb, _ := json.Marshal(evs)
	if code, res := g.send(g.signed(bb, http.Header{"Content-Type": {events.ContentTypeBatch}}), bb); code != 200 || res.Processed != 2 || res.Parked != 1 {
		t.Fatalf("batch: %d %+v, want 2 applied and the unsigned one parked", code, res)
	}
	if n, total := g.sum(); n != 4 || total != 15 {
		t.Fatalf("%d effects summing to %d, want 4 summing to 15", n, total)
	}
}

// Several keys per source (a rotation): events signed with either verify;
// after the old key is dropped, only the new one does.
func TestOriginKeyRotation(t *testing.T) {
	old := testenv.OriginSigner("old:" + capturePayment)
	next := testenv.OriginSigner(capturePayment)
	both, err := events.ParseOriginKeys("# rotating\n"+old.PublicLine(capturePayment)+"\n"+next.PublicLine(capturePayment)+"\n", "test")
	if err != nil {
		t.Fatal(err)
	}
	a, b := paymentFact(t, capturePayment, 1), paymentFact(t, capturePayment, 2)
	old.Sign(&a)
	next.Sign(&b)
	for _, ev := range []events.Event{a, b} {
		if err := both.Verify(ev); err != nil {
			t.Errorf("during the rotation: %v", err)
		}
	}
	newOnly, err := events.ParseOriginKeys(next.PublicLine(capturePayment), "test")
	if err != nil {
		t.Fatal(err)
	}
	both.Replace(newOnly)
	if err := both.Verify(a); !errors.Is(err, events.ErrBadOrigin) {
		t.Errorf("the retired key still verifies: %v", err)
	}
	if err := both.Verify(b); err != nil {
		t.Errorf("the new key: %v", err)
	}
	// Through a receiver: the two keys in one deployment.
	g := originRig(t, false)
	g.rc.Origins.Add(capturePayment, old.Public())
	a.SetID(uuid.NewString())
	old.Sign(&a)
	if code, res := g.deliver(a); code != 200 || res.Processed != 1 {
		t.Errorf("the old key through a receiver: %d %+v", code, res)
	}
	if code, res := g.deliver(signedAs(capturePayment, paymentFact(t, capturePayment, 2))); code != 200 || res.Processed != 1 {
		t.Errorf("the new key through a receiver: %d %+v", code, res)
	}
}

// The canonical bytes are exactly what docs/events.md describes.
func TestOriginBytesAreTheDocumentedEncoding(t *testing.T) {
	ev := event.New()
	ev.SetID("e1")
	ev.SetSource("/functions/capture-payment")
	ev.SetType("billfn.payment.captured")
	ev.SetTime(time.Date(2026, 12, 2, 23, 48, 57, 120000000, time.FixedZone("CET", 3600)))
	if err := ev.SetData(event.ApplicationJSON, json.RawMessage(`{"amount":5}`)); err != nil {
		t.Fatal(err)
	}
	want := "billfn-origin-v1\n" +
		"id 2\ne1\n" +
		"source 26\n/functions/capture-payment\n" +
		"type 23\nbillfn.payment.captured\n" +
		"time 23\n2026-12-02T22:48:57.12Z\n" +
		"datacontenttype 16\napplication/json\n" +
		"subject 0\n\n" +
		"data 12\n{\"amount\":5}\n"
	if got := string(events.OriginBytes(ev)); got != want {
		t.Errorf("OriginBytes:\n%q\nwant\n%q", got, want)
	}
	s := testenv.OriginSigner(capturePayment)
	s.Sign(&ev)
	sig, _ := base64.RawURLEncoding.DecodeString(ev.Extensions()[events.OriginSigExt].(string))
	if !ed25519.Verify(s.Public(), []byte(want), sig) {
		t.Error("originsig is not the Ed25519 signature of the documented bytes")
	}
	// JSON data signs in the form encoding/json re-encodes it to.
	spaced := ev.Clone()
	if err := spaced.SetData(event.ApplicationJSON, json.RawMessage(`{ "amount" : 5, "memo": "<&>" }`)); err != nil {
		t.Fatal(err)
	}
	if got := string(events.OriginBytes(spaced)); !strings.HasSuffix(got, "data 40\n"+`{"amount":5,"memo":"\u003c\u0026\u003e"}`+"\n") {
		t.Errorf("JSON data is not signed compact and escaped: %q", got)
	}
	if kid := ev.Extensions()[events.OriginKidExt]; kid != events.KeyID(s.Public()) || len(events.KeyID(s.Public())) != 16 {
		t.Errorf("originkid %v", kid)
	}
}

func TestParseOriginKeysRefusesWhatIsNotAKey(t *testing.T) {
	good := testenv.OriginSigner(capturePayment).PublicLine(capturePayment)
	for name, text := range map[string]string{
		"empty":         "# nothing\n",
		"no key":        capturePayment,
		"short key":     capturePayment + " " + base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"not base64":    capturePayment + " !!!",
		"three fields":  good + " extra",
		"private bytes": capturePayment + " " + base64.StdEncoding.EncodeToString(make([]byte, 64)),
	} {
		if _, err := events.ParseOriginKeys(text, "test"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ks, err := events.ParseOriginKeys(good+";"+testenv.OriginSigner(generateInv).PublicLine(generateInv), "env")
	if err != nil || len(ks.Sources()) != 2 {
		t.Errorf("two entries separated by ';': %v %v", ks.Sources(), err)
	}
	// A receiver that trusts no keys parks everything.
	var none *events.OriginKeys
	if err := none.Verify(signedAs(capturePayment, paymentFact(t, capturePayment, 1))); !errors.Is(err, events.ErrBadOrigin) {
		t.Errorf("nil keys: %v", err)
	}
}

// The origin public keys follow their secret file: a key added to the
// file is trusted at the next look without a restart, a removed key no
// longer is, and a file that does not parse leaves the keys in force.
func TestOriginKeysFollowTheirSecretFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	fn := events.NewOriginSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	integrator := events.NewOriginSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize)))
	write := func(text string) {
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "origin-public-keys")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // past the watch interval
	}
	first := fn.PublicLine("/functions/capture-payment") + "\n"
	write(first)
	ks, err := events.WatchOriginKeys(first, "test", "origin-public-keys", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	signed := func(s *events.OriginSigner, source string) events.Event {
		ev := events.Must(events.New(context.Background(), "x", events.TypeTransactionRequested, "k", map[string]int{"amount": 1}))
		ev.SetSource(source)
		s.Sign(&ev)
		return ev
	}
	if err := ks.Verify(signed(integrator, "/integrators/acme")); err == nil {
		t.Fatal("an unknown integrator's event verified")
	}
	write(first + integrator.PublicLine("/integrators/acme") + "\n")
	if err := ks.Verify(signed(integrator, "/integrators/acme")); err != nil {
		t.Fatalf("the integrator added to the file: %v", err)
	}
	write("not a key file")
	if err := ks.Verify(signed(integrator, "/integrators/acme")); err != nil {
		t.Fatalf("a file that does not parse replaced the keys: %v", err)
	}
	write(first)
	if err := ks.Verify(signed(integrator, "/integrators/acme")); !errors.Is(err, events.ErrBadOrigin) {
		t.Fatalf("the integrator removed from the file: %v, want ErrBadOrigin", err)
	}
	if err := ks.Verify(signed(fn, "/functions/capture-payment")); err != nil {
		t.Fatalf("the function's key: %v", err)
	}
}

// The outbox relay signs the event's stored JSON in place (SignEncoded):
// what a consumer decodes from it is the event Sign would have made,
// and its proof verifies, whatever the stored spelling (spaces, member
// order, unescaped data); an encoding it cannot extend, or an event that
// already has a proof, is left to Sign.
func TestSignEncodedIsSignWithoutEncodingAgain(t *testing.T) {
	signer := testenv.OriginSigner(capturePayment)
	keys := testenv.OriginKeys()
	ev := paymentFact(t, capturePayment, 500)
	ev.SetSubject("pay_1")
	ev.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	raw, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	spelled := bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte(`":`), []byte(`" : `)), []byte(`,"`), []byte(` , "`))
	spelled = append(append([]byte(" \n"), spelled...), " \n"...)
	for name, in := range map[string][]byte{"as Marshal writes it": raw, "spelled otherwise": spelled} {
		out, ok := signer.SignEncoded(ev, in)
		if !ok {
			t.Fatalf("%s: not signed in place", name)
		}
		got, err := events.Unmarshal(out)
		if err != nil {
			t.Fatalf("%s: %s does not decode: %v", name, out, err)
		}
		if err := keys.Verify(got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := ev.Clone()
		signer.Sign(&want)
		wb, _ := events.Marshal(want)
		gb, _ := events.Marshal(got)
		if !bytes.Equal(wb, gb) {
			t.Fatalf("%s: decodes as\n%s\nnot as Sign makes it\n%s", name, gb, wb)
		}
	}
	if _, ok := signer.SignEncoded(ev, []byte(`[]`)); ok {
		t.Fatal("a JSON array was extended")
	}
	signedBefore := ev.Clone()
	signer.Sign(&signedBefore)
	if _, ok := signer.SignEncoded(signedBefore, raw); ok {
		t.Fatal("an event with a proof got a second one")
	}
}

// EncodeLater then SignAll sign an event alone from the fields in hand
// (the outbox writes such rows and relays them without decoding them): the
// payload decodes to an event whose proof verifies, and is the proof Sign
// gives that event (Ed25519 is deterministic), whatever the data holds
// (characters encoding/json escapes, no data, no subject, a tracestate).
func TestEncodeLaterSignsWhatConsumersDecode(t *testing.T) {
	const pt = "process-transaction"
	signer := testenv.OriginSigner(events.Source(pt))
	keys := testenv.OriginKeys()
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	bal := int64(-7)
	cases := map[string]struct {
		subject, ts string
		data        any
	}{
		"a transfer":         {"acct-1", "", map[string]any{"id": uuid.NewString(), "amount": 2550, "from_balance": &bal}},
		"escaped characters": {"acct-2", "k=v", map[string]any{"note": "a \"q\" <tag> & \u2028 ünï \\ \t"}},
		"no data":            {"acct-3", "", nil},
		"no subject":         {"", "", []int{1, 2}},
		"a bare string":      {"acct-4", "", "<&>"},
	}
	for name, c := range cases {
		id, payload, msg, err := events.EncodeLater(tp, c.ts, pt, events.TypeTransactionPosted, c.subject, c.data)
		if err != nil {
			t.Fatal(err)
		}
		one := [][]byte{payload}
		signer.SignAll(one, [][]byte{msg})
		payload = one[0]
		ev, err := events.Unmarshal(payload)
		if err != nil {
			t.Fatalf("%s: %s does not decode: %v", name, payload, err)
		}
		if ev.ID() != id || ev.Subject() != c.subject {
			t.Fatalf("%s: decoded %s", name, ev)
		}
		if err := keys.Verify(ev); err != nil {
			t.Fatalf("%s: %v (%s)", name, err, payload)
		}
		resigned := ev.Clone()
		delete(resigned.Context.(*event.EventContextV1).Extensions, events.OriginSigExt)
		delete(resigned.Context.(*event.EventContextV1).Extensions, events.OriginKidExt)
		signer.Sign(&resigned)
		if resigned.Extensions()[events.OriginSigExt] != ev.Extensions()[events.OriginSigExt] ||
			ev.Extensions()[events.OriginKidExt] != signer.KeyID() {
			t.Fatalf("%s: the proof in the payload is not the one Sign gives the decoded event", name)
		}
		// The same event unsigned is EncodeIn's (same attributes, no proof).
		if _, plain, err := events.EncodeIn(tp, c.ts, pt, events.TypeTransactionPosted, c.subject, c.data); err != nil ||
			bytes.Contains(plain, []byte(events.OriginSigExt)) {
			t.Fatalf("%s: events.EncodeIn gave %s, %v", name, plain, err)
		}
	}
}
