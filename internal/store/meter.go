package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/hearthdev/hearth/internal/meter"
)

// AddRecord stores one invocation's meter record. The record is kept as
// JSON, so a field added to meter.Record needs no migration: older rows read
// with it zero (see meter.Record for what that means for each field).
func (s *Store) AddRecord(ctx context.Context, r meter.Record) error {
	r.Host = "" // the column says whose it is
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO meter_records (time, function, record) VALUES (?, ?, ?)`, r.Time.UnixMilli(), r.Function, string(b))
	return err
}

// Records returns the meter records of [since, until] (to the millisecond:
// callers that need less filter on Record.Time), of one function or
// ("" ) of all.
func (s *Store) Records(ctx context.Context, function string, since, until time.Time) ([]meter.Record, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT record, host FROM meter_records WHERE time >= ? AND time <= ? AND (? = '' OR function = ?) ORDER BY time`,
		since.UnixMilli(), until.UnixMilli(), function, function)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []meter.Record
	for rows.Next() {
		var b, host string
		var r meter.Record
		if err := rows.Scan(&b, &host); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(b), &r); err != nil {
			return nil, err
		}
		r.Host = host
		out = append(out, r)
	}
	return out, rows.Err()
}

// EnvStarted records the start of an environment's life.
func (s *Store) EnvStarted(ctx context.Context, id, function string, memoryMB int, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO meter_envs (id, function, memory_mb, start) VALUES (?, ?, ?, ?)`,
		id, function, memoryMB, at.UnixMilli())
	return err
}

// EnvEnded records the end of an environment's life, and of its
// suspension if it was suspended.
func (s *Store) EnvEnded(ctx context.Context, id string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE meter_envs SET end = ? WHERE id = ? AND end IS NULL`, at.UnixMilli(), id); err != nil {
		return err
	}
	return s.Resumed(ctx, id, at)
}

// Suspended records the start of a suspension.
func (s *Store) Suspended(ctx context.Context, id, function string, bytes int64, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meter_suspensions (env, function, bytes, start) VALUES (?, ?, ?, ?)`, id, function, bytes, at.UnixMilli())
	return err
}

// Resumed records the end of an environment's open suspension.
func (s *Store) Resumed(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE meter_suspensions SET end = ? WHERE env = ? AND end IS NULL`, at.UnixMilli(), id)
	return err
}

func msTime(ms sql.NullInt64) time.Time {
	if !ms.Valid {
		return time.Time{}
	}
	return time.UnixMilli(ms.Int64).UTC()
}

// Usage returns the environments' lives and suspensions that reach into
// [since, ∞).
func (s *Store) Usage(ctx context.Context, since time.Time) ([]meter.EnvSpan, []meter.Suspension, error) {
	var spans []meter.EnvSpan
	rows, err := s.db.QueryContext(ctx, `SELECT id, function, memory_mb, start, end, host FROM meter_envs WHERE end IS NULL OR end >= ?`, since.UnixMilli())
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var sp meter.EnvSpan
		var start int64
		var end sql.NullInt64
		if err := rows.Scan(&sp.EnvID, &sp.Function, &sp.MemoryMB, &start, &end, &sp.Host); err != nil {
			rows.Close()
			return nil, nil, err
		}
		sp.Start, sp.End = time.UnixMilli(start).UTC(), msTime(end)
		spans = append(spans, sp)
	}
	rows.Close()
	var susp []meter.Suspension
	rows, err = s.db.QueryContext(ctx, `SELECT env, function, bytes, start, end, host FROM meter_suspensions WHERE end IS NULL OR end >= ?`, since.UnixMilli())
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var su meter.Suspension
		var start int64
		var end sql.NullInt64
		if err := rows.Scan(&su.EnvID, &su.Function, &su.Bytes, &start, &end, &su.Host); err != nil {
			return nil, nil, err
		}
		su.Start, su.End = time.UnixMilli(start).UTC(), msTime(end)
		susp = append(susp, su)
	}
	return spans, susp, rows.Err()
}
