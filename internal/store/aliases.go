package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Alias names a version of a function.
type Alias struct {
	AliasArn        string `json:"AliasArn"`
	Name            string `json:"Name"`
	FunctionVersion string `json:"FunctionVersion"`
	Description     string `json:"Description"`
	RevisionID      string `json:"RevisionId"`
}

// PutAlias creates an alias, or with update true changes one.
func (s *Store) PutAlias(ctx context.Context, function string, a Alias, update bool) error {
	defer s.configChanged()
	return s.write(ctx, "PutAlias", func(w *writeTx) error {
		if update {
			res, err := w.ExecContext(ctx, sqlUpdateAlias, a.FunctionVersion, a.Description, a.RevisionID, function, a.Name)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("alias %s:%s: %w", function, a.Name, ErrNotFound)
			}
			return nil
		}
		_, err := w.ExecContext(ctx, sqlInsertAlias, function, a.Name, a.FunctionVersion, a.Description, a.RevisionID)
		if err != nil && strings.Contains(err.Error(), "UNIQUE") {
			return fmt.Errorf("alias %s:%s: %w", function, a.Name, ErrExists)
		}
		return err
	})
}

// GetAlias returns an alias.
func (s *Store) GetAlias(ctx context.Context, function, name string) (Alias, error) {
	a := Alias{Name: name}
	err := s.db.QueryRowContext(ctx, `SELECT version, description, revision FROM aliases WHERE name = ? AND alias = ?`, function, name).
		Scan(&a.FunctionVersion, &a.Description, &a.RevisionID)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("alias %s:%s: %w", function, name, ErrNotFound)
	}
	return a, err
}

// ListAliases returns a function's aliases.
func (s *Store) ListAliases(ctx context.Context, function string) ([]Alias, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT alias, version, description, revision FROM aliases WHERE name = ? ORDER BY alias`, function)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Alias
	for rows.Next() {
		var a Alias
		if err := rows.Scan(&a.Name, &a.FunctionVersion, &a.Description, &a.RevisionID); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteAlias removes an alias.
func (s *Store) DeleteAlias(ctx context.Context, function, name string) error {
	defer s.configChanged()
	return s.write(ctx, "DeleteAlias", func(w *writeTx) error {
		_, err := w.ExecContext(ctx, sqlDeleteAlias, function, name)
		return err
	})
}

// Resolve returns a function at a qualifier: "" or "$LATEST", a version
// number, or an alias (resolved to its version). Every reader that takes
// a qualifier — the API, the invocation path — resolves it here.
func (s *Store) Resolve(ctx context.Context, function, qualifier string) (Function, error) {
	version := qualifier
	if qualifier != "" && qualifier != "$LATEST" {
		if _, err := strconv.Atoi(qualifier); err != nil {
			a, err := s.GetAlias(ctx, function, qualifier)
			if err != nil {
				return Function{}, err
			}
			version = a.FunctionVersion
		}
	}
	return s.GetVersion(ctx, function, version)
}
