package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/capture-payment/payments"
)

// PaymentsNamed reads, in one query on the pool and without locking, the
// payments names name (by id, or by gateway object): the receiver's Wanted
// test of a delivery's gateway updates. A payment named twice is read once.
func (s *Store) PaymentsNamed(ctx context.Context, names []payments.PaymentName) ([]*payments.Payment, error) {
	var idList, gateways, objects []string
	for _, n := range names {
		if n.ID != "" {
			idList = append(idList, n.ID)
		} else {
			gateways, objects = append(gateways, n.Gateway), append(objects, n.Object)
		}
	}
	if len(idList)+len(objects) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+paymentCols+` FROM payments WHERE id = ANY($1::uuid[])
		OR (gateway, gateway_payment_id) IN (SELECT g, o FROM unnest($2::text[], $3::text[]) AS t(g, o))`, idList, gateways, objects)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*payments.Payment, error) { return scanPayment(r) })
}
