package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"modernc.org/sqlite"
)

// Replication: the configuration (the tables of replicatedTables) is an
// ordered log of writes that every host applies, in order, to its own
// SQLite. A store method's writes are one entry: the method runs in a
// transaction on this host's state as of the last entry it applied (a dry
// run, so it sees its own rows affected, unique violations and RETURNING
// values), the statements it ran are recorded and the transaction rolled
// back; the entry is then appended to the log only if the log's last entry
// is still that one (optimistic concurrency). If another host appended
// first, this host catches up and runs the method again on the new state;
// once appended, the method returns when this host has applied the entry
// (read-your-writes). Since every host applies the same statements to the
// same state, every host gets the same rows; the sequence applied is kept
// in the same transaction as the entry's rows, so a restarted host resumes
// exactly after it. Without a log (standalone), a write is a plain
// transaction, as before.

// Log is the ordered log of configuration writes the hosts share
// (internal/configlog keeps it on JetStream).
type Log interface {
	// Append adds entry after the entry at sequence after (0: the log is
	// empty) and returns its sequence; when the log's last entry is
	// another, it adds nothing and returns an error wrapping ErrLogMoved.
	// id names the entry: appending the same id twice adds it once.
	Append(ctx context.Context, after uint64, id string, entry []byte) (uint64, error)
	// Last is the sequence of the log's last entry (0 when it is empty).
	Last(ctx context.Context) (uint64, error)
	// Follow calls apply with every entry after sequence after, in order,
	// as they come, until ctx ends (it then returns ctx's error) or apply
	// or the log fails.
	Follow(ctx context.Context, after uint64, apply func(seq uint64, entry []byte) error) error
}

// Blobs keeps the code and layer zips every host may need, by name.
type Blobs interface {
	PutBlob(ctx context.Context, name string, data []byte) error
	// GetBlob returns an error wrapping ErrNotFound for a name it lacks.
	GetBlob(ctx context.Context, name string) ([]byte, error)
}

// BlobInfo is a blob as a BlobPruner lists it.
type BlobInfo struct {
	Name string
	// Put is when it was last put (a put of a blob there already
	// renews it).
	Put  time.Time
	Size int64
}

// BlobPruner is Blobs whose blobs can be listed and deleted (see
// PruneBlobs).
type BlobPruner interface {
	ListBlobs(ctx context.Context) ([]BlobInfo, error)
	// DeleteBlob deletes the blob if it was last put before notAfter.
	DeleteBlob(ctx context.Context, name string, notAfter time.Time) (bool, error)
}

// ErrLogMoved is a Log's answer to an Append whose "after" is no longer
// the log's last entry.
var ErrLogMoved = errors.New("the configuration log has moved on")

// ErrUnreachable is a replicated write's failure when this host cannot
// reach the log (or the blobs) within appendWait: cut off from the
// cluster's quorum, or the log's leader still being elected. Nothing was
// written, unless the entry was in flight when the wait ended and lands
// later (a retry then finds it: a create answers that the function
// exists).
var ErrUnreachable = errors.New("the cluster's configuration log cannot be reached from this host")

// appendWait bounds a write's append to the log; confirmWait bounds the
// look, after an append that failed, for whether the entry is in the log
// all the same. A healthy log answers in milliseconds; a host cut off
// from the quorum answers a write within their sum instead of after
// nats.go's timeouts (or never: the zips' upload).
const (
	appendWait  = 3 * time.Second
	confirmWait = 2 * time.Second
)

// Replication is what Replicate needs.
type Replication struct {
	Log   Log
	Blobs Blobs
	// Host names this host in the entries it writes (for the logs).
	Host   string
	Logger *slog.Logger
	// CheckpointEvery is how many entries since the last checkpoint make
	// this host write one (replicate_checkpoint.go): 0 is
	// DefaultCheckpointEvery, a negative count never. Without Blobs, none.
	CheckpointEvery int
	// MayCheckpoint, when set, says whether this host may write a
	// checkpoint now: not while any host that may follow the log is of a
	// release that does not know checkpoints (it would skip the purged
	// gap). Nil: always.
	MayCheckpoint func() bool
}

// entryVersion is the entries' format; a host refuses an entry of
// another.
const entryVersion = 1

// entry is one log entry: one store method's writes.
type entry struct {
	V     int         `json:"v"`
	ID    string      `json:"id"`
	Host  string      `json:"host,omitempty"`
	Op    string      `json:"op"`
	Stmts []statement `json:"stmts"`
	// Checkpoint names the dump a checkpoint entry stands for (it has
	// no statements).
	Checkpoint *checkpointRef `json:"checkpoint,omitempty"`
}

// statement is one of replicatedSQL with its arguments: strings, integers
// and nulls only, which JSON carries exactly.
type statement struct {
	SQL  string `json:"sql"`
	Args []any  `json:"args,omitempty"`
}

// replica is a replicated store's link to the log.
type replica struct {
	log    Log
	blobs  Blobs
	host   string
	logger *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	applied uint64
	// changed is closed (and replaced) after each entry applied.
	changed chan struct{}
	// waiting are this host's entries appended (or perhaps appended) and
	// not yet applied, by id; an applied one gets its outcome.
	waiting map[string]*outcome

	// ctx ends when the store closes; bg are the checkpoint writes
	// running in it.
	ctx context.Context
	bg  sync.WaitGroup
	// every is Replication.CheckpointEvery; checkpointSeq the last
	// checkpoint applied; checkpointing whether a write of one runs.
	every         int
	mayCheckpoint func() bool
	checkpointSeq uint64
	checkpointing bool
}

type outcome struct {
	seq uint64
	err error // the entry was refused
}

// appliedSchema holds the last log entry this host applied.
const appliedSchema = `CREATE TABLE IF NOT EXISTS config_log_applied (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO config_log_applied (id, seq) VALUES (1, 0);`

// Replicate makes the store's configuration follow the log: it applies
// the entries this host has not applied yet (returning once it has the
// entries the log had when called), then applies new ones as they come,
// and from then on every write to the configuration goes through the log.
// A host that has a configuration of its own and has never applied an
// entry brings it into the log when the log is empty (a standalone node
// becoming a cluster's first host), and is refused otherwise.
func (s *Store) Replicate(ctx context.Context, r Replication) error {
	if s.rep != nil {
		return errors.New("store: already replicated")
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	if _, err := s.db.ExecContext(ctx, appliedSchema+checkpointSchema); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var applied, checkpointSeq uint64
	if err := s.db.QueryRowContext(ctx, `SELECT seq FROM config_log_applied`).Scan(&applied); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := s.db.QueryRowContext(ctx, `SELECT seq FROM config_log_checkpoint`).Scan(&checkpointSeq); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if r.CheckpointEvery == 0 {
		r.CheckpointEvery = DefaultCheckpointEvery
	}
	if applied == 0 {
		own, err := s.hasConfiguration(ctx)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if own {
			// The first host brings its configuration (replicate_seed.go).
			last, err := r.Log.Last(ctx)
			if err != nil {
				return fmt.Errorf("store: %w", err)
			}
			if last != 0 {
				return errors.New("store: this host has a configuration of its own and the cluster's log has another: start it with an empty data folder (only the first host of a cluster brings its configuration)")
			}
			if err := s.seed(ctx, r); err != nil {
				if errors.Is(err, ErrLogMoved) {
					return errors.New("store: another host seeded the cluster's configuration first: start this one with an empty data folder")
				}
				return fmt.Errorf("store: %w", err)
			}
		}
	}
	fctx, cancel := context.WithCancel(context.Background())
	rep := &replica{log: r.Log, blobs: r.Blobs, host: r.Host, logger: r.Logger, cancel: cancel, done: make(chan struct{}),
		applied: applied, changed: make(chan struct{}), waiting: map[string]*outcome{},
		ctx: fctx, every: r.CheckpointEvery, mayCheckpoint: r.MayCheckpoint, checkpointSeq: checkpointSeq}
	s.rep = rep
	go s.follow(fctx)
	if err := s.catchUp(ctx); err != nil {
		s.stopReplica()
		s.rep = nil
		return fmt.Errorf("store: catching up with the configuration log: %w", err)
	}
	return nil
}

// hasConfiguration is whether any replicated table has a row.
func (s *Store) hasConfiguration(ctx context.Context) (bool, error) {
	for _, t := range replicatedTables {
		var any bool
		if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+t+`)`).Scan(&any); err != nil {
			return false, err
		}
		if any {
			return true, nil
		}
	}
	return false, nil
}

// AppliedSequence is the last log entry this store applied (0 when
// standalone).
func (s *Store) AppliedSequence() uint64 {
	if s.rep == nil {
		return 0
	}
	s.rep.mu.Lock()
	defer s.rep.mu.Unlock()
	return s.rep.applied
}

// stopReplica stops following the log, waiting a bounded time: a follower
// stuck re-making its consumer in a cluster that lost its quorum (the
// other hosts stopping too) must not hold the daemon's shutdown; it ends on
// its own once its tries run out.
func (s *Store) stopReplica() {
	if s.rep == nil {
		return
	}
	s.rep.cancel()
	stopped := make(chan struct{})
	go func() {
		<-s.rep.done
		s.rep.bg.Wait() // a checkpoint being written
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(stopReplicaWait):
		s.rep.logger.Warn("configuration log: the follower did not stop in time; closing without it")
	}
}

// stopReplicaWait bounds stopReplica's wait.
const stopReplicaWait = 3 * time.Second

// follow applies the log's entries as they come, until the store closes.
// A failure to read the log or to write SQLite is retried (from the entry
// after the last applied): an entry is never skipped for a reason that
// may be this host's alone.
func (s *Store) follow(ctx context.Context) {
	defer close(s.rep.done)
	for {
		err := s.rep.log.Follow(ctx, s.AppliedSequence(), func(seq uint64, data []byte) error {
			return s.applyEntry(ctx, seq, data)
		})
		if ctx.Err() != nil {
			return
		}
		s.rep.logger.Warn("configuration log: following again", "after", s.AppliedSequence(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// refused is an entry no host can apply: malformed, of an unknown format,
// or with a statement that is not replicatedSQL or fails on the rows (the
// same on every host, since they all have the same rows).
type refused struct{ reason error }

func (r refused) Error() string { return "configuration log entry refused: " + r.reason.Error() }

// applyEntry applies the entry at seq, in one transaction with the
// sequence; an entry refused is recorded as applied with no other change.
func (s *Store) applyEntry(ctx context.Context, seq uint64, data []byte) error {
	rep := s.rep
	if seq <= s.AppliedSequence() {
		return nil // already applied (a Follow started again)
	}
	e, reason := decodeEntry(data)
	if reason == nil && e.Checkpoint != nil {
		if err := s.applyCheckpoint(ctx, seq, e); err != nil {
			return err
		}
		s.maybeCheckpoint()
		return nil
	}
	if applied := s.AppliedSequence(); seq != applied+1 {
		// Entries this host never applied are gone from the log, and
		// this one is no checkpoint to start again from: applying it
		// would make this host's rows differ from the others'.
		return fmt.Errorf("entry %d follows %d: the entries between are missing from the log", seq, applied)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if reason == nil {
		for _, st := range e.Stmts {
			if _, err := tx.ExecContext(ctx, st.SQL, st.Args...); err != nil {
				if !deterministic(err) {
					return fmt.Errorf("applying entry %d: %w", seq, err)
				}
				reason = err
				break
			}
		}
	}
	if reason != nil {
		// Nothing of the entry, only its sequence.
		if err := tx.Rollback(); err != nil {
			return err
		}
		if tx, err = s.db.BeginTx(ctx, nil); err != nil {
			return err
		}
		defer tx.Rollback()
		rep.logger.Warn("configuration log: entry refused", "seq", seq, "op", e.Op, "host", e.Host, "err", reason)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE config_log_applied SET seq = ?`, int64(seq)); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.entryApplied(seq, e.ID, reason)
	s.maybeCheckpoint()
	return nil
}

// entryApplied records that the entry id at seq is applied (refused for
// reason, when not nil): the waits on it end.
func (s *Store) entryApplied(seq uint64, id string, reason error) {
	rep := s.rep
	s.configChanged()
	rep.mu.Lock()
	defer rep.mu.Unlock()
	rep.applied = seq
	close(rep.changed)
	rep.changed = make(chan struct{})
	if o, ok := rep.waiting[id]; ok && id != "" {
		o.seq = seq
		if reason != nil {
			o.err = refused{reason}
		}
	}
}

// deterministic is whether a statement's failure comes from the rows and
// the statement alone (a constraint, a type, a statement SQLite refuses),
// so that every host fails it the same way; other failures (the disk, a
// lock) are this host's and are retried.
func deterministic(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case 1, 19, 20, 25: // SQLITE_ERROR, CONSTRAINT, MISMATCH, RANGE
		return true
	}
	return false
}

// decodeEntry reads an entry and checks it is one this host can apply:
// its format, and each statement one of replicatedSQL with as many
// arguments, each a string, an integer or null.
func decodeEntry(data []byte) (entry, error) {
	var e entry
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&e); err != nil {
		return entry{}, fmt.Errorf("malformed entry: %w", err)
	}
	if e.V != entryVersion {
		return e, fmt.Errorf("entry format %d, this host reads %d", e.V, entryVersion)
	}
	if e.Checkpoint != nil {
		if len(e.Stmts) != 0 {
			return e, errors.New("checkpoint with statements")
		}
		if b, err := hex.DecodeString(e.Checkpoint.Digest); err != nil || len(b) != sha256.Size || hex.EncodeToString(b) != e.Checkpoint.Digest ||
			e.Checkpoint.Blob != checkpointBlob(e.Checkpoint.Digest) {
			return e, errors.New("checkpoint naming no dump by SHA-256")
		}
		return e, nil
	}
	if len(e.Stmts) == 0 {
		return e, errors.New("entry without statements")
	}
	for i, st := range e.Stmts {
		n, ok := replicatedSQL[st.SQL]
		if !ok {
			return e, fmt.Errorf("statement %d is not one of the replicated writes", i)
		}
		if len(st.Args) != n {
			return e, fmt.Errorf("statement %d has %d arguments, wants %d", i, len(st.Args), n)
		}
		for j, a := range st.Args {
			switch v := a.(type) {
			case nil, string:
			case json.Number:
				n, err := v.Int64()
				if err != nil {
					return e, fmt.Errorf("statement %d argument %d: not an integer: %s", i, j, v)
				}
				st.Args[j] = n
			default:
				return e, fmt.Errorf("statement %d argument %d: a %T", i, j, a)
			}
		}
	}
	return e, nil
}

// writeTx is a write's transaction: reads go to it, and writes to the
// replicated tables through ExecContext and returning, which record them.
type writeTx struct {
	tx    *sql.Tx
	stmts []statement
}

func (w *writeTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return w.tx.QueryContext(ctx, q, args...)
}

func (w *writeTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return w.tx.QueryRowContext(ctx, q, args...)
}

// record checks q is a replicated write, and keeps it with its arguments
// in the forms an entry carries.
func (w *writeTx) record(q string, args []any) ([]any, error) {
	if _, ok := replicatedSQL[q]; !ok {
		return nil, fmt.Errorf("store: a write that is not in replicatedSQL: %.60s", q)
	}
	norm := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case nil, string, int64:
			norm[i] = v
		case int:
			norm[i] = int64(v)
		case bool:
			norm[i] = int64(0)
			if v {
				norm[i] = int64(1)
			}
		default:
			return nil, fmt.Errorf("store: write argument %d is a %T", i, a)
		}
	}
	w.stmts = append(w.stmts, statement{SQL: q, Args: norm})
	return norm, nil
}

// ExecContext runs a replicated write.
func (w *writeTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	norm, err := w.record(q, args)
	if err != nil {
		return nil, err
	}
	return w.tx.ExecContext(ctx, q, norm...)
}

// returning runs a replicated write with a RETURNING clause into dest.
func (w *writeTx) returning(ctx context.Context, q string, args []any, dest ...any) error {
	norm, err := w.record(q, args)
	if err != nil {
		return err
	}
	return w.tx.QueryRowContext(ctx, q, norm...).Scan(dest...)
}

// maxWriteAttempts bounds how often a write runs again after other hosts
// appended first: each attempt that loses means another host's write went
// in, so the configuration as a whole progresses.
const maxWriteAttempts = 50

// write runs fn, the reads and writes of one store method named op, as
// one change of the configuration: a transaction when standalone, one log
// entry when replicated. fn may run more than once (after another host's
// write), each time on the state then, so it must set its results anew
// each time and have no other effect.
func (s *Store) write(ctx context.Context, op string, fn func(w *writeTx) error) error {
	if s.rep == nil {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(&writeTx{tx: tx}); err != nil {
			return err
		}
		return tx.Commit()
	}
	for attempt := 0; ; attempt++ {
		after, stmts, err := s.dryRun(ctx, fn)
		if err != nil || len(stmts) == 0 {
			return err
		}
		err = s.propose(ctx, op, after, stmts)
		if !errors.Is(err, ErrLogMoved) {
			return err
		}
		if attempt == maxWriteAttempts {
			return fmt.Errorf("store: %s: %d attempts lost to other hosts' writes: %w", op, attempt+1, err)
		}
		cctx, cancel := context.WithTimeout(ctx, confirmWait)
		cerr := s.catchUp(cctx)
		if cerr == nil && s.AppliedSequence() <= after {
			// The log's leader counts an entry after ours that this
			// host cannot read: a leader cut off from the quorum
			// counts its own proposals, which never commit. Trying
			// again at once would lose again: wait for that entry.
			cerr = s.waitApplied(cctx, after+1)
		}
		cancel()
		if cerr != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("store: %s: %w", op, cerr)
			}
			return fmt.Errorf("store: %s: %w: %w", op, ErrUnreachable, cerr)
		}
	}
}

// dryRun runs fn on this host's state and rolls it back, returning the
// sequence that state is at and the statements fn ran.
func (s *Store) dryRun(ctx context.Context, fn func(w *writeTx) error) (uint64, []statement, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, nil, err
	}
	defer tx.Rollback()
	// Read in the transaction: the entries applied and the rows fn reads
	// are one state (the single connection keeps the applier out).
	var after uint64
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM config_log_applied`).Scan(&after); err != nil {
		return 0, nil, err
	}
	w := &writeTx{tx: tx}
	if err := fn(w); err != nil {
		return 0, nil, err
	}
	return after, w.stmts, nil
}

// propose appends the entry after sequence after and waits until this
// host has applied it. It returns ErrLogMoved when another entry came
// first: nothing was written.
func (s *Store) propose(ctx context.Context, op string, after uint64, stmts []statement) error {
	rep := s.rep
	e := entry{V: entryVersion, ID: newEntryID(), Host: rep.host, Op: op, Stmts: stmts}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	o := &outcome{}
	rep.mu.Lock()
	rep.waiting[e.ID] = o
	rep.mu.Unlock()
	defer func() {
		rep.mu.Lock()
		delete(rep.waiting, e.ID)
		rep.mu.Unlock()
	}()
	actx, cancel := context.WithTimeout(ctx, appendWait)
	seq, err := rep.log.Append(actx, after, e.ID, data)
	cancel()
	if errors.Is(err, ErrLogMoved) {
		return err
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("store: %s: %w", op, err) // the caller gave up
		}
		// The entry may be in the log all the same (its
		// acknowledgement lost): once caught up, this host knows.
		cctx, cancel := context.WithTimeout(ctx, confirmWait)
		cerr := s.catchUp(cctx)
		cancel()
		if cerr != nil {
			return fmt.Errorf("store: %s: %w: %w", op, ErrUnreachable, err)
		}
		rep.mu.Lock()
		seq = o.seq
		rep.mu.Unlock()
		if seq == 0 {
			// The log answers but did not take the entry (no
			// leader for it yet).
			return fmt.Errorf("store: %s: %w: %w", op, ErrUnreachable, err)
		}
	}
	if err := s.waitApplied(ctx, seq); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if o.err != nil {
		return fmt.Errorf("store: %s: %w", op, o.err)
	}
	return nil
}

// catchUp waits until this host has applied the entries the log has now.
func (s *Store) catchUp(ctx context.Context) error {
	last, err := s.rep.log.Last(ctx)
	if err != nil {
		return err
	}
	return s.waitApplied(ctx, last)
}

// waitApplied waits until this host has applied the entry at seq.
func (s *Store) waitApplied(ctx context.Context, seq uint64) error {
	for {
		s.rep.mu.Lock()
		applied, changed := s.rep.applied, s.rep.changed
		s.rep.mu.Unlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for configuration log entry %d (applied %d): %w", seq, applied, ctx.Err())
		case <-changed:
		}
	}
}

func newEntryID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
