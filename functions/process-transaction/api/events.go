package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/functions/process-transaction/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/problem"
)

// HoldResolver is the one source allowed to resolve holds by event:
// capture-payment reserves a refund's amount with a hold before it asks
// the gateway, and resolves the hold by the gateway's answer through
// its outbox.
const HoldResolver = "capture-payment"

// Name is the function's name; its own events' source is events.Source(Name).
const Name = "process-transaction"

// KindStater is the one source whose transfer requests by event may name
// a billfn kind in their metadata (events.TransferKinds): a payment's
// capture, a refund, an invoice's settlement are capture-payment's facts,
// and consumers (aggregate-report's reconciliation) take them as such.
// An integrator may request transfers, not state those.
const KindStater = "capture-payment"

// eventCaller is who an event-requested transfer acts as: a trusted
// deliverer (Kafka ACLs guard who may produce), so any account may be named.
var eventCaller = auth.Principal{Subject: ledger.SystemUser, Role: auth.RoleService}

// opFor turns a billfn.transaction.requested event into an op. Its
// idempotency key is the event's (source, id): a redelivery replays.
func (s *Service) opFor(ev events.Event) (*ledger.Op, error) {
	var data events.TransactionRequested
	if err := events.Decode(ev, &data); err != nil {
		return nil, err
	}
	if data.TransferID != "" {
		// Only the ledger's own event decides a transfer it accepted
		// (202): it names the transfer it stored and that transfer's
		// accounts. Anyone else's names what it likes.
		if !events.From(ev, Name) {
			return nil, events.Permanent(fmt.Errorf("transfer_id %q: only %s's own event decides a transfer it accepted, not %q's",
				data.TransferID, Name, events.SourceOf(ev)))
		}
		// Transfers and accounts are looked up by canonical, lower-case id.
		id, ok := ids.Canonical(data.TransferID)
		if !ok {
			return nil, events.Permanent(fmt.Errorf("transfer_id %q is not a UUID", data.TransferID))
		}
		req := ledger.TransferRequest(data.TransferRequest)
		from, okFrom := ids.Canonical(req.FromAccountID)
		to, okTo := ids.Canonical(req.ToAccountID)
		if !okFrom || !okTo {
			return nil, events.Permanent(fmt.Errorf("transfer %s: the event does not name both accounts by id", data.TransferID))
		}
		req.FromAccountID, req.ToAccountID = from, to
		o := &ledger.Op{Complete: id, Req: req, Caller: eventCaller}
		o.TraceParent, o.TraceState = events.TraceOf(ev)
		return o, nil
	}
	req := ledger.TransferRequest(data.TransferRequest)
	if err := req.Validate("", s.now(), eventCaller); err != nil {
		return nil, events.Permanent(err)
	}
	if req.ClaimsBillfnKind() && !events.From(ev, KindStater) {
		return nil, events.Permanent(fmt.Errorf("metadata/kind: a transfer of a kind billfn's own functions make (%s) is requested by event only by %s, not by %q",
			strings.Join(events.TransferKinds, ", "), KindStater, events.SourceOf(ev)))
	}
	o := &ledger.Op{Req: req, Caller: eventCaller, Scope: "event:" + events.SourceOf(ev), Key: ev.ID(),
		Hash: requestHash([]byte(ev.Type()), ev.Data()), ID: ids.New()}
	o.TraceParent, o.TraceState = events.TraceOf(ev)
	return o, nil
}

// onRequested applies one billfn.transaction.requested event. A transfer a
// rule rejects is an outcome (stored, transaction.rejected emitted), not an
// error; an account that does not exist is permanent (the event is parked).
func (s *Service) onRequested(ctx context.Context, ev events.Event) error {
	o, err := s.opFor(ev)
	if err != nil {
		return err
	}
	if tp := events.TraceParent(ctx); tp != "" {
		// The delivery's span of this event (a child of its producer's).
		o.TraceParent, o.TraceState = tp, events.TraceState(ctx)
	}
	if err := s.commit.Submit(ctx, &ledger.Unit{Ops: []*ledger.Op{o}}); err != nil {
		return err
	}
	return classify(o.Res.Err)
}

// onRequestedBatch applies a batch delivery in one group commit.
func (s *Service) onRequestedBatch(ctx context.Context, evs []events.Event) error {
	u := &ledger.Unit{}
	for _, ev := range evs {
		if ev.Type() != events.TypeTransactionRequested {
			if err := s.onHoldResolve(ctx, ev); err != nil {
				return err
			}
			continue
		}
		o, err := s.opFor(ev)
		if err != nil {
			return err // permanent: the receiver retries one by one and parks this one
		}
		u.Ops = append(u.Ops, o)
	}
	if err := s.commit.Submit(ctx, u); err != nil {
		return err
	}
	var permanent error
	for _, o := range u.Ops {
		if err := classify(o.Res.Err); err != nil {
			if !events.IsPermanentIn(problem.WithStatuses(ctx, Statuses), err) {
				return err
			}
			permanent = err
		}
	}
	return permanent
}

// classify turns an op's outcome into the event handler's answer: a
// rejection was decided and recorded (nil); an accepted transfer that does
// not exist is permanent; other problems are permanent (4xx: parked) or
// retryable (5xx), as events.IsPermanentIn classifies them by Statuses.
func classify(err error) error {
	switch {
	case ledger.IsRejection(err):
		return nil
	case errors.Is(err, ledger.ErrNoSuchTransfer), errors.Is(err, ledger.ErrOtherAccounts):
		return events.Permanent(err)
	}
	return err
}

// Tick is the schedule's periodic work; every part is idempotent.
func (s *Service) Tick(ctx context.Context) error {
	accounts, err := s.store.ExpireHolds(ctx, s.now())
	if len(accounts) > 0 {
		s.changed(accounts)
	}
	if err != nil {
		return err
	}
	if _, err := idempotency.Sweep(ctx, s.d.Pool); err != nil {
		slog.WarnContext(ctx, "idempotency sweep failed", "err", err.Error())
	}
	_, err = s.d.Publisher.Sweep(ctx)
	return err
}

// onHoldResolve captures or voids a hold. It is idempotent by the hold's
// state: a hold already resolved the requested way is a duplicate; one
// resolved otherwise (expired, or the other way) is permanent (parked for
// an operator: the books and the gateway disagree).
func (s *Service) onHoldResolve(ctx context.Context, ev events.Event) error {
	if !events.From(ev, HoldResolver) {
		return events.Permanent(fmt.Errorf("%s from %q: holds are resolved by event only for %s", ev.Type(), events.SourceOf(ev), HoldResolver))
	}
	var d events.HoldResolution
	if err := events.Decode(ev, &d); err != nil {
		return err
	}
	id, ok := ids.Canonical(d.TransferID)
	if !ok || d.Amount < 0 {
		return events.Permanent(fmt.Errorf("%s: transfer_id %q / amount %d", ev.Type(), d.TransferID, d.Amount))
	}
	want := ledger.TransferCaptured
	if ev.Type() == events.TypeHoldVoidRequested {
		want, d.Amount = ledger.TransferVoided, 0
	}
	t, err := s.store.UpdateHold(ctx, id, s.now().UTC().Truncate(time.Microsecond),
		func(t *ledger.Transfer) (store.Resolution, error) {
			if err := t.MayResolveByEvent(); err != nil {
				return store.Resolution{}, err
			}
			if t.Status == want {
				return store.Resolution{}, ledger.ErrAlreadyResolved
			}
			amount := d.Amount
			if want == ledger.TransferCaptured && amount == 0 {
				amount = t.Amount
			}
			return store.Resolution{Amount: amount, Status: want}, nil
		}, nil)
	if errors.Is(err, ledger.ErrAlreadyResolved) {
		return nil
	}
	if err != nil {
		if Statuses.Status(err) < 500 {
			return events.Permanent(err) // a rule said no: retrying changes nothing
		}
		return err
	}
	s.changed([]string{t.FromAccountID, t.ToAccountID})
	return nil
}
