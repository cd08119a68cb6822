package store

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/capture-payment/payments"
)

// PaymentsNamed reads, in one query on the pool and without locking, the
// payments names name (by id, or by gateway object): the receiver's Wanted
// test of a delivery's gateway updates. A payment may come twice (named
// both ways): the caller's maps keep one.
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
	// Two index look-ups, not one WHERE with OR: that is a sequential scan
	// (and, at its enable_seqscan-off cost, a JIT compilation per call).
	rows, err := s.pool.Query(ctx, `SELECT `+paymentCols+` FROM payments WHERE id = ANY($1::uuid[])
		UNION ALL
		SELECT `+prefixed("p.", paymentCols)+` FROM unnest($2::text[], $3::text[]) AS t(g, o)
			JOIN payments p ON p.gateway = t.g AND p.gateway_payment_id = t.o AND p.gateway_payment_id IS NOT NULL`,
		idList, gateways, objects)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*payments.Payment, error) { return scanPayment(r) })
}

// prefixed qualifies each column of a comma-separated list with prefix.
func prefixed(prefix, cols string) string {
	fields := strings.Split(cols, ",")
	for i, f := range fields {
		fields[i] = prefix + strings.TrimSpace(f)
	}
	return strings.Join(fields, ", ")
}
