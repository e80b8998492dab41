package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Compaction: the log would otherwise keep every configuration write since
// the cluster began, and a new host would replay all of them. A checkpoint
// is an entry that names a dump of the replicated tables as of the entry
// before it; the dump (too big for one message) is in the blobs, by its
// SHA-256. A host that applied the entry before the checkpoint has those
// rows already and only records the checkpoint's sequence; a host whose
// next entry is gone (purged below the checkpoint) replaces its replicated
// tables with the dump, in one transaction with the sequence.
//
// Any host writes one once the log holds more than CheckpointEvery entries
// since the last checkpoint, after its own state caught up, through the
// same optimistic append as a write (after = the entry its dump is of):
// of several hosts trying, one wins; the others find the checkpoint when
// they apply it and stop. The winner then purges the log below its
// checkpoint, at once: a follower behind starts again from the first entry
// left, which is that checkpoint. The zips that only purged rows named stay
// in the blobs, as do the dumps of older checkpoints.

// DefaultCheckpointEvery is how many entries since the last checkpoint make
// a host write one, when Replication.CheckpointEvery is 0.
const DefaultCheckpointEvery = 1000

// Purger is a Log whose entries before a sequence can be dropped.
type Purger interface {
	// Purge drops the entries before sequence seq (seq and later stay).
	Purge(ctx context.Context, seq uint64) error
}

// checkpointRef is what a checkpoint entry carries: the dump's name in
// the blobs and its SHA-256 (hex).
type checkpointRef struct {
	Blob   string `json:"blob"`
	Digest string `json:"digest"`
}

// checkpointSchema holds the sequence of the last checkpoint this host
// applied, which the count of entries since is taken from.
const checkpointSchema = `CREATE TABLE IF NOT EXISTS config_log_checkpoint (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO config_log_checkpoint (id, seq) VALUES (1, 0);`

func checkpointBlob(hexSum string) string { return "checkpoint/" + hexSum }

// dumpVersion is the dumps' format.
const dumpVersion = 1

// dump is the replicated tables' rows, each with seedColumns' columns,
// ordered by all of them: hosts with the same rows make the same bytes.
type dump struct {
	V      int                `json:"v"`
	Tables map[string][][]any `json:"tables"`
}

// dumpConfiguration reads the replicated tables and the sequence they are
// at, as one state.
func (s *Store) dumpConfiguration(ctx context.Context) (uint64, []byte, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, nil, err
	}
	defer tx.Rollback()
	var at uint64
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM config_log_applied`).Scan(&at); err != nil {
		return 0, nil, err
	}
	d := dump{V: dumpVersion, Tables: map[string][][]any{}}
	for _, table := range replicatedTables {
		cols := seedColumns[table]
		order := make([]string, len(cols))
		for i := range cols {
			order[i] = strconv.Itoa(i + 1)
		}
		rows, err := tx.QueryContext(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+table+" ORDER BY "+strings.Join(order, ", "))
		if err != nil {
			return 0, nil, err
		}
		out := [][]any{}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return 0, nil, err
			}
			// The forms an entry's arguments take (strings, integers,
			// nulls), as the seed does.
			w := &writeTx{}
			norm, err := w.record(seedSQL(table), vals)
			if err != nil {
				rows.Close()
				return 0, nil, fmt.Errorf("dump %s: %w", table, err)
			}
			out = append(out, norm)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, nil, err
		}
		d.Tables[table] = out
	}
	data, err := json.Marshal(d)
	if err != nil {
		return 0, nil, err
	}
	return at, data, nil
}

// decodeDump reads a dump and checks every row is one the seed's
// statements take: known tables, the columns' count, strings, integers
// and nulls.
func decodeDump(data []byte) (dump, error) {
	var d dump
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return dump{}, fmt.Errorf("malformed dump: %w", err)
	}
	if d.V != dumpVersion {
		return dump{}, fmt.Errorf("dump format %d, this host reads %d", d.V, dumpVersion)
	}
	for table, rows := range d.Tables {
		cols, ok := seedColumns[table]
		if !ok {
			return dump{}, fmt.Errorf("dump of an unknown table %q", table)
		}
		for i, row := range rows {
			if len(row) != len(cols) {
				return dump{}, fmt.Errorf("dump %s row %d: %d values, wants %d", table, i, len(row), len(cols))
			}
			for j, v := range row {
				switch v := v.(type) {
				case nil, string:
				case json.Number:
					n, err := v.Int64()
					if err != nil {
						return dump{}, fmt.Errorf("dump %s row %d: not an integer: %s", table, i, v)
					}
					row[j] = n
				default:
					return dump{}, fmt.Errorf("dump %s row %d: a %T", table, i, v)
				}
			}
		}
	}
	return d, nil
}

// applyCheckpoint applies the checkpoint entry e at seq: nothing but the
// sequence when this host applied the entry before it, the dump in place
// of its replicated tables otherwise (the entries between were purged).
func (s *Store) applyCheckpoint(ctx context.Context, seq uint64, e entry) error {
	rep := s.rep
	behind := s.AppliedSequence()+1 < seq
	var d dump
	if behind {
		if rep.blobs == nil {
			return fmt.Errorf("checkpoint %d: entries before it are purged and this host has no blobs to read its dump from", seq)
		}
		data, err := rep.blobs.GetBlob(ctx, e.Checkpoint.Blob)
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", seq, err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != e.Checkpoint.Digest {
			return fmt.Errorf("checkpoint %d: the dump's digest is %x, the entry names %s", seq, sum, e.Checkpoint.Digest)
		}
		// An error here is the dump's, the same on every host behind: it
		// is retried (logged) rather than skipped, since skipping would
		// leave this host without the configuration.
		if d, err = decodeDump(data); err != nil {
			return fmt.Errorf("checkpoint %d: %w", seq, err)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if behind {
		for _, table := range replicatedTables {
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+table); err != nil {
				return fmt.Errorf("checkpoint %d: %w", seq, err)
			}
			q := seedSQL(table)
			for _, row := range d.Tables[table] {
				if _, err := tx.ExecContext(ctx, q, row...); err != nil {
					return fmt.Errorf("checkpoint %d: %s: %w", seq, table, err)
				}
			}
		}
		rep.logger.Info("configuration log: caught up from a checkpoint", "seq", seq, "from", s.AppliedSequence(), "host", e.Host)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE config_log_applied SET seq = ?`, int64(seq)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE config_log_checkpoint SET seq = ?`, int64(seq)); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	rep.mu.Lock()
	rep.checkpointSeq = seq
	rep.mu.Unlock()
	s.entryApplied(seq, e.ID, nil)
	return nil
}

// maybeCheckpoint starts writing a checkpoint when the log holds more than
// the configured count of entries since the last one and no write of one
// runs already.
func (s *Store) maybeCheckpoint() {
	rep := s.rep
	if rep.every <= 0 || rep.blobs == nil {
		return
	}
	if rep.mayCheckpoint != nil && !rep.mayCheckpoint() {
		return
	}
	rep.mu.Lock()
	due := rep.applied-rep.checkpointSeq > uint64(rep.every) && !rep.checkpointing
	if due {
		rep.checkpointing = true
	}
	rep.mu.Unlock()
	if !due {
		return
	}
	rep.bg.Add(1)
	go func() {
		defer rep.bg.Done()
		defer func() {
			rep.mu.Lock()
			rep.checkpointing = false
			rep.mu.Unlock()
		}()
		if err := s.checkpointLoop(rep.ctx); err != nil && rep.ctx.Err() == nil {
			rep.logger.Warn("configuration log: checkpoint not written", "err", err)
		}
	}()
}

// checkpointLoop writes a checkpoint until one is in the log (this host's
// or another's). An append that loses to another entry tries again on the
// state with it, unless that entry was a checkpoint.
func (s *Store) checkpointLoop(ctx context.Context) error {
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		done, err := s.writeCheckpoint(ctx)
		if done || err != nil {
			return err
		}
	}
	return errors.New("checkpoint: every attempt lost to other hosts' writes")
}

// writeCheckpoint dumps this host's state once caught up, and appends a
// checkpoint of it after the entry it is at; done is false when another
// entry came first.
func (s *Store) writeCheckpoint(ctx context.Context) (done bool, err error) {
	rep := s.rep
	cctx, cancel := context.WithTimeout(ctx, appendWait+confirmWait)
	err = s.catchUp(cctx)
	cancel()
	if err != nil {
		return false, err
	}
	after, data, err := s.dumpConfiguration(ctx)
	if err != nil {
		return false, err
	}
	rep.mu.Lock()
	due := after-rep.checkpointSeq > uint64(rep.every)
	rep.mu.Unlock()
	if !due {
		return true, nil // another host's checkpoint is in
	}
	sum := sha256.Sum256(data)
	ref := checkpointRef{Blob: checkpointBlob(hex.EncodeToString(sum[:])), Digest: hex.EncodeToString(sum[:])}
	if err := s.putBlob(ctx, ref.Blob, data); err != nil {
		return false, err
	}
	e := entry{V: entryVersion, ID: newEntryID(), Host: rep.host, Op: "Checkpoint", Checkpoint: &ref}
	b, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	actx, cancel := context.WithTimeout(ctx, appendWait)
	seq, err := rep.log.Append(actx, after, e.ID, b)
	cancel()
	if errors.Is(err, ErrLogMoved) {
		return false, nil
	}
	if err != nil {
		// Perhaps in the log all the same: the next due check knows.
		return false, fmt.Errorf("checkpoint after %d: %w", after, err)
	}
	rep.logger.Info("configuration log: checkpoint written", "seq", seq, "dump", ref.Blob, "bytes", len(data))
	if p, ok := rep.log.(Purger); ok {
		// Nothing before the checkpoint is needed any more: a host
		// behind starts from it.
		if err := p.Purge(ctx, seq); err != nil {
			return true, fmt.Errorf("purging the log below checkpoint %d: %w", seq, err)
		}
	}
	return true, nil
}
