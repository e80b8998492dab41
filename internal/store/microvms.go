package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/meter"
)

// The MicroVMs' tables: images, their versions (builds), the MicroVMs and
// their running periods (for the meter). Created with the rest of the
// schema, IF NOT EXISTS: a database an older Hearth made gains them at its
// next open, empty. A column added later goes in microvmMigrations.
const microvmSchema = `
CREATE TABLE IF NOT EXISTS microvm_images (
	name        TEXT PRIMARY KEY,
	description TEXT NOT NULL DEFAULT '',
	version_seq INTEGER NOT NULL,
	created     INTEGER NOT NULL,
	updated     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS microvm_image_versions (
	image        TEXT NOT NULL,
	version      INTEGER NOT NULL,
	input        TEXT NOT NULL,
	digest       TEXT NOT NULL DEFAULT '',
	state        TEXT NOT NULL,
	reason       TEXT NOT NULL DEFAULT '',
	template_dir TEXT NOT NULL DEFAULT '',
	created      INTEGER NOT NULL,
	built        INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (image, version)
);
CREATE TABLE IF NOT EXISTS microvms (
	id            TEXT PRIMARY KEY,
	client_token  TEXT NOT NULL DEFAULT '',
	input_hash    TEXT NOT NULL DEFAULT '',
	image         TEXT NOT NULL,
	version       INTEGER NOT NULL,
	state         TEXT NOT NULL,
	reason        TEXT NOT NULL DEFAULT '',
	env_dir       TEXT NOT NULL DEFAULT '',
	memory_mib    INTEGER NOT NULL,
	idle_policy   TEXT NOT NULL DEFAULT '',
	max_duration  INTEGER NOT NULL DEFAULT 0,
	started       INTEGER NOT NULL,
	state_since   INTEGER NOT NULL,
	last_activity INTEGER NOT NULL DEFAULT 0,
	terminated    INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS microvms_by_token ON microvms (client_token) WHERE client_token != '';
CREATE TABLE IF NOT EXISTS meter_microvm_runs (
	id        TEXT NOT NULL,
	name      TEXT NOT NULL,
	memory_mb INTEGER NOT NULL,
	start     INTEGER NOT NULL,
	end       INTEGER
);
CREATE INDEX IF NOT EXISTS meter_microvm_runs_by_id ON meter_microvm_runs (id);
`

// MicroVMImage is a MicroVM image's record; its versions are apart.
type MicroVMImage struct {
	Name        string
	Description string
	// LatestVersion is the last version number given: numbers are never
	// reused, even once a version is deleted.
	LatestVersion int
	Created       time.Time
	Updated       time.Time
}

// MicroVMImageVersion is one build of an image.
type MicroVMImageVersion struct {
	Image   string
	Version int
	// Input is the build's input, as the microvm package encodes it.
	Input       string
	Digest      string
	State       string
	Reason      string
	TemplateDir string
	Created     time.Time
	Built       time.Time // zero until the build ended
}

// MicroVM is a MicroVM's record.
type MicroVM struct {
	ID string
	// ClientToken and InputHash make RunMicrovm idempotent: a token is
	// given to one MicroVM, and the hash says which input it was run with.
	ClientToken string
	InputHash   string
	Image       string
	Version     int
	State       string
	Reason      string
	// EnvDir is the folder of its environment (sandbox.Open finds it
	// there after a restart).
	EnvDir    string
	MemoryMiB int
	// IdlePolicy is the policy as the microvm package encodes it; "" is
	// none.
	IdlePolicy   string
	MaxDuration  int // seconds; 0 is no cap
	Started      time.Time
	StateSince   time.Time
	LastActivity time.Time
	Terminated   time.Time
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func isUniqueViolation(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// CreateMicroVMImage records a new image with its first version (v's
// Version is set to 1). A name taken is ErrExists.
func (s *Store) CreateMicroVMImage(ctx context.Context, img MicroVMImage, v MicroVMImageVersion) (MicroVMImageVersion, error) {
	v.Image, v.Version = img.Name, 1
	err := s.write(ctx, "CreateMicroVMImage", func(w *writeTx) error {
		_, err := w.ExecContext(ctx, sqlInsertMicroVMImage, img.Name, img.Description, unixMs(img.Created), unixMs(img.Created))
		if isUniqueViolation(err) {
			return fmt.Errorf("microvm image %s: %w", img.Name, ErrExists)
		}
		if err != nil {
			return err
		}
		return insertImageVersion(ctx, w, v)
	})
	return v, err
}

// AddMicroVMImageVersion records the next version of the image name,
// numbered after the last one given; description, if not empty, becomes
// the image's. An image that does not exist is ErrNotFound.
func (s *Store) AddMicroVMImageVersion(ctx context.Context, name, description string, v MicroVMImageVersion) (MicroVMImageVersion, error) {
	v.Image = name
	err := s.write(ctx, "AddMicroVMImageVersion", func(w *writeTx) error {
		err := w.returning(ctx, sqlNextMicroVMImageVer, []any{unixMs(v.Created), description, description, name}, &v.Version)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("microvm image %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		return insertImageVersion(ctx, w, v)
	})
	return v, err
}

func insertImageVersion(ctx context.Context, w *writeTx, v MicroVMImageVersion) error {
	_, err := w.ExecContext(ctx, sqlInsertMicroVMImageVersion, v.Image, v.Version, v.Input, v.Digest, v.State, v.Reason, v.TemplateDir, unixMs(v.Created), unixMs(v.Built))
	return err
}

// UpdateMicroVMImageVersion records a version's build outcome: its
// digest, state, reason, template and build time.
func (s *Store) UpdateMicroVMImageVersion(ctx context.Context, v MicroVMImageVersion) error {
	return s.write(ctx, "UpdateMicroVMImageVersion", func(w *writeTx) error {
		res, err := w.ExecContext(ctx, sqlUpdateMicroVMImageVersion, v.Digest, v.State, v.Reason, v.TemplateDir, unixMs(v.Built), v.Image, v.Version)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("microvm image %s version %d: %w", v.Image, v.Version, ErrNotFound)
		}
		return nil
	})
}

// MicroVMImages lists every image, by name.
func (s *Store) MicroVMImages(ctx context.Context) ([]MicroVMImage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, description, version_seq, created, updated FROM microvm_images ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MicroVMImage
	for rows.Next() {
		var i MicroVMImage
		var created, updated int64
		if err := rows.Scan(&i.Name, &i.Description, &i.LatestVersion, &created, &updated); err != nil {
			return nil, err
		}
		i.Created, i.Updated = fromMs(created), fromMs(updated)
		out = append(out, i)
	}
	return out, rows.Err()
}

// MicroVMImageVersions lists every version of every image, by image and
// version.
func (s *Store) MicroVMImageVersions(ctx context.Context) ([]MicroVMImageVersion, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT image, version, input, digest, state, reason, template_dir, created, built
		FROM microvm_image_versions ORDER BY image, version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MicroVMImageVersion
	for rows.Next() {
		var v MicroVMImageVersion
		var created, built int64
		if err := rows.Scan(&v.Image, &v.Version, &v.Input, &v.Digest, &v.State, &v.Reason, &v.TemplateDir, &created, &built); err != nil {
			return nil, err
		}
		v.Created, v.Built = fromMs(created), fromMs(built)
		out = append(out, v)
	}
	return out, rows.Err()
}

// DeleteMicroVMImage forgets an image and its versions.
func (s *Store) DeleteMicroVMImage(ctx context.Context, name string) error {
	return s.write(ctx, "DeleteMicroVMImage", func(w *writeTx) error {
		res, err := w.ExecContext(ctx, sqlDeleteMicroVMImage, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("microvm image %s: %w", name, ErrNotFound)
		}
		_, err = w.ExecContext(ctx, sqlDeleteMicroVMImageVersions, name)
		return err
	})
}

// DeleteMicroVMImageVersion forgets one version of an image.
func (s *Store) DeleteMicroVMImageVersion(ctx context.Context, name string, version int) error {
	return s.write(ctx, "DeleteMicroVMImageVersion", func(w *writeTx) error {
		res, err := w.ExecContext(ctx, sqlDeleteMicroVMImageVersion, name, version)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("microvm image %s version %d: %w", name, version, ErrNotFound)
		}
		return nil
	})
}

// PutMicroVM records a MicroVM, or its change. A client token another
// MicroVM holds is ErrExists.
func (s *Store) PutMicroVM(ctx context.Context, m MicroVM) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO microvms (id, client_token, input_hash, image, version, state, reason, env_dir, memory_mib,
		idle_policy, max_duration, started, state_since, last_activity, terminated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET state = excluded.state, reason = excluded.reason, env_dir = excluded.env_dir,
		state_since = excluded.state_since, last_activity = excluded.last_activity, terminated = excluded.terminated`,
		m.ID, m.ClientToken, m.InputHash, m.Image, m.Version, m.State, m.Reason, m.EnvDir, m.MemoryMiB,
		m.IdlePolicy, m.MaxDuration, unixMs(m.Started), unixMs(m.StateSince), unixMs(m.LastActivity), unixMs(m.Terminated))
	if isUniqueViolation(err) {
		return fmt.Errorf("microvm client token %q: %w", m.ClientToken, ErrExists)
	}
	return err
}

// MicroVMs lists every recorded MicroVM, oldest first.
func (s *Store) MicroVMs(ctx context.Context) ([]MicroVM, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, client_token, input_hash, image, version, state, reason, env_dir, memory_mib,
		idle_policy, max_duration, started, state_since, last_activity, terminated FROM microvms ORDER BY started, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MicroVM
	for rows.Next() {
		var m MicroVM
		var started, since, last, term int64
		if err := rows.Scan(&m.ID, &m.ClientToken, &m.InputHash, &m.Image, &m.Version, &m.State, &m.Reason, &m.EnvDir, &m.MemoryMiB,
			&m.IdlePolicy, &m.MaxDuration, &started, &since, &last, &term); err != nil {
			return nil, err
		}
		m.Started, m.StateSince, m.LastActivity, m.Terminated = fromMs(started), fromMs(since), fromMs(last), fromMs(term)
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeleteMicroVM forgets a MicroVM (a terminated one, after a while).
func (s *Store) DeleteMicroVM(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM microvms WHERE id = ?`, id)
	return err
}

// MicroVMRunStarted records the start of a MicroVM's running period:
// name is what the cost report shows it under.
func (s *Store) MicroVMRunStarted(ctx context.Context, id, name string, memoryMB int, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meter_microvm_runs (id, name, memory_mb, start) VALUES (?, ?, ?, ?)`,
		id, name, memoryMB, at.UnixMilli())
	return err
}

// MicroVMRunEnded records the end of a MicroVM's open running period.
func (s *Store) MicroVMRunEnded(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE meter_microvm_runs SET end = ? WHERE id = ? AND end IS NULL`, at.UnixMilli(), id)
	return err
}

// MicroVMRuns returns the MicroVMs' running periods that reach into
// [since, ∞).
func (s *Store) MicroVMRuns(ctx context.Context, since time.Time) ([]meter.EnvSpan, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, memory_mb, start, end, host FROM meter_microvm_runs WHERE end IS NULL OR end >= ?`, since.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []meter.EnvSpan
	for rows.Next() {
		var sp meter.EnvSpan
		var start int64
		var end sql.NullInt64
		if err := rows.Scan(&sp.EnvID, &sp.Function, &sp.MemoryMB, &start, &end, &sp.Host); err != nil {
			return nil, err
		}
		sp.Start, sp.End = time.UnixMilli(start).UTC(), msTime(end)
		out = append(out, sp)
	}
	return out, rows.Err()
}
