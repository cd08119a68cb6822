package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/cmd/internal/gateway"
)

// pgQueue is the gateway's durable /async-function queue: the table
// gateway_async_calls of the stack's database (migration 00090).
type pgQueue struct {
	db    *pgxpool.Pool
	owner string // this stack's gateway
}

// newPGQueue opens the queue and takes over the calls an earlier gateway
// leased and did not deliver (one stack serves a database: a gateway that
// starts is the only one).
func newPGQueue(ctx context.Context, db *pgxpool.Pool) (*pgQueue, int64, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	q := &pgQueue{db: db, owner: hex.EncodeToString(b)}
	tag, err := db.Exec(ctx, `UPDATE gateway_async_calls SET leased_until = NULL, owner = '' WHERE owner <> $1`, q.owner)
	if err != nil {
		return nil, 0, err
	}
	var waiting int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM gateway_async_calls`).Scan(&waiting); err != nil {
		return nil, 0, err
	}
	_ = tag
	return q, waiting, nil
}

func (q *pgQueue) Put(ctx context.Context, c gateway.QueuedCall) error {
	h, err := json.Marshal(c.Header)
	if err != nil {
		return err
	}
	_, err = q.db.Exec(ctx, `INSERT INTO gateway_async_calls
		(call_id, function, method, path, raw_path, query, header, body, callback, accepted_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		c.CallID, c.Function, c.Method, c.Path, c.RawPath, c.Query, h, c.Body, c.Callback, c.Accepted)
	return err
}

func (q *pgQueue) Claim(ctx context.Context, n int, lease time.Duration) ([]gateway.QueuedCall, error) {
	rows, err := q.db.Query(ctx, `UPDATE gateway_async_calls SET owner = $1, leased_until = now() + $2::interval
		WHERE id IN (SELECT id FROM gateway_async_calls WHERE leased_until IS NULL OR leased_until < now()
		             ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING id, call_id, function, method, path, raw_path, query, header, body, callback, accepted_at`,
		q.owner, lease.String(), n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []gateway.QueuedCall
	for rows.Next() {
		var c gateway.QueuedCall
		var h []byte
		if err := rows.Scan(&c.ID, &c.CallID, &c.Function, &c.Method, &c.Path, &c.RawPath, &c.Query, &h, &c.Body, &c.Callback, &c.Accepted); err != nil {
			return nil, err
		}
		c.Header = http.Header{}
		if err := json.Unmarshal(h, &c.Header); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (q *pgQueue) Done(ctx context.Context, id int64) error {
	_, err := q.db.Exec(ctx, `DELETE FROM gateway_async_calls WHERE id = $1`, id)
	return err
}
