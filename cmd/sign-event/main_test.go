package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/events"
)

// keys writes an integrator and a function key pair and the public keys
// file into a temporary secrets directory.
func keys(t *testing.T) (dir string, ks *events.OriginKeys) {
	t.Helper()
	dir = t.TempDir()
	var public strings.Builder
	for name, source := range map[string]string{"origin-key-integrator": "/integrators/local", "origin-key-capture-payment": "/functions/capture-payment"} {
		priv, line, err := events.GenerateOriginKey(source)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), []byte(priv), 0o600)
		public.WriteString(line + "\n")
	}
	os.WriteFile(filepath.Join(dir, "origin-public-keys"), []byte(public.String()), 0o600)
	ks, err := events.ParseOriginKeys(public.String(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return dir, ks
}

const request = `{"specversion":"1.0","id":"r1","type":"billfn.transaction.requested","datacontenttype":"application/json",
 "data":{"from_account_number":"SYS-EXTERNAL-USD","to_account_id":"a","amount":500,"currency":"USD"}}`

func sign(t *testing.T, dir string, in string, args ...string) (events.Event, error) {
	t.Helper()
	var out bytes.Buffer
	args = append([]string{"-public-keys", filepath.Join(dir, "origin-public-keys")}, args...)
	if !strings.Contains(strings.Join(args, " "), "-key ") {
		args = append(args, "-key", filepath.Join(dir, "origin-key-integrator"))
	}
	if err := run(args, strings.NewReader(in), &out); err != nil {
		return events.Event{}, err
	}
	if bytes.Count(out.Bytes(), []byte("\n")) != 1 {
		t.Errorf("the output is not one line: %q", out.String())
	}
	return events.Unmarshal(out.Bytes())
}

func TestSignsAsTheIntegratorByDefault(t *testing.T) {
	dir, ks := keys(t)
	ev, err := sign(t, dir, request)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Source() != "/integrators/local" {
		t.Errorf("source %q, want the integrator's filled in", ev.Source())
	}
	if err := ks.Verify(ev); err != nil {
		t.Errorf("the signed event does not verify: %v", err)
	}
	if !events.AllowedSource(ev.Type(), ev.Source()) {
		t.Error("the integrator's transfer request is not allowed")
	}
}

func TestSignsAsAnotherPrincipalWithKey(t *testing.T) {
	dir, ks := keys(t)
	fact := `{"specversion":"1.0","id":"p1","source":"/functions/capture-payment","type":"billfn.payment.captured","data":{"amount":1}}`
	ev, err := sign(t, dir, fact, "-key", filepath.Join(dir, "origin-key-capture-payment"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Verify(ev); err != nil {
		t.Errorf("capture-payment's fact: %v", err)
	}
	// The integrator's key refuses to sign it; forced, it does not verify.
	if _, err := sign(t, dir, fact); err == nil || !strings.Contains(err.Error(), "park") {
		t.Errorf("the integrator signing capture-payment's fact: %v, want a refusal", err)
	}
	forced, err := sign(t, dir, fact, "-force")
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Verify(forced); err == nil {
		t.Error("a fact forced under another source's name verifies")
	}
}

func TestRefusesWhatIsNoEvent(t *testing.T) {
	dir, _ := keys(t)
	for _, in := range []string{"", "not json", `{"id":"x"}`} {
		if _, err := sign(t, dir, in); err == nil {
			t.Errorf("%q signed", in)
		}
	}
	if _, err := sign(t, dir, request, "-key", filepath.Join(dir, "missing")); err == nil {
		t.Error("signed without a key")
	}
}
