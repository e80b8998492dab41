package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Policy is a function's resource-based policy at one qualifier, as the
// Lambda API stores and returns it. Hearth keeps it for the tools that
// manage it; it does not evaluate it.
type Policy struct {
	Document   PolicyDocument
	RevisionID string
}

// PolicyDocument is an IAM policy document.
type PolicyDocument struct {
	Version   string            `json:"Version"`
	ID        string            `json:"Id"`
	Statement []PolicyStatement `json:"Statement"`
}

// PolicyStatement is one statement of a policy, in the field order Lambda
// writes. Principal is "*" or an object such as {"Service": "s3.amazonaws.com"}.
type PolicyStatement struct {
	Sid       string                       `json:"Sid"`
	Effect    string                       `json:"Effect"`
	Principal any                          `json:"Principal"`
	Action    string                       `json:"Action"`
	Resource  string                       `json:"Resource"`
	Condition map[string]map[string]string `json:"Condition,omitempty"`
}

// GetPolicy returns a function's policy at qualifier ("" for the
// unqualified function); ErrNotFound when it has none.
func (s *Store) GetPolicy(ctx context.Context, function, qualifier string) (Policy, error) {
	return getPolicy(ctx, s.db, function, qualifier)
}

func getPolicy(ctx context.Context, q querier, function, qualifier string) (Policy, error) {
	var p Policy
	var doc string
	err := q.QueryRowContext(ctx, `SELECT revision, document FROM policies WHERE function = ? AND qualifier = ?`, function, qualifier).Scan(&p.RevisionID, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("policy of %s: %w", function, ErrNotFound)
	}
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(doc), &p.Document); err != nil {
		return p, fmt.Errorf("stored policy of %s: %w", function, err)
	}
	return p, nil
}

// UpdatePolicy changes a function's policy at qualifier with fn,
// atomically. fn gets the current policy, or an empty one when there is
// none; a policy left with no statement is removed, as Lambda does.
// revision is the new revision id.
func (s *Store) UpdatePolicy(ctx context.Context, function, qualifier, revision string, fn func(*Policy) error) error {
	return s.write(ctx, "UpdatePolicy", func(w *writeTx) error {
		var one int
		err := w.QueryRowContext(ctx, `SELECT 1 FROM functions WHERE name = ?`, function).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("function %s: %w", function, ErrNotFound)
		}
		if err != nil {
			return err
		}
		p, err := getPolicy(ctx, w, function, qualifier)
		if errors.Is(err, ErrNotFound) {
			p, err = Policy{Document: PolicyDocument{Version: "2012-10-17", ID: "default"}}, nil
		}
		if err != nil {
			return err
		}
		if err := fn(&p); err != nil {
			return err
		}
		if len(p.Document.Statement) == 0 {
			_, err = w.ExecContext(ctx, sqlDeletePolicy, function, qualifier)
			return err
		}
		doc, err := json.Marshal(p.Document)
		if err != nil {
			return err
		}
		_, err = w.ExecContext(ctx, sqlPutPolicy, function, qualifier, revision, string(doc))
		return err
	})
}
