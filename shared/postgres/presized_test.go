package postgres

import (
	"bytes"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// The wrapper reserves the whole statement's size before the first
// argument encodes, whatever that argument's type, each type with its own
// memoized plan.
func TestPresizedReservesTheStatementsSizeInTheBuffer(t *testing.T) {
	m := pgtype.NewMap()
	presizeOn(m)
	ids := []string{strings.Repeat("a", 36), strings.Repeat("b", 36)}
	payloads := [][]byte{make([]byte, 5000), make([]byte, 7000)}
	for _, c := range []struct {
		oid  uint32
		args []any
	}{
		{pgtype.TextOID, Presized("billfn.process-transaction", ids, payloads)},
		{pgtype.TextArrayOID, Presized(ids, payloads, "billfn.process-transaction")},
	} {
		args, oid := c.args, c.oid
		want := EncodedSize(args[1:]...)
		buf, err := m.Encode(oid, pgtype.TextFormatCode, args[0], make([]byte, 0, 256))
		if err != nil {
			t.Fatal(err)
		}
		if cap(buf) < want {
			t.Errorf("first argument %T encoded into a buffer of %d bytes; want room for the %d after it", args[0], cap(buf), want)
		}
	}
	if n := EncodedSize(ids, payloads); n != 20+2*(4+36)+20+4+5000+4+7000 {
		t.Errorf("EncodedSize = %d", n)
	}
	// ReserveFor's message writes no byte: it only grows the buffer.
	if buf, err := reservation(12000).Encode(make([]byte, 3, 1024)); err != nil || len(buf) != 3 || cap(buf) < 12003 {
		t.Errorf("reservation encoded into len %d cap %d, %v; want len 3, cap ≥ 12003", len(buf), cap(buf), err)
	}
}

// BenchmarkEncodeGroupWrite encodes the parameters of a group write of a
// thousand transfers and their events (about the shape and size of
// process-transaction's writeSQL) as pgx does before sending them, and
// their Bind message into a connection's write buffer as it is after
// every large message (1 kB), plain and presized (Presized, ReserveFor):
// go test -run - -bench EncodeGroupWrite -benchmem ./shared/postgres.
func BenchmarkEncodeGroupWrite(b *testing.B) {
	const n = 1000
	ids, texts := make([]string, n), make([]string, n)
	amounts := make([]int64, n)
	payloads := make([][]byte, n)
	for i := range n {
		ids[i] = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
		texts[i] = "transfer for invoice 2026-12 of account 42"
		amounts[i] = int64(i) * 100
		payloads[i] = bytes.Repeat([]byte{'x'}, 800)
	}
	args := []any{"billfn.process-transaction", ids, ids, ids, amounts, texts, texts, amounts, amounts, payloads}
	oids := []uint32{pgtype.TextOID, pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.Int8ArrayOID,
		pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.Int8ArrayOID, pgtype.Int8ArrayOID, pgtype.ByteaArrayOID}
	sd := &pgconn.StatementDescription{ParamOIDs: oids}
	for _, c := range []struct {
		name string
		args []any
	}{{"plain", args}, {"presized", Presized(args[0].(string), args[1:]...)}} {
		b.Run(c.name, func(b *testing.B) {
			m := pgtype.NewMap()
			presizeOn(m)
			var eqb pgx.ExtendedQueryBuilder
			for b.Loop() {
				if err := eqb.Build(m, sd, c.args); err != nil {
					b.Fatal(err)
				}
				wbuf := make([]byte, 0, 1024)
				if p, ok := c.args[0].(unwrapper); ok {
					_, n := p.unwrap()
					wbuf, _ = reservation(n + 64 + 6*len(c.args)).Encode(wbuf)
				}
				bind := pgproto3.Bind{ParameterFormatCodes: eqb.ParamFormats, Parameters: eqb.ParamValues, ResultFormatCodes: eqb.ResultFormats}
				if _, err := bind.Encode(wbuf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(EncodedSize(args...)), "bytes/statement")
		})
	}
}
