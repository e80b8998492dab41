package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/meter"
)

// The meter across hosts. Each host of a cluster keeps its own meter
// tables (records, environments' lives, suspensions, MicroVMs' runs) and
// publishes every write to them, from a durable outbox, to a stream the
// other hosts follow; each keeps the others' rows beside its own, with
// their host, so that whatever reads the meter covers the cluster.
//
// The outbox is filled by triggers, in the transaction of the write
// itself, so no write can be made without its outbox entry (whoever makes
// it: the scheduler, the invocation path, the MicroVMs) and the write
// path is not slowed by the network. A publisher deletes entries once the
// stream has them; a crash between the two publishes them again, which
// the stream's Nats-Msg-Id (epoch and sequence) and, beyond its window,
// the follower's per-origin cursor and unique row ids make harmless.
//
// Local rows have host ''; another host's rows have its node name and a
// rid (its epoch and outbox sequence) that makes applying them twice a
// no-op. The epoch is made once per data folder, so a host whose folder
// was wiped and that joins again with the same node name is a new origin
// (its sequences start again).

// MeterEvent is one write to this host's meter tables, as the outbox
// keeps it and the stream carries it.
type MeterEvent struct {
	// Epoch names the outbox (one per data folder); Seq is the entry's
	// place in it, increasing, never reused.
	Epoch string `json:"epoch"`
	Seq   int64  `json:"seq"`
	// Kind is one of the meterKinds; Body its fields.
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

// ID is the event's identity across re-publishes (the stream's
// Nats-Msg-Id).
func (e MeterEvent) ID() string { return fmt.Sprintf("%s-%d", e.Epoch, e.Seq) }

// MaxMeterEventBytes bounds an event from the stream: a record is a few
// hundred bytes; anything larger is refused before it is decoded.
const MaxMeterEventBytes = 16 << 10

// ErrBadMeterEvent is an event from the stream that is refused (too large,
// an unknown kind, a field out of bounds). Nothing of it is stored; the
// follower moves past it.
var ErrBadMeterEvent = errors.New("bad meter event")

const meterLogSchema = `
CREATE TABLE IF NOT EXISTS meter_outbox (
	seq  INTEGER PRIMARY KEY AUTOINCREMENT,
	kind TEXT NOT NULL,
	body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meter_outbox_epoch (
	id    INTEGER PRIMARY KEY CHECK (id = 0),
	epoch TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meter_applied (
	origin TEXT PRIMARY KEY,
	seq    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meter_followed (
	id  INTEGER PRIMARY KEY CHECK (id = 0),
	seq INTEGER NOT NULL
);
`

// The triggers that fill the outbox with the local writes (host ”),
// made when the host first publishes (EnableMeterOutbox) and kept after:
// a host of a cluster restarted alone keeps its writes for the next time
// it joins.
const meterTriggers = `
CREATE TRIGGER IF NOT EXISTS meter_out_record AFTER INSERT ON meter_records WHEN NEW.host = '' BEGIN
	INSERT INTO meter_outbox (kind, body) VALUES ('record', NEW.record);
END;
CREATE TRIGGER IF NOT EXISTS meter_out_env AFTER INSERT ON meter_envs WHEN NEW.host = '' BEGIN
	INSERT INTO meter_outbox (kind, body) VALUES ('env', json_object('id', NEW.id, 'function', NEW.function, 'memoryMB', NEW.memory_mb, 'start', NEW.start, 'end', NEW.end));
END;
CREATE TRIGGER IF NOT EXISTS meter_out_env_end AFTER UPDATE OF end ON meter_envs WHEN NEW.host = '' AND OLD.end IS NULL AND NEW.end IS NOT NULL BEGIN
	INSERT INTO meter_outbox (kind, body) VALUES ('env_end', json_object('id', NEW.id, 'end', NEW.end));
END;
CREATE TRIGGER IF NOT EXISTS meter_out_suspend AFTER INSERT ON meter_suspensions WHEN NEW.host = '' BEGIN
	INSERT INTO meter_outbox (kind, body) VALUES ('suspend', json_object('env', NEW.env, 'function', NEW.function, 'bytes', NEW.bytes, 'start', NEW.start, 'end', NEW.end));
END;
CREATE TRIGGER IF NOT EXISTS meter_out_resume AFTER UPDATE OF end ON meter_suspensions WHEN NEW.host = '' AND OLD.end IS NULL AND NEW.end IS NOT NULL BEGIN
	INSERT INTO meter_outbox (kind, body) VALUES ('resume', json_object('env', NEW.env, 'end', NEW.end));
END;
CREATE TRIGGER IF NOT EXISTS meter_out_run AFTER INSERT ON meter_microvm_runs WHEN NEW.host = '' BEGIN
	INSERT INTO meter_outbox (kind, body) VALUES ('run', json_object('id', NEW.id, 'function', NEW.name, 'memoryMB', NEW.memory_mb, 'start', NEW.start, 'end', NEW.end));
END;
CREATE TRIGGER IF NOT EXISTS meter_out_run_end AFTER UPDATE OF end ON meter_microvm_runs WHEN NEW.host = '' AND OLD.end IS NULL AND NEW.end IS NOT NULL BEGIN
	INSERT INTO meter_outbox (kind, body) VALUES ('run_end', json_object('id', NEW.id, 'end', NEW.end));
END;
`

// meterBackfill puts what the host metered before it first published
// into the outbox (a standalone host that joins a cluster): lives,
// suspensions and runs with their ends when they have ended.
const meterBackfill = `
INSERT INTO meter_outbox (kind, body) SELECT 'record', record FROM meter_records WHERE host = '' ORDER BY time;
INSERT INTO meter_outbox (kind, body) SELECT 'env', json_object('id', id, 'function', function, 'memoryMB', memory_mb, 'start', start, 'end', end) FROM meter_envs WHERE host = '' ORDER BY start;
INSERT INTO meter_outbox (kind, body) SELECT 'suspend', json_object('env', env, 'function', function, 'bytes', bytes, 'start', start, 'end', end) FROM meter_suspensions WHERE host = '' ORDER BY start;
INSERT INTO meter_outbox (kind, body) SELECT 'run', json_object('id', id, 'function', name, 'memoryMB', memory_mb, 'start', start, 'end', end) FROM meter_microvm_runs WHERE host = '' ORDER BY start;
`

// migrateMeter gives the meter tables of an older store their host and
// rid columns (a constant default: SQLite rewrites nothing), and makes
// the outbox's tables, empty until the host publishes.
func (s *Store) migrateMeter(ctx context.Context) error {
	for _, table := range []string{"meter_records", "meter_envs", "meter_suspensions", "meter_microvm_runs"} {
		cols, err := s.columns(ctx, table)
		if err != nil {
			return err
		}
		if !cols["host"] {
			if _, err := s.db.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN host TEXT NOT NULL DEFAULT ''`); err != nil {
				return fmt.Errorf("%s: %w", table, err)
			}
		}
		if !cols["rid"] {
			if _, err := s.db.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN rid TEXT`); err != nil {
				return fmt.Errorf("%s: %w", table, err)
			}
		}
		// Another host's row once, however often it is applied.
		if _, err := s.db.ExecContext(ctx, `CREATE UNIQUE INDEX IF NOT EXISTS `+table+`_remote ON `+table+` (host, rid) WHERE rid IS NOT NULL`); err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
	}
	_, err := s.db.ExecContext(ctx, meterLogSchema)
	return err
}

// meterEpoch is the outbox's epoch; "" before the host first publishes.
func meterEpoch(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (string, error) {
	var epoch string
	err := q.QueryRowContext(ctx, `SELECT epoch FROM meter_outbox_epoch WHERE id = 0`).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return epoch, err
}

func (s *Store) columns(ctx context.Context, table string) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		cols[name] = true
	}
	return cols, rows.Err()
}

// EnableMeterOutbox makes every local meter write enter the outbox from
// now on, and returns the outbox's epoch. The first time (a host that ran
// alone before), what the host metered so far enters it too.
func (s *Store) EnableMeterOutbox(ctx context.Context) (string, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	var epoch string
	err = tx.QueryRowContext(ctx, `SELECT epoch FROM meter_outbox_epoch WHERE id = 0`).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		epoch = hex.EncodeToString(b)
		if _, err := tx.ExecContext(ctx, `INSERT INTO meter_outbox_epoch (id, epoch) VALUES (0, ?)`, epoch); err != nil {
			return "", err
		}
		if _, err := tx.ExecContext(ctx, meterBackfill); err != nil {
			return "", fmt.Errorf("meter outbox: backfill: %w", err)
		}
	} else if err != nil {
		return "", err
	}
	if _, err := tx.ExecContext(ctx, meterTriggers); err != nil {
		return "", fmt.Errorf("meter outbox: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", err
	}
	return epoch, nil
}

// MeterOutbox returns up to limit of the oldest events not yet published.
func (s *Store) MeterOutbox(ctx context.Context, limit int) ([]MeterEvent, error) {
	ep, err := meterEpoch(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if ep == "" {
		return nil, errors.New("meter outbox: not enabled")
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, kind, body FROM meter_outbox ORDER BY seq LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MeterEvent
	for rows.Next() {
		e := MeterEvent{Epoch: ep}
		var body string
		if err := rows.Scan(&e.Seq, &e.Kind, &body); err != nil {
			return nil, err
		}
		e.Body = json.RawMessage(body)
		out = append(out, e)
	}
	return out, rows.Err()
}

// MeterPublished forgets the outbox's events up to seq: the stream has
// them.
func (s *Store) MeterPublished(ctx context.Context, seq int64) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM meter_outbox WHERE seq <= ?`, seq)
	return err
}

// MeterFollowed is the last stream sequence this store applied (or
// skipped): the follower starts after it.
func (s *Store) MeterFollowed(ctx context.Context) (uint64, error) {
	var seq int64
	err := s.db.QueryRowContext(ctx, `SELECT seq FROM meter_followed WHERE id = 0`).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return uint64(seq), err
}

// ApplyMeterEvent applies the event at stream sequence streamSeq, which
// host published, and records that it followed the stream up to there,
// in one transaction. This host's own events, events of an origin it has
// applied past, and stream sequences already followed change nothing;
// a refused event (ErrBadMeterEvent) stores nothing but is moved past.
// It reports whether the event changed the meter.
func (s *Store) ApplyMeterEvent(ctx context.Context, streamSeq uint64, host string, data []byte) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var followed int64
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM meter_followed WHERE id = 0`).Scan(&followed); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	if streamSeq != 0 && streamSeq <= uint64(followed) {
		return false, nil
	}
	applied, aerr := s.applyMeterEvent(ctx, tx, host, data)
	if aerr != nil && !errors.Is(aerr, ErrBadMeterEvent) {
		return false, aerr
	}
	if streamSeq != 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meter_followed (id, seq) VALUES (0, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq`, int64(streamSeq)); err != nil {
			return false, err
		}
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	return applied, aerr
}

var meterHostName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func badMeter(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadMeterEvent, fmt.Sprintf(format, a...))
}

// The bodies of the kinds.
type (
	meterSpanBody struct {
		ID       string `json:"id"`
		Env      string `json:"env"`
		Function string `json:"function"`
		MemoryMB int    `json:"memoryMB"`
		Bytes    int64  `json:"bytes"`
		Start    int64  `json:"start"`
		End      *int64 `json:"end"`
	}
)

// Bounds on what another host's event may say.
const (
	maxMeterName   = 256
	maxMeterMemory = 1 << 20 // MB
)

// meterTimeOK is a time in milliseconds Hearth could have metered: not
// before 2000, not more than a day ahead of this host's clock.
func meterTimeOK(ms int64) bool {
	return ms >= 946684800000 && ms <= time.Now().Add(24*time.Hour).UnixMilli()
}

func meterNameOK(s string) bool {
	return s != "" && len(s) <= maxMeterName && !strings.ContainsAny(s, "\x00\n")
}

func finiteNonNeg(fs ...float64) bool {
	for _, f := range fs {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return false
		}
	}
	return true
}

// checkRecord bounds a record from another host.
func checkRecord(r meter.Record) error {
	switch {
	case !meterNameOK(r.Function):
		return badMeter("record: function %.40q", r.Function)
	case len(r.Version) > maxMeterName || len(r.EnvID) > maxMeterName || len(r.StartType) > 32:
		return badMeter("record: a field too long")
	case !meterTimeOK(r.Time.UnixMilli()):
		return badMeter("record: time %s", r.Time)
	case r.MemoryMB <= 0 || r.MemoryMB > maxMeterMemory || r.MaxMemMB < 0 || r.MaxMemMB > maxMeterMemory:
		return badMeter("record: memory %d MB", r.MemoryMB)
	case r.BilledMs < 0 || !finiteNonNeg(r.InitMs, r.PlatformInitMs, r.RestoreMs, r.DurationMs, r.GBSeconds):
		return badMeter("record: a negative or non-finite duration")
	}
	return nil
}

// checkSpan bounds an environment's life, a suspension or a run.
func checkSpan(kind string, b meterSpanBody) error {
	id := b.ID
	if kind == "suspend" || kind == "resume" {
		id = b.Env
	}
	if !meterNameOK(id) {
		return badMeter("%s: id %.40q", kind, id)
	}
	if kind == "env_end" || kind == "resume" || kind == "run_end" {
		if b.End == nil || !meterTimeOK(*b.End) {
			return badMeter("%s: no end, or out of bounds", kind)
		}
		return nil
	}
	switch {
	case !meterNameOK(b.Function):
		return badMeter("%s: function %.40q", kind, b.Function)
	case !meterTimeOK(b.Start) || (b.End != nil && (!meterTimeOK(*b.End) || *b.End < b.Start)):
		return badMeter("%s: times out of bounds", kind)
	case kind != "suspend" && (b.MemoryMB <= 0 || b.MemoryMB > maxMeterMemory):
		return badMeter("%s: memory %d MB", kind, b.MemoryMB)
	case kind == "suspend" && (b.Bytes < 0 || b.Bytes > int64(maxMeterMemory)<<20*4):
		return badMeter("suspend: %d bytes", b.Bytes)
	}
	return nil
}

// applyMeterEvent checks an event and writes it in tx.
func (s *Store) applyMeterEvent(ctx context.Context, tx *sql.Tx, host string, data []byte) (bool, error) {
	if len(data) > MaxMeterEventBytes {
		return false, badMeter("%d bytes", len(data))
	}
	if !meterHostName.MatchString(host) {
		return false, badMeter("host %.40q", host)
	}
	var e MeterEvent
	if err := json.Unmarshal(data, &e); err != nil {
		return false, badMeter("%v", err)
	}
	if len(e.Epoch) == 0 || len(e.Epoch) > 64 || e.Seq <= 0 {
		return false, badMeter("epoch %.40q, seq %d", e.Epoch, e.Seq)
	}
	own, err := meterEpoch(ctx, tx)
	if err != nil {
		return false, err
	}
	if own == e.Epoch {
		return false, nil // this host's own
	}
	origin := host + "/" + e.Epoch
	var done int64
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM meter_applied WHERE origin = ?`, origin).Scan(&done); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	if e.Seq <= done {
		return false, nil // published again: applied already
	}
	rid := e.ID()
	// Another host's ids are kept under its name, so they meet no local
	// one.
	remoteID := func(id string) string { return host + "/" + id }
	var res sql.Result
	switch e.Kind {
	case "record":
		var r meter.Record
		if err := json.Unmarshal(e.Body, &r); err != nil {
			return false, badMeter("record: %v", err)
		}
		if err := checkRecord(r); err != nil {
			return false, err
		}
		r.Host = ""               // the column says whose it is
		b, err := json.Marshal(r) // what the record says, and nothing else
		if err != nil {
			return false, err
		}
		res, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO meter_records (time, function, record, host, rid) VALUES (?, ?, ?, ?, ?)`,
			r.Time.UnixMilli(), r.Function, string(b), host, rid)
		if err != nil {
			return false, err
		}
	case "env", "env_end", "suspend", "resume", "run", "run_end":
		var b meterSpanBody
		if err := json.Unmarshal(e.Body, &b); err != nil {
			return false, badMeter("%s: %v", e.Kind, err)
		}
		if err := checkSpan(e.Kind, b); err != nil {
			return false, err
		}
		switch e.Kind {
		case "env":
			res, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO meter_envs (id, function, memory_mb, start, end, host, rid) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				remoteID(b.ID), b.Function, b.MemoryMB, b.Start, b.End, host, rid)
		case "env_end":
			res, err = tx.ExecContext(ctx, `UPDATE meter_envs SET end = ? WHERE id = ? AND host = ? AND end IS NULL`, *b.End, remoteID(b.ID), host)
		case "suspend":
			res, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO meter_suspensions (env, function, bytes, start, end, host, rid) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				remoteID(b.Env), b.Function, b.Bytes, b.Start, b.End, host, rid)
		case "resume":
			res, err = tx.ExecContext(ctx, `UPDATE meter_suspensions SET end = ? WHERE env = ? AND host = ? AND end IS NULL`, *b.End, remoteID(b.Env), host)
		case "run":
			res, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO meter_microvm_runs (id, name, memory_mb, start, end, host, rid) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				remoteID(b.ID), b.Function, b.MemoryMB, b.Start, b.End, host, rid)
		case "run_end":
			res, err = tx.ExecContext(ctx, `UPDATE meter_microvm_runs SET end = ? WHERE id = ? AND host = ? AND end IS NULL`, *b.End, remoteID(b.ID), host)
		}
		if err != nil {
			return false, err
		}
	default:
		// A kind a newer Hearth makes: refused, not guessed at.
		return false, badMeter("kind %.40q", e.Kind)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meter_applied (origin, seq) VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq`, origin, e.Seq); err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
