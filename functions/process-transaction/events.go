package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
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
