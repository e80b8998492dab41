package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Seeding: a standalone host's configuration becomes a cluster's. The
// first host to follow an empty log brings its configuration into it, as
// entries of INSERT OR REPLACE statements (one per row), after putting its
// zips in the hosts' store; any other host with a configuration of its own
// is refused (its configuration would have to be merged, which Hearth
// does not guess). The host's own SQLite is left as it was: applying the
// seed on it writes the rows it has.

// seedColumns are each replicated table's columns, as the seed writes
// them.
var seedColumns = map[string][]string{
	"functions":              {"name", "config", "version_seq", "concurrency"},
	"versions":               {"name", "version", "config"},
	"aliases":                {"name", "alias", "version", "description", "revision"},
	"url_configs":            {"function", "qualifier", "url_id", "config"},
	"tags":                   {"function", "key", "value"},
	"policies":               {"function", "qualifier", "revision", "document"},
	"layers":                 {"name", "version_seq"},
	"layer_versions":         {"name", "version", "config", "deleted", "revision", "policy"},
	"event_invoke_configs":   {"function", "qualifier", "config"},
	"event_source_mappings":  {"uuid", "function", "qualifier", "source", "config"},
	"queues":                 {"name", "id", "attributes", "created", "modified"},
	"microvm_images":         {"name", "description", "version_seq", "created", "updated"},
	"microvm_image_versions": {"image", "version", "input", "digest", "state", "reason", "template_dir", "created", "built"},
}

// seedSQL is the statement that seeds a table's row.
func seedSQL(table string) string {
	cols := seedColumns[table]
	return "INSERT OR REPLACE INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
}

// seedStatements are the seed's statements, for replicatedSQL.
func seedStatements() []string {
	out := make([]string, 0, len(replicatedTables))
	for _, t := range replicatedTables {
		out = append(out, seedSQL(t))
	}
	return out
}

// maxSeedEntry bounds a seed entry's size, under NATS's default maximum
// message (1 MB).
const maxSeedEntry = 512 << 10

// seed appends this host's configuration to the empty log, in entries
// of at most maxSeedEntry, each after the previous; ErrLogMoved when
// another host's entry came first (another host seeded).
func (s *Store) seed(ctx context.Context, r Replication) error {
	if r.Blobs != nil {
		if err := s.seedBlobs(ctx, r.Blobs); err != nil {
			return err
		}
	}
	var entries [][]byte
	var stmts []statement
	size := 0
	flush := func() error {
		if len(stmts) == 0 {
			return nil
		}
		b, err := json.Marshal(entry{V: entryVersion, ID: newEntryID(), Host: r.Host, Op: "Seed", Stmts: stmts})
		if err != nil {
			return err
		}
		entries = append(entries, b)
		stmts, size = nil, 0
		return nil
	}
	for _, table := range replicatedTables {
		cols := seedColumns[table]
		rows, err := s.db.QueryContext(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+table)
		if err != nil {
			return err
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return err
			}
			w := &writeTx{}
			if _, err := w.record(seedSQL(table), vals); err != nil {
				rows.Close()
				return fmt.Errorf("seed %s: %w", table, err)
			}
			st := w.stmts[0]
			b, _ := json.Marshal(st)
			if size+len(b) > maxSeedEntry {
				if err := flush(); err != nil {
					rows.Close()
					return err
				}
			}
			stmts, size = append(stmts, st), size+len(b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	var after uint64
	for _, e := range entries {
		var id struct{ ID string }
		_ = json.Unmarshal(e, &id)
		seq, err := r.Log.Append(ctx, after, id.ID, e)
		if err != nil {
			return fmt.Errorf("seeding the configuration log: %w", err)
		}
		after = seq
	}
	r.Logger.Info("configuration log seeded with this host's configuration", "entries", len(entries))
	return nil
}

// seedBlobs puts every zip this host has in the hosts' store.
func (s *Store) seedBlobs(ctx context.Context, blobs Blobs) error {
	for dir, name := range map[string]func(string) string{s.codeDir: codeBlob, s.layerDir: layerBlob} {
		files, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, f := range files {
			sum, ok := strings.CutSuffix(f.Name(), ".zip")
			if !ok || f.IsDir() {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, f.Name()))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if err := blobs.PutBlob(ctx, name(sum), data); err != nil {
				return fmt.Errorf("seed zip %s: %w", f.Name(), err)
			}
		}
	}
	return nil
}
