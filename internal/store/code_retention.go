package store

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Code retention. A function's zip stays while $LATEST or a published
// version names it; after an update of its code or the deletion of the
// function, nothing may name it any more, and then it is only disk (and
// Lambda's TotalCodeSize, which counts what is kept). PruneCode removes
// such zips from this host's code folder, PruneBlobs from the hosts'
// shared store.
//
// A zip is removed only once it was seen unnamed by two prunes at least
// a grace apart: a zip is put before the function that names it is
// written, and a cold start of the revision an update just replaced may
// still be reading its zip. A put of the zip starts its wait again.

// DefaultCodeGrace is how long a zip stays unnamed before it is removed:
// far longer than a request between its put and its function's write, or
// a cold start, takes.
const DefaultCodeGrace = 10 * time.Minute

// unnamedSince keeps when each zip was first seen unnamed.
type unnamedSince map[string]time.Time

// due says whether name, unnamed now, has been so for at least grace; it
// records the first sighting.
func (u unnamedSince) due(name string, now time.Time, grace time.Duration) bool {
	since, seen := u[name]
	if !seen {
		u[name] = now
		return false
	}
	return now.Sub(since) >= grace
}

// namedCode is the hex digests of the zips $LATEST and the published
// versions name.
func (s *Store) namedCode(ctx context.Context) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT json_extract(config, '$.CodeSha256'), json_extract(config, '$.PackageType') FROM functions
UNION
SELECT json_extract(config, '$.CodeSha256'), json_extract(config, '$.PackageType') FROM versions`)
	if err != nil {
		return nil, fmt.Errorf("named code: %w", err)
	}
	defer rows.Close()
	named := map[string]bool{}
	for rows.Next() {
		var sum, pkg *string
		if err := rows.Scan(&sum, &pkg); err != nil {
			return nil, fmt.Errorf("named code: %w", err)
		}
		if sum == nil || (pkg != nil && *pkg == PackageImage) {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(*sum)
		if err != nil {
			continue // names no zip of the folder
		}
		named[hex.EncodeToString(b)] = true
	}
	return named, rows.Err()
}

// PruneCode removes the zips in this host's code folder that neither
// $LATEST nor a published version of any function names, once seen so
// for grace, returning their digests. The daemon runs it now and then.
func (s *Store) PruneCode(ctx context.Context, grace time.Duration) ([]string, error) {
	// Held across the check and the removal: a PutCode of the same zip
	// waits, then writes it again.
	s.codeMu.Lock()
	defer s.codeMu.Unlock()
	named, err := s.namedCode(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.codeDir)
	if err != nil {
		return nil, fmt.Errorf("prune code: %w", err)
	}
	if s.codeUnnamed == nil {
		s.codeUnnamed = unnamedSince{}
	}
	now := time.Now()
	present := map[string]bool{}
	var removed []string
	for _, e := range entries {
		sum, ok := strings.CutSuffix(e.Name(), ".zip")
		if !ok {
			continue
		}
		present[sum] = true
		if named[sum] || !s.codeUnnamed.due(sum, now, grace) {
			continue
		}
		if err := os.Remove(s.CodePath(sum)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("prune code: %w", err)
		}
		removed = append(removed, sum)
	}
	for sum := range s.codeUnnamed {
		if named[sum] || !present[sum] || slices.Contains(removed, sum) {
			delete(s.codeUnnamed, sum)
		}
	}
	return removed, nil
}

// DefaultBlobGrace is how long a zip in the hosts' store is kept unnamed,
// and after it was last put: another host puts a zip before it appends
// the entry that names it, and may be cold-starting the revision an
// update replaced.
const DefaultBlobGrace = time.Hour

// PruneBlobs deletes from the hosts' store the code and layer zips that
// no function, version or layer version names (as of the log's last
// entry, which this host applies first), once this host has seen them so
// for grace and they were last put more than grace ago, returning their
// names. Checkpoint dumps are left alone. Nothing when standalone or when
// the blobs cannot be listed.
func (s *Store) PruneBlobs(ctx context.Context, grace time.Duration) ([]string, error) {
	if s.rep == nil || s.rep.blobs == nil {
		return nil, nil
	}
	pruner, ok := s.rep.blobs.(BlobPruner)
	if !ok {
		return nil, nil
	}
	// Listed before the names are read: a zip put after the listing is
	// not judged, and one put before it is named by then or young.
	blobs, err := pruner.ListBlobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune blobs: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, appendWait)
	err = s.catchUp(cctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("prune blobs: %w", err)
	}
	code, err := s.namedCode(ctx)
	if err != nil {
		return nil, err
	}
	layers, err := s.namedLayers(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	cutoff := now.Add(-grace)
	var due []string
	s.blobMu.Lock()
	if s.blobUnnamed == nil {
		s.blobUnnamed = unnamedSince{}
	}
	listed := map[string]bool{}
	for _, b := range blobs {
		listed[b.Name] = true
		if blobNamed(b.Name, code, layers) {
			delete(s.blobUnnamed, b.Name)
		} else if s.blobUnnamed.due(b.Name, now, grace) && !b.Put.After(cutoff) {
			due = append(due, b.Name)
		}
	}
	for name := range s.blobUnnamed {
		if !listed[name] {
			delete(s.blobUnnamed, name)
		}
	}
	s.blobMu.Unlock()
	// Not under the lock: a put meanwhile renews the blob, which the
	// delete reads again.
	var deleted []string
	for _, name := range due {
		ok, err := pruner.DeleteBlob(ctx, name, cutoff)
		if err != nil {
			return deleted, fmt.Errorf("prune blobs: %w", err)
		}
		if ok {
			deleted = append(deleted, name)
		}
	}
	return deleted, nil
}

// namedLayers is the hex digests of the layer versions' zips (every row:
// a deleted version stays while a function uses it).
func (s *Store) namedLayers(ctx context.Context) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT json_extract(config, '$.Digest') FROM layer_versions`)
	if err != nil {
		return nil, fmt.Errorf("named layers: %w", err)
	}
	defer rows.Close()
	named := map[string]bool{}
	for rows.Next() {
		var sum *string
		if err := rows.Scan(&sum); err != nil {
			return nil, fmt.Errorf("named layers: %w", err)
		}
		if sum != nil {
			named[*sum] = true
		}
	}
	return named, rows.Err()
}

// blobNamed says whether a blob is named by the configuration: a zip by
// its digest; a checkpoint dump, or anything else, is taken as named.
func blobNamed(name string, code, layers map[string]bool) bool {
	if sum, ok := strings.CutPrefix(name, "code/"); ok {
		return code[sum]
	}
	if sum, ok := strings.CutPrefix(name, "layer/"); ok {
		return layers[sum]
	}
	return true
}
