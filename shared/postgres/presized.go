package postgres

import (
	"database/sql/driver"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Presized returns a bulk statement's arguments, first and rest, with the first wrapped
// so that pgx encodes all of them into one buffer allocated at once, at
// about their encoded size (EncodedSize).
//
// pgx encodes a statement's parameters one after the other into one
// buffer that starts each statement at 256 bytes and grows by append: a
// group write over arrays of a thousand transfers and their events (about
// 1.5 MB) grows it some forty times, each growth a new allocation and a
// copy of everything before it, on fresh pages the kernel must fault in.
// Measured in the batch-transfers bench (2026-12-07, on 2 cores):
// process-transaction spent 22 % of its CPU in runtime.growslice under
// pgx's parameter encoding and its Bind message. With the first argument
// presized, and the connection's write buffer reserved (ReserveFor), each
// is allocated once: BenchmarkEncodeGroupWrite, a group of 1000 transfers,
// 4.7 ms and 7.4 MB allocated plain, 0.64 ms and 2.2 MB presized (go test
// -run - -bench EncodeGroupWrite -benchmem ./shared/postgres, 2026-12-07,
// this project's 2-core machine).
//
// The wrapping takes effect on the connections of the pools Open and
// OpenWith return (their AfterConnect installs it); on any other
// connection the wrapped argument encodes as itself (a driver.Valuer), so
// a statement is correct either way.
func Presized[T any](first T, rest ...any) []any {
	out := make([]any, 0, 1+len(rest))
	out = append(out, presized[T]{v: first, n: EncodedSize(first) + EncodedSize(rest...)})
	return append(out, rest...)
}

// ReserveFor makes room in c's write buffer for the Bind message that will
// carry args (as Presized returns them), which pgx otherwise grows by
// append as it copies the encoded parameters into it: a second chain of
// growths as long as the first (its buffer restarts at 1 kB after every
// larger message). Call it on the connection that sends the statement,
// right before it is queued or sent: the room is kept until a message
// larger than 1 kB has been written. Arguments that Presized did not
// return reserve nothing.
func ReserveFor(c *pgx.Conn, args []any) {
	if len(args) == 0 {
		return
	}
	if p, ok := args[0].(unwrapper); ok {
		_, n := p.unwrap()
		// The Bind message adds a length and a format code per parameter
		// and its own header to the parameters' bytes.
		c.PgConn().Frontend().Send(reservation(n + 64 + 6*len(args)))
	}
}

// reservation is a frontend message of no bytes whose encoding grows the
// buffer it is appended to (pgproto3.Frontend.Send encodes a message into
// the connection's write buffer).
type reservation int

func (reservation) Frontend() {}

func (reservation) Decode([]byte) error {
	return errors.New("postgres: a reservation is never received")
}

func (r reservation) Encode(dst []byte) ([]byte, error) { return slices.Grow(dst, int(r)), nil }

// EncodedSize is about the size of args in PostgreSQL's binary format, as
// pgx encodes them: each array's 20-byte header (one dimension), and for
// each element its 4-byte length and its bytes (a NULL one, the length
// alone). Types it does not know count 16 bytes: the estimate only sizes
// a buffer, which grows past it if it must.
func EncodedSize(args ...any) int {
	n := 0
	for _, a := range args {
		switch v := a.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		case []string:
			n += 20 + 4*len(v)
			for _, s := range v {
				n += len(s)
			}
		case []*string:
			n += 20 + 4*len(v)
			for _, s := range v {
				if s != nil {
					n += len(*s)
				}
			}
		case [][]byte:
			n += 20 + 4*len(v)
			for _, b := range v {
				n += len(b)
			}
		case []int64:
			n += 20 + 12*len(v)
		case []bool:
			n += 20 + 5*len(v)
		case []time.Time:
			n += 20 + 12*len(v)
		case []*time.Time:
			n += 20 + 12*len(v)
		default:
			n += 16
		}
	}
	return n
}

// presized is an argument that reserves n bytes of the statement's
// parameter buffer before it encodes itself. Generic, so that each type of
// first argument is a type of its own: pgx memoizes a plan per type, and
// the plan it wraps is the one for T.
type presized[T any] struct {
	v T
	n int
}

func (p presized[T]) unwrap() (any, int) { return p.v, p.n }

// Value makes a presized argument encode as its value on a connection
// whose type map lacks the wrapper (driver.Valuer is pgx's last resort).
func (p presized[T]) Value() (driver.Value, error) { return p.v, nil }

// unwrapper is every presized[T].
type unwrapper interface{ unwrap() (any, int) }

// presizeOn installs the presized wrapper on a connection's type map,
// first: pgx tries its wrappers in order, and its own struct wrapper
// would otherwise take a presized for a composite value.
func presizeOn(m *pgtype.Map) {
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapPresized}, m.TryWrapEncodePlanFuncs...)
}

func tryWrapPresized(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	if p, ok := value.(unwrapper); ok {
		v, _ := p.unwrap()
		return &presizedPlan{}, v, true
	}
	return nil, nil, false
}

// presizedPlan grows the buffer, then encodes the value with the plan pgx
// chose for it. The plan is memoized per type, so the size travels with
// the value.
type presizedPlan struct{ next pgtype.EncodePlan }

func (p *presizedPlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *presizedPlan) Encode(value any, buf []byte) ([]byte, error) {
	v, n := value.(unwrapper).unwrap()
	return p.next.Encode(v, slices.Grow(buf, n))
}
