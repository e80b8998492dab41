package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The queues' table: each queue's configuration (its attributes, as the
// queue package encodes them) and the id that names its JetStream stream.
// The messages are in JetStream, not here. Created with the rest of the
// schema, IF NOT EXISTS.
const queueSchema = `
CREATE TABLE IF NOT EXISTS queues (
	name       TEXT PRIMARY KEY,
	id         TEXT NOT NULL UNIQUE,
	attributes TEXT NOT NULL,
	created    INTEGER NOT NULL,
	modified   INTEGER NOT NULL
);
`

// Queue is a queue's record.
type Queue struct {
	Name string
	// ID names the queue's stream; a queue made again under the same name
	// gets another, so that nothing of the old one (its receipt handles)
	// applies to the new one.
	ID         string
	Attributes string
	Created    time.Time
	Modified   time.Time
}

// CreateQueue adds a queue; a name taken is ErrExists.
func (s *Store) CreateQueue(ctx context.Context, q Queue) error {
	return s.write(ctx, "CreateQueue", func(w *writeTx) error {
		_, err := w.ExecContext(ctx, sqlInsertQueue, q.Name, q.ID, q.Attributes, q.Created.UnixMilli(), q.Modified.UnixMilli())
		if isUniqueViolation(err) {
			return fmt.Errorf("queue %s: %w", q.Name, ErrExists)
		}
		return err
	})
}

// Queue reads a queue; ErrNotFound if there is none of that name.
func (s *Store) Queue(ctx context.Context, name string) (Queue, error) {
	var q Queue
	var created, modified int64
	err := s.db.QueryRowContext(ctx, `SELECT name, id, attributes, created, modified FROM queues WHERE name = ?`, name).
		Scan(&q.Name, &q.ID, &q.Attributes, &created, &modified)
	if errors.Is(err, sql.ErrNoRows) {
		return q, fmt.Errorf("queue %s: %w", name, ErrNotFound)
	}
	q.Created, q.Modified = time.UnixMilli(created), time.UnixMilli(modified)
	return q, err
}

// Queues lists the queues by name.
func (s *Store) Queues(ctx context.Context) ([]Queue, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, id, attributes, created, modified FROM queues ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Queue
	for rows.Next() {
		var q Queue
		var created, modified int64
		if err := rows.Scan(&q.Name, &q.ID, &q.Attributes, &created, &modified); err != nil {
			return nil, err
		}
		q.Created, q.Modified = time.UnixMilli(created), time.UnixMilli(modified)
		out = append(out, q)
	}
	return out, rows.Err()
}

// UpdateQueue replaces a queue's attributes.
func (s *Store) UpdateQueue(ctx context.Context, name, attributes string, modified time.Time) error {
	return s.write(ctx, "UpdateQueue", func(w *writeTx) error {
		res, err := w.ExecContext(ctx, sqlUpdateQueue, attributes, modified.UnixMilli(), name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("queue %s: %w", name, ErrNotFound)
		}
		return nil
	})
}

// DeleteQueue removes a queue's record.
func (s *Store) DeleteQueue(ctx context.Context, name string) error {
	return s.write(ctx, "DeleteQueue", func(w *writeTx) error {
		res, err := w.ExecContext(ctx, sqlDeleteQueue, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("queue %s: %w", name, ErrNotFound)
		}
		return nil
	})
}
