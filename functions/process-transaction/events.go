package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

// eventPrincipal is who an event-requested transfer acts as: a trusted
// deliverer (Kafka ACLs guard who may produce), so any account may be named.
var eventPrincipal = auth.Principal{Subject: SystemUser, Role: auth.RoleService}

// opFor turns a billfn.transaction.requested event into an op. Its
// idempotency key is the event's (source, id): a redelivery replays.
func (s *service) opFor(ev events.Event) (*op, error) {
	var data requestedData
	if err := events.Decode(ev, &data); err != nil {
		return nil, err
	}
	if data.TransferID != "" {
		if !validID(data.TransferID) {
			return nil, events.Permanent(fmt.Errorf("transfer_id %q is not a UUID", data.TransferID))
		}
		if !validID(data.FromAccountID) || !validID(data.ToAccountID) {
			return nil, events.Permanent(fmt.Errorf("transfer %s: the event does not name both accounts by id", data.TransferID))
		}
		// Transfers and accounts are looked up by canonical, lower-case id.
		req := data.TransferRequest
		req.FromAccountID, req.ToAccountID = strings.ToLower(req.FromAccountID), strings.ToLower(req.ToAccountID)
		return &op{complete: strings.ToLower(data.TransferID), req: req, principal: eventPrincipal}, nil
	}
	req := data.TransferRequest
	if err := req.validate("", s.now()); err != nil {
		return nil, events.Permanent(err)
	}
	return &op{req: req, principal: eventPrincipal, scope: "event:" + ev.Source(), key: ev.ID(),
		hash: requestHash([]byte(ev.Type()), ev.Data()), id: newID()}, nil
}

// onRequested applies one billfn.transaction.requested event. A transfer a
// rule rejects is an outcome (stored, transaction.rejected emitted), not an
// error; an account that does not exist is permanent (the event is parked).
func (s *service) onRequested(ctx context.Context, ev events.Event) error {
	o, err := s.opFor(ev)
	if err != nil {
		return err
	}
	if err := s.commit.submit(ctx, &unit{ops: []*op{o}}); err != nil {
		return err
	}
	return classify(o.res.err)
}

// onRequestedBatch applies a batch delivery in one group commit.
func (s *service) onRequestedBatch(ctx context.Context, evs []events.Event) error {
	u := &unit{}
	for _, ev := range evs {
		if ev.Type() != typeRequested {
			if err := s.onHoldResolve(ctx, ev); err != nil {
				return err
			}
			continue
		}
		o, err := s.opFor(ev)
		if err != nil {
			return err // permanent: the receiver retries one by one and parks this one
		}
		u.ops = append(u.ops, o)
	}
	if err := s.commit.submit(ctx, u); err != nil {
		return err
	}
	var permanent error
	for _, o := range u.ops {
		if err := classify(o.res.err); err != nil {
			if !events.IsPermanent(err) {
				return err
			}
			permanent = err
		}
	}
	return permanent
}

// classify turns an op's outcome into the event handler's answer: a
// rejection was decided and recorded (nil); other problems are permanent
// (4xx: parked) or retryable (5xx), as events.IsPermanent classifies them.
func classify(err error) error {
	var pe *problem.Error
	if errors.As(err, &pe) && pe.Extra["transfer_id"] != nil {
		return nil
	}
	return err
}

// tick is the schedule's periodic work; every part is idempotent.
func (s *service) tick(ctx context.Context) error {
	accounts, err := s.store.expireHolds(ctx, s.now())
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

// Hold resolutions requested by events: capture-payment reserves a
// refund's amount with a hold before it asks the gateway, and resolves the
// hold by the gateway's answer through its outbox.
const (
	typeRequested            = "billfn.transaction.requested"
	typeHoldCaptureRequested = "billfn.hold.capture_requested"
	typeHoldVoidRequested    = "billfn.hold.void_requested"
	// holdResolver is the one source allowed to resolve holds by event.
	holdResolver = "capture-payment"
)

// holdResolution is the data of billfn.hold.capture_requested and
// billfn.hold.void_requested.
type holdResolution struct {
	TransferID string `json:"transfer_id"`
	Amount     int64  `json:"amount"` // capture only; 0 = the whole hold
}

// onHoldResolve captures or voids a hold. It is idempotent by the hold's
// state: a hold already resolved the requested way is a duplicate; one
// resolved otherwise (expired, or the other way) is permanent (parked for
// an operator: the books and the gateway disagree).
func (s *service) onHoldResolve(ctx context.Context, ev events.Event) error {
	if ev.Source() != events.Source(holdResolver) {
		return events.Permanent(fmt.Errorf("%s from %q: holds are resolved by event only for %s", ev.Type(), ev.Source(), holdResolver))
	}
	var d holdResolution
	if err := events.Decode(ev, &d); err != nil {
		return err
	}
	if !validID(d.TransferID) || d.Amount < 0 {
		return events.Permanent(fmt.Errorf("%s: transfer_id %q / amount %d", ev.Type(), d.TransferID, d.Amount))
	}
	want := TransferCaptured
	if ev.Type() == typeHoldVoidRequested {
		want, d.Amount = TransferVoided, 0
	}
	var t *Transfer
	err := postgres.Tx(ctx, s.d.Pool, func(tx pgx.Tx) error {
		var err error
		if t, err = s.store.transfer(ctx, tx, strings.ToLower(d.TransferID), true); err != nil {
			return err
		}
		if t.Status == want {
			return errAlreadyResolved
		}
		amount := d.Amount
		if want == TransferCaptured && amount == 0 {
			amount = t.Amount
		}
		return s.store.resolveHold(ctx, tx, t, amount, want, s.now().UTC().Truncate(time.Microsecond))
	})
	if errors.Is(err, errAlreadyResolved) {
		return nil
	}
	var pe *problem.Error
	if errors.As(err, &pe) && pe.Status() < 500 {
		return events.Permanent(err)
	}
	if err != nil {
		return err
	}
	s.changed([]string{t.FromAccountID, t.ToAccountID})
	return nil
}

var errAlreadyResolved = errors.New("hold already resolved")
