package billing

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/postgres"
)

// Group commit of synchronous creations (POST /invoices): concurrent
// CreateInvoice calls are written together, in ONE transaction, as a
// batch is: one numbering statement per series, one INSERT of the
// invoices, one of their lines, one of the outbox rows per caller and
// one commit for all. Finalizations queue on their series' row lock until
// their transaction commits, so one at a time each paid a whole commit
// (its WAL flush) under the lock; grouped, the callers waiting meanwhile
// share the next one.
//
// There is no goroutine of its own: the first caller leads, runs the
// group of every call queued (its own first) and hands the lead to the
// first call that queued meanwhile, so no caller waits for more than the
// group before its own and the group it is in. Alone, a call costs what it
// did before (one transaction). Each caller is answered only after the
// commit holding its invoice, with its own outcome: a group that fails
// (one invoice breaks a rule, a statement fails) commits nothing and
// every call of it runs again alone, so a failing invoice fails only its
// caller. Each caller's events carry its own trace and its answer is
// recorded under its own Idempotency-Key, in the group's transaction.

// maxCreateGroup bounds the invoices of one grouped transaction.
const maxCreateGroup = 64

type createCall struct {
	ctx  context.Context
	d    *invoicing.InvoiceDraft
	now  time.Time
	done Answer
	err  error
	lead bool          // set (under createMu) when the call is handed the lead
	wake chan struct{} // the call's outcome is set, or it leads
}

// createGrouped queues c, leads the group commits when no one does, and
// returns c's outcome.
func (s *Service) createGrouped(c *createCall) error {
	s.createMu.Lock()
	s.createQueue = append(s.createQueue, c)
	if s.createBusy {
		s.createMu.Unlock()
		<-c.wake
		if !c.lead {
			return c.err
		}
	} else {
		s.createBusy = true
		s.createMu.Unlock()
	}
	// c leads: it is still queued, first, so the group it takes holds it.
	s.createMu.Lock()
	n := min(len(s.createQueue), maxCreateGroup)
	group := s.createQueue[:n:n]
	s.createQueue = append([]*createCall(nil), s.createQueue[n:]...)
	s.createMu.Unlock()

	s.commitCreates(group, c)

	s.createMu.Lock()
	if len(s.createQueue) > 0 {
		next := s.createQueue[0]
		next.lead = true
		s.createMu.Unlock()
		next.wake <- struct{}{}
	} else {
		s.createBusy = false
		s.createMu.Unlock()
	}
	return c.err
}

// commitCreates runs group, sets every call's outcome and wakes every
// call but the leader's.
func (s *Service) commitCreates(group []*createCall, leader *createCall) {
	defer func() {
		// A bug must cost the group its answer, not the process its life
		// nor its callers their wait.
		if v := recover(); v != nil {
			slog.Error("invoice group commit panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			for _, c := range group {
				c.err = fmt.Errorf("invoice group commit panicked: %v", v)
			}
		}
		for _, c := range group {
			if c != leader {
				c.wake <- struct{}{}
			}
		}
	}()
	if len(group) == 1 {
		group[0].err = s.createOne(group[0])
		return
	}
	// The drafts as parsed: a failed group leaves them resolved, numbered
	// and finalized, and each runs again from what its caller sent.
	saved := make([]invoicing.Invoice, len(group))
	for i, c := range group {
		saved[i] = *c.d.Inv
	}
	if err := s.createTogether(group); err == nil {
		return
	}
	for i, c := range group {
		*c.d.Inv = saved[i]
		c.err = s.createOne(c)
	}
}

// createOne is one call's transaction, as CreateInvoice always was.
func (s *Service) createOne(c *createCall) error {
	return s.store.Pipelined(c.ctx, func(tx Tx) error {
		if err := s.create(c.ctx, tx, []*invoicing.InvoiceDraft{c.d}, c.now); err != nil {
			return err
		}
		return complete(c.ctx, tx, c.done, c.d.Inv)
	})
}

// createTogether writes the calls of group in one transaction: the
// invoices resolved, numbered and inserted together, then each caller's
// events (with its trace) and answer (under its key).
func (s *Service) createTogether(group []*createCall) error {
	// The group's transaction outlives any one caller's context (each is
	// already detached from its client); the latest caller's time is the
	// group's, as a batch has one.
	now := group[0].now
	for _, c := range group[1:] {
		if c.now.After(now) {
			now = c.now
		}
	}
	ctx, cancel := postgres.Detached(group[0].ctx)
	defer cancel()
	return s.store.Pipelined(ctx, func(tx Tx) error {
		res := s.NewResolver(tx, now)
		invs := make([]*invoicing.Invoice, len(group))
		final := make([]bool, len(group))
		for i, c := range group {
			if err := res.Draft(c.ctx, c.d); err != nil {
				return err
			}
			invs[i], final[i] = c.d.Inv, c.d.AutoFinalize
		}
		msgs, err := s.PersistNew(ctx, tx, invs, final, now)
		if err != nil {
			return err
		}
		if err := res.Flush(ctx); err != nil {
			return err
		}
		// Every event of a creation is about its invoice (subject = its id),
		// and goes out with its caller's trace; all of them in one
		// statement, signed together.
		mine := make(map[string][]invoicing.Event, len(group))
		for _, m := range msgs {
			mine[m.Subject] = append(mine[m.Subject], m)
		}
		es := make([]Emission, len(group))
		for i, c := range group {
			es[i] = Emission{Ctx: c.ctx, Events: mine[c.d.Inv.ID]}
			delete(mine, c.d.Inv.ID)
		}
		if len(mine) > 0 {
			return fmt.Errorf("invoice group commit: events about no invoice of the group")
		}
		if err := tx.EmitAll(ctx, es...); err != nil {
			return err
		}
		for _, c := range group {
			if err := complete(c.ctx, tx, c.done, c.d.Inv); err != nil {
				return err
			}
		}
		return nil
	})
}

// QueuedCreates is how many creations wait for a group to take them.
func (s *Service) QueuedCreates() int {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	return len(s.createQueue)
}
