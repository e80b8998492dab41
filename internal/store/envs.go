package store

import (
	"context"
	"time"
)

// EnvRecord is an execution environment the daemon runs or has suspended,
// so that a restarted daemon can adopt or end it.
type EnvRecord struct {
	ID       string
	Function string
	Version  string
	Digest   string // of the code it runs
	Dir      string
	State    string
	PID      int
}

// PutEnv records an environment's current state.
func (s *Store) PutEnv(ctx context.Context, e EnvRecord) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO envs (id, function, version, digest, dir, state, pid, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET state = excluded.state, pid = excluded.pid, updated = excluded.updated`,
		e.ID, e.Function, e.Version, e.Digest, e.Dir, e.State, e.PID, time.Now().Unix())
	return err
}

// DeleteEnv forgets an environment.
func (s *Store) DeleteEnv(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM envs WHERE id = ?`, id)
	return err
}

// Envs lists every recorded environment.
func (s *Store) Envs(ctx context.Context) ([]EnvRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, function, version, digest, dir, state, pid FROM envs ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []EnvRecord
	for rows.Next() {
		var e EnvRecord
		if err := rows.Scan(&e.ID, &e.Function, &e.Version, &e.Digest, &e.Dir, &e.State, &e.PID); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
