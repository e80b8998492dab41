package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Tags returns a function's tags (empty, not nil, when it has none).
func (s *Store) Tags(ctx context.Context, function string) (map[string]string, error) {
	return tags(ctx, s.db, function)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func tags(ctx context.Context, q querier, function string) (map[string]string, error) {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM functions WHERE name = ?`, function).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("function %s: %w", function, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT key, value FROM tags WHERE function = ?`, function)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

// UpdateTags changes a function's tags with fn, atomically: fn gets the
// current tags and leaves them as they should be (or returns an error, and
// nothing changes).
func (s *Store) UpdateTags(ctx context.Context, function string, fn func(tags map[string]string) error) error {
	return s.write(ctx, "UpdateTags", func(w *writeTx) error {
		t, err := tags(ctx, w, function)
		if err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
		if _, err := w.ExecContext(ctx, sqlDeleteTags, function); err != nil {
			return err
		}
		for k, v := range t {
			if _, err := w.ExecContext(ctx, sqlInsertTag, function, k, v); err != nil {
				return err
			}
		}
		return nil
	})
}
