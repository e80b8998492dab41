// Package store keeps Hearth's metadata in an embedded SQLite database:
// functions and their configuration, published versions, aliases,
// concurrency settings, tags, resource policies, layers and the execution
// environments the daemon runs. Code packages and layer zips are kept
// beside it as files named by their SHA-256.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver: no cgo
)

// ErrNotFound is returned for a function, version, alias or env that does
// not exist; ErrExists for one that already does.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Store is the database and the code folder.
type Store struct {
	db       *sql.DB
	codeDir  string
	layerDir string
	// layerMu orders writing a layer's zip against pruning one.
	layerMu sync.Mutex
	// codeMu orders writing a function's zip against pruning one, and
	// guards when each was first seen unnamed (see PruneCode); blobMu
	// guards the same for the hosts' store (see PruneBlobs).
	codeMu      sync.Mutex
	codeUnnamed unnamedSince
	blobMu      sync.Mutex
	blobUnnamed unnamedSince
	// configGen changes after every write that can change what Resolve
	// or Concurrency answer (see ConfigGeneration).
	configGen atomic.Uint64
	// rep links the configuration to the log the hosts share; nil when
	// standalone (see Replicate).
	rep *replica
}

// ConfigGeneration changes after every write to a function's
// configuration, versions, aliases or reserved concurrency. A reader that
// reads it before reading those may keep what it read for as long as the
// generation stays the same: the invocation path does, so a warm call does
// not read SQLite. A write bumps it once it is committed, so a reader that
// raced the write sees a newer generation next time and reads again. A
// replicated store bumps it too after every entry it applies from the
// configuration log, another host's write as well as its own.
func (s *Store) ConfigGeneration() uint64 { return s.configGen.Load() }

// configChanged is deferred by every write ConfigGeneration covers.
func (s *Store) configChanged() { s.configGen.Add(1) }

const schema = `
CREATE TABLE IF NOT EXISTS functions (
	name        TEXT PRIMARY KEY,
	config      TEXT NOT NULL,
	version_seq INTEGER NOT NULL DEFAULT 0,
	concurrency INTEGER
);
CREATE TABLE IF NOT EXISTS versions (
	name    TEXT NOT NULL,
	version TEXT NOT NULL,
	config  TEXT NOT NULL,
	PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
	name        TEXT NOT NULL,
	alias       TEXT NOT NULL,
	version     TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	revision    TEXT NOT NULL,
	PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS url_configs (
	function  TEXT NOT NULL,
	qualifier TEXT NOT NULL,
	url_id    TEXT NOT NULL UNIQUE,
	config    TEXT NOT NULL,
	PRIMARY KEY (function, qualifier)
);
CREATE TABLE IF NOT EXISTS tags (
	function TEXT NOT NULL,
	key      TEXT NOT NULL,
	value    TEXT NOT NULL,
	PRIMARY KEY (function, key)
);
CREATE TABLE IF NOT EXISTS policies (
	function  TEXT NOT NULL,
	qualifier TEXT NOT NULL,
	revision  TEXT NOT NULL,
	document  TEXT NOT NULL,
	PRIMARY KEY (function, qualifier)
);
CREATE TABLE IF NOT EXISTS layers (
	name        TEXT PRIMARY KEY,
	version_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS layer_versions (
	name     TEXT NOT NULL,
	version  INTEGER NOT NULL,
	config   TEXT NOT NULL,
	deleted  INTEGER NOT NULL DEFAULT 0,
	revision TEXT NOT NULL DEFAULT '',
	policy   TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS meter_records (
	time        INTEGER NOT NULL,
	function    TEXT NOT NULL,
	record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS meter_records_by_time ON meter_records (time);
CREATE TABLE IF NOT EXISTS meter_envs (
	id        TEXT PRIMARY KEY,
	function  TEXT NOT NULL,
	memory_mb INTEGER NOT NULL,
	start     INTEGER NOT NULL,
	end       INTEGER
);
CREATE TABLE IF NOT EXISTS meter_suspensions (
	env      TEXT NOT NULL,
	function TEXT NOT NULL,
	bytes    INTEGER NOT NULL,
	start    INTEGER NOT NULL,
	end      INTEGER
);
CREATE TABLE IF NOT EXISTS envs (
	id       TEXT PRIMARY KEY,
	function TEXT NOT NULL,
	version  TEXT NOT NULL,
	digest   TEXT NOT NULL,
	dir      TEXT NOT NULL,
	state    TEXT NOT NULL,
	pid      INTEGER NOT NULL DEFAULT 0,
	updated  INTEGER NOT NULL
);
`

// Open opens (creating if needed) the store in dir.
func Open(ctx context.Context, dir string) (*Store, error) {
	codeDir, layerDir := filepath.Join(dir, "code"), filepath.Join(dir, "layers")
	for _, d := range []string{codeDir, layerDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// WAL and a busy timeout: readers never block the writer, and a crash
	// never leaves a half-written row.
	dsn := "file:" + filepath.Join(dir, "hearth.db") + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema+microvmSchema+eventInvokeSchema+queueSchema+esmSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: schema: %w", err)
	}
	s := &Store{db: db, codeDir: codeDir, layerDir: layerDir}
	if err := s.migrateMeter(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: meter: %w", err)
	}
	// Deleted layer versions whose last function went since the last
	// prune go now.
	if err := s.PruneLayers(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.stopReplica()
	return s.db.Close()
}
