package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hearthdev/hearth/internal/atomicfile"
)

// Layers: each layer name has versions numbered from 1, never reused (the
// layers table keeps the last number given even once every version is
// deleted). A version's zip is kept in the layers folder, named by its
// SHA-256. A deleted version that a function ($LATEST or a published
// version) still names is kept, hidden from the API, as Lambda keeps a copy
// for the functions that use it; prune removes it, and its zip, once none
// does.

// LayerVersion is one published version of a layer.
type LayerVersion struct {
	LayerName       string   `json:"LayerName"`
	Version         int64    `json:"Version"`
	LayerArn        string   `json:"LayerArn"`
	LayerVersionArn string   `json:"LayerVersionArn"`
	Description     string   `json:"Description"`
	LicenseInfo     string   `json:"LicenseInfo"`
	CreatedDate     string   `json:"CreatedDate"`
	Runtimes        []string `json:"CompatibleRuntimes"`
	Architectures   []string `json:"CompatibleArchitectures"`
	// CodeSha256 is the zip's SHA-256 in base64 (as Lambda reports it),
	// Digest in hex (as the layers folder names it); CodeSize is the zip's
	// size and UnzippedSize what it takes once unpacked in /opt.
	CodeSha256   string `json:"CodeSha256"`
	Digest       string `json:"Digest"`
	CodeSize     int64  `json:"CodeSize"`
	UnzippedSize int64  `json:"UnzippedSize"`
}

// Layer is a layer version a function uses, as Lambda's
// FunctionConfiguration lists it.
type Layer struct {
	Arn      string `json:"Arn"`
	CodeSize int64  `json:"CodeSize"`
}

// LayerPath is where the zip of the layer version with this hex digest is.
func (s *Store) LayerPath(hexSum string) string {
	return filepath.Join(s.layerDir, hexSum+".zip")
}

// writeOnce writes data to p unless p exists, through a temporary file so
// that p is never seen half-written, and durably (file and folder synced).
func writeOnce(p string, data []byte) error {
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return atomicfile.Write(p, data, 0o600)
}

// PublishLayerVersion stores zip and lv as the next version of
// lv.LayerName; layerArn is the layer's ARN, which the version's ARN
// extends with its number. The caller has validated the zip.
func (s *Store) PublishLayerVersion(ctx context.Context, lv LayerVersion, layerArn string, zip []byte) (LayerVersion, error) {
	sum := sha256.Sum256(zip)
	lv.Digest = hex.EncodeToString(sum[:])
	lv.CodeSha256 = base64.StdEncoding.EncodeToString(sum[:])
	lv.CodeSize = int64(len(zip))
	lv.LayerArn = layerArn
	// The lock orders this against prune, which may remove a zip of the
	// same digest once no row names it.
	s.layerMu.Lock()
	defer s.layerMu.Unlock()
	if err := writeOnce(s.LayerPath(lv.Digest), zip); err != nil {
		return LayerVersion{}, fmt.Errorf("store layer %s: %w", lv.LayerName, err)
	}
	// In the hosts' store before any host can see the version.
	if err := s.putBlob(ctx, layerBlob(lv.Digest), zip); err != nil {
		return LayerVersion{}, fmt.Errorf("store layer %s: %w", lv.LayerName, err)
	}
	out := lv
	err := s.write(ctx, "PublishLayerVersion", func(w *writeTx) error {
		out = lv
		if err := w.returning(ctx, sqlNextLayerVersion, []any{lv.LayerName}, &out.Version); err != nil {
			return err
		}
		out.LayerVersionArn = layerArn + ":" + strconv.FormatInt(out.Version, 10)
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = w.ExecContext(ctx, sqlInsertLayerVersion, out.LayerName, out.Version, string(b))
		return err
	})
	if err != nil {
		return LayerVersion{}, err
	}
	return out, nil
}

func decodeLayerVersion(cfg string) (LayerVersion, error) {
	var lv LayerVersion
	if err := json.Unmarshal([]byte(cfg), &lv); err != nil {
		return lv, fmt.Errorf("stored layer version: %w", err)
	}
	return lv, nil
}

// GetLayerVersion returns a version that was not deleted; ErrNotFound
// otherwise.
func (s *Store) GetLayerVersion(ctx context.Context, name string, version int64) (LayerVersion, error) {
	var cfg string
	err := s.db.QueryRowContext(ctx, `SELECT config FROM layer_versions WHERE name = ? AND version = ? AND deleted = 0`, name, version).Scan(&cfg)
	if errors.Is(err, sql.ErrNoRows) {
		return LayerVersion{}, fmt.Errorf("layer %s version %d: %w", name, version, ErrNotFound)
	}
	if err != nil {
		return LayerVersion{}, err
	}
	return decodeLayerVersion(cfg)
}

// ListLayerVersions returns the versions of a layer that were not deleted,
// newest first (none for a layer that does not exist).
func (s *Store) ListLayerVersions(ctx context.Context, name string) ([]LayerVersion, error) {
	return s.queryLayerVersions(ctx, `SELECT config FROM layer_versions WHERE name = ? AND deleted = 0 ORDER BY version DESC`, name)
}

// ListLayers returns, for each layer in name order after marker, its newest
// version that was not deleted and that match accepts, up to max of them,
// and the marker of the next page ("" at the end).
func (s *Store) ListLayers(ctx context.Context, marker string, max int, match func(LayerVersion) bool) ([]LayerVersion, string, error) {
	all, err := s.queryLayerVersions(ctx, `SELECT config FROM layer_versions WHERE name > ? AND deleted = 0 ORDER BY name, version DESC`, marker)
	if err != nil {
		return nil, "", err
	}
	var out []LayerVersion
	for _, lv := range all {
		if len(out) > 0 && out[len(out)-1].LayerName == lv.LayerName {
			continue // an older version of a layer already listed
		}
		if !match(lv) {
			continue
		}
		if len(out) == max {
			return out, out[max-1].LayerName, nil
		}
		out = append(out, lv)
	}
	return out, "", nil
}

func (s *Store) queryLayerVersions(ctx context.Context, query string, args ...any) ([]LayerVersion, error) {
	return queryLayerVersions(ctx, s.db, query, args...)
}

func queryLayerVersions(ctx context.Context, q querier, query string, args ...any) ([]LayerVersion, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []LayerVersion
	for rows.Next() {
		var cfg string
		if err := rows.Scan(&cfg); err != nil {
			return nil, err
		}
		lv, err := decodeLayerVersion(cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, lv)
	}
	return out, rows.Err()
}

// DeleteLayerVersion deletes a version: it is no longer listed nor found,
// and no function can start using it. Deleting a version that does not
// exist is no error, as in Lambda. Functions that use it keep it: see
// PruneLayers.
func (s *Store) DeleteLayerVersion(ctx context.Context, name string, version int64) error {
	err := s.write(ctx, "DeleteLayerVersion", func(w *writeTx) error {
		_, err := w.ExecContext(ctx, sqlMarkLayerVersionDeleted, name, version)
		return err
	})
	if err != nil {
		return err
	}
	return s.PruneLayers(ctx)
}

// layerInUse is whether a function's $LATEST or a published version names
// the layer version arn.
const layerInUse = `SELECT EXISTS (SELECT 1 FROM functions, json_each(functions.config, '$.Layers') AS l WHERE json_extract(l.value, '$.Arn') = ?1)
	OR EXISTS (SELECT 1 FROM versions, json_each(versions.config, '$.Layers') AS l WHERE json_extract(l.value, '$.Arn') = ?1)`

// PruneLayers removes the deleted layer versions no function uses any
// more, and their zips when no other version has the same content. It runs
// when a layer version is deleted and when the store opens; the API runs
// it too when a function stops using layers.
func (s *Store) PruneLayers(ctx context.Context) error {
	s.layerMu.Lock()
	defer s.layerMu.Unlock()
	var pruned []LayerVersion
	err := s.write(ctx, "PruneLayers", func(w *writeTx) error {
		pruned = nil
		deleted, err := queryLayerVersions(ctx, w, `SELECT config FROM layer_versions WHERE deleted = 1`)
		if err != nil {
			return err
		}
		for _, lv := range deleted {
			var used bool
			if err := w.QueryRowContext(ctx, layerInUse, lv.LayerVersionArn).Scan(&used); err != nil {
				return fmt.Errorf("prune layer %s: %w", lv.LayerVersionArn, err)
			}
			if used {
				continue
			}
			if _, err := w.ExecContext(ctx, sqlDeleteLayerVersion, lv.LayerName, lv.Version); err != nil {
				return err
			}
			pruned = append(pruned, lv)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The zips no version names any more: this host's copies (the hosts'
	// store keeps every zip, as a host may still run a function that
	// names it).
	for _, lv := range pruned {
		var shared bool
		if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM layer_versions WHERE json_extract(config, '$.Digest') = ?)`, lv.Digest).Scan(&shared); err != nil {
			return err
		}
		if !shared {
			if err := os.Remove(s.LayerPath(lv.Digest)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// FunctionLayers returns the layer versions f uses, in its order (the
// order they are unpacked into /opt), deleted ones included: a function
// keeps the layers it was given. Their zips are at LayerPath(Digest).
func (s *Store) FunctionLayers(ctx context.Context, f Function) ([]LayerVersion, error) {
	out := make([]LayerVersion, 0, len(f.Layers))
	for _, l := range f.Layers {
		var cfg string
		err := s.db.QueryRowContext(ctx, `SELECT config FROM layer_versions WHERE json_extract(config, '$.LayerVersionArn') = ?`, l.Arn).Scan(&cfg)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("layer %s of function %s: %w", l.Arn, f.FunctionName, ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		lv, err := decodeLayerVersion(cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, lv)
	}
	return out, nil
}

// GetLayerVersionPolicy returns a layer version's policy; ErrNotFound when
// the version does not exist or has none.
func (s *Store) GetLayerVersionPolicy(ctx context.Context, name string, version int64) (Policy, error) {
	var p Policy
	var doc string
	err := s.db.QueryRowContext(ctx, `SELECT revision, policy FROM layer_versions WHERE name = ? AND version = ? AND deleted = 0`, name, version).Scan(&p.RevisionID, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("layer %s version %d: %w", name, version, ErrNotFound)
	}
	if err != nil {
		return p, err
	}
	if doc == "" {
		return p, fmt.Errorf("policy of layer %s version %d: %w", name, version, ErrNotFound)
	}
	if err := json.Unmarshal([]byte(doc), &p.Document); err != nil {
		return p, fmt.Errorf("stored policy of layer %s: %w", name, err)
	}
	return p, nil
}

// UpdateLayerVersionPolicy changes a layer version's policy with fn,
// atomically, as UpdatePolicy does a function's; revision is the new
// revision id.
func (s *Store) UpdateLayerVersionPolicy(ctx context.Context, name string, version int64, revision string, fn func(*Policy) error) (Policy, error) {
	var p Policy
	err := s.write(ctx, "UpdateLayerVersionPolicy", func(w *writeTx) error {
		p = Policy{}
		var doc string
		err := w.QueryRowContext(ctx, `SELECT revision, policy FROM layer_versions WHERE name = ? AND version = ? AND deleted = 0`, name, version).Scan(&p.RevisionID, &doc)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("layer %s version %d: %w", name, version, ErrNotFound)
		}
		if err != nil {
			return err
		}
		p.Document = PolicyDocument{Version: "2012-10-17", ID: "default"}
		if doc != "" {
			if err := json.Unmarshal([]byte(doc), &p.Document); err != nil {
				return fmt.Errorf("stored policy of layer %s: %w", name, err)
			}
		}
		if err := fn(&p); err != nil {
			return err
		}
		p.RevisionID, doc = revision, ""
		if len(p.Document.Statement) > 0 {
			b, err := json.Marshal(p.Document)
			if err != nil {
				return err
			}
			doc = string(b)
		} else {
			p.RevisionID = ""
		}
		_, err = w.ExecContext(ctx, sqlSetLayerVersionPolicy, p.RevisionID, doc, name, version)
		return err
	})
	if err != nil {
		return Policy{}, err
	}
	return p, nil
}
