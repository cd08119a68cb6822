// Command sign-event adds an origin proof to a CloudEvent: it reads one
// structured-mode event (JSON) on standard input and prints it, on one line,
// with the originkid and originsig extension attributes of the key it signs
// with (docs/events.md "Origin proof"). By default it signs as the local
// stack's outside integrator, with bin/run/secrets/origin-key-integrator,
// which make run generates on its first start:
//
//	echo '{"specversion":"1.0","id":"…","type":"billfn.transaction.requested",…}' |
//	  go run ./cmd/sign-event |
//	  kcat -F bin/run/integrator.properties -P -t transaction-events -H content-type=application/cloudevents+json
//
// An event without a source gets the key's source (found in the public keys
// file, bin/run/secrets/origin-public-keys); an event naming another source
// is refused, since no consumer would accept it (-force signs it anyway, to
// watch a consumer park it). -key signs as another principal (a function's
// origin-key-<name>, a real integrator's key file: PEM PKCS#8 Ed25519).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/billfn/billfn/shared/events"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sign-event:", err)
		os.Exit(1)
	}
}

func runDir() string {
	if d := os.Getenv("BILLFN_RUN_DIR"); d != "" {
		return d
	}
	return filepath.Join("bin", "run")
}

func run(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("sign-event", flag.ContinueOnError)
	secrets := filepath.Join(runDir(), "secrets")
	key := fs.String("key", filepath.Join(secrets, "origin-key-integrator"), "the private key to sign with (PEM PKCS#8 Ed25519)")
	public := fs.String("public-keys", filepath.Join(secrets, "origin-public-keys"), "the origin public keys file that names each key's source")
	force := fs.Bool("force", false, "sign even when the event names a source the key does not belong to (its consumers will park it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pemBytes, err := os.ReadFile(*key)
	if err != nil {
		return fmt.Errorf("the signing key: %w (make run generates the local ones)", err)
	}
	signer, err := events.ParseOriginSigner(pemBytes)
	if err != nil {
		return fmt.Errorf("%s: %w", *key, err)
	}
	source := ""
	if b, err := os.ReadFile(*public); err == nil {
		ks, err := events.ParseOriginKeys(string(b), *public)
		if err != nil {
			return err
		}
		for _, s := range ks.Sources() {
			if ks.Holds(s, signer.Public()) {
				source = s
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	raw, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	raw = bytes.TrimSpace(raw)
	if source != "" && !bytes.Contains(raw, []byte(`"source"`)) {
		// Fill in the key's source before the event is validated.
		raw = append([]byte(`{"source":`+fmt.Sprintf("%q", source)+`,`), bytes.TrimPrefix(raw, []byte("{"))...)
	}
	ev, err := events.Unmarshal(raw)
	if err != nil {
		return fmt.Errorf("standard input is not a structured CloudEvent: %w", err)
	}
	switch {
	case source == "" && !*force:
		return fmt.Errorf("%s names no source for the key %s (kid %s); -force signs anyway", *public, *key, signer.KeyID())
	case source != "" && ev.Source() != source && !*force:
		return fmt.Errorf("the key %s signs for %s, the event says source %q: consumers would park it (-force signs anyway)",
			*key, source, ev.Source())
	}
	signer.Sign(&ev)
	b, err := events.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}
