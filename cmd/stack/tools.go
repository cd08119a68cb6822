package main

import (
	"context"
	"io"

	"github.com/billfn/billfn/shared/mailpit"
	"github.com/billfn/billfn/shared/testenv"
)

// tools finds or builds the programs make run and the tests use, each
// outside billfn's go.mod at its pinned version: stripe-mock, Mailpit and
// Jaeger. make test runs it first (make tools), so a fresh machine pays
// the builds once, before any test's timeout starts counting.
func tools(ctx context.Context, out io.Writer) error {
	log := &logger{out: out, width: len("tools")}
	p, err := findStripeMock(ctx, log)
	if err != nil {
		return err
	}
	log.printf("tools", "stripe-mock %s: %s", stripeMockVersion, p)
	if p, err = mailpit.Find(ctx, out); err != nil {
		return err
	}
	log.printf("tools", "mailpit %s: %s", mailpit.Version, p)
	if p, err = testenv.JaegerBinary(ctx, func(f string, a ...any) { log.printf("tools", f, a...) }); err != nil {
		return err
	}
	log.printf("tools", "jaeger %s: %s", testenv.JaegerVersion, p)
	return nil
}
