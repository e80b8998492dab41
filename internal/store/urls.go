package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// URLConfig is a function URL's configuration, in the shape of the Lambda
// API's FunctionUrlConfig.
type URLConfig struct {
	FunctionURL      string `json:"FunctionUrl"`
	FunctionArn      string `json:"FunctionArn"`
	AuthType         string `json:"AuthType"`
	Cors             *Cors  `json:"Cors,omitempty"`
	CreationTime     string `json:"CreationTime"`
	LastModifiedTime string `json:"LastModifiedTime"`
	InvokeMode       string `json:"InvokeMode"`
	// URLID is the URL's id, the host name's first label; Function and
	// Qualifier say what it invokes.
	URLID     string `json:"-"`
	Function  string `json:"-"`
	Qualifier string `json:"-"`
}

// Cors is a function URL's CORS configuration.
type Cors struct {
	AllowCredentials bool     `json:"AllowCredentials,omitempty"`
	AllowHeaders     []string `json:"AllowHeaders,omitempty"`
	AllowMethods     []string `json:"AllowMethods,omitempty"`
	AllowOrigins     []string `json:"AllowOrigins,omitempty"`
	ExposeHeaders    []string `json:"ExposeHeaders,omitempty"`
	MaxAge           int      `json:"MaxAge,omitempty"`
}

type urlRow struct {
	URLConfig
	URLID     string `json:"urlId"`
	Function  string `json:"function"`
	Qualifier string `json:"qualifier"`
}

func (r urlRow) config() URLConfig {
	c := r.URLConfig
	c.URLID, c.Function, c.Qualifier = r.URLID, r.Function, r.Qualifier
	return c
}

// PutURLConfig creates a function URL config, or with update true replaces
// one.
func (s *Store) PutURLConfig(ctx context.Context, c URLConfig, update bool) error {
	b, err := json.Marshal(urlRow{URLConfig: c, URLID: c.URLID, Function: c.Function, Qualifier: c.Qualifier})
	if err != nil {
		return err
	}
	return s.write(ctx, "PutURLConfig", func(w *writeTx) error {
		if update {
			res, err := w.ExecContext(ctx, sqlUpdateURLConfig, string(b), c.Function, c.Qualifier)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("url config of %s: %w", c.Function, ErrNotFound)
			}
			return nil
		}
		_, err := w.ExecContext(ctx, sqlInsertURLConfig, c.Function, c.Qualifier, c.URLID, string(b))
		if err != nil && strings.Contains(err.Error(), "UNIQUE") {
			return fmt.Errorf("url config of %s: %w", c.Function, ErrExists)
		}
		return err
	})
}

func scanURL(row interface{ Scan(...any) error }) (URLConfig, error) {
	var cfg string
	if err := row.Scan(&cfg); err != nil {
		return URLConfig{}, err
	}
	var r urlRow
	if err := json.Unmarshal([]byte(cfg), &r); err != nil {
		return URLConfig{}, err
	}
	return r.config(), nil
}

// URLConfig returns a function's URL config at a qualifier ("" for none).
func (s *Store) URLConfig(ctx context.Context, function, qualifier string) (URLConfig, error) {
	c, err := scanURL(s.db.QueryRowContext(ctx, `SELECT config FROM url_configs WHERE function = ? AND qualifier = ?`, function, qualifier))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("url config of %s: %w", function, ErrNotFound)
	}
	return c, err
}

// URLConfigByID finds the URL config a request's URL id names.
func (s *Store) URLConfigByID(ctx context.Context, id string) (URLConfig, error) {
	c, err := scanURL(s.db.QueryRowContext(ctx, `SELECT config FROM url_configs WHERE url_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("function url %s: %w", id, ErrNotFound)
	}
	return c, err
}

// URLConfigs lists a function's URL configs.
func (s *Store) URLConfigs(ctx context.Context, function string) ([]URLConfig, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT config FROM url_configs WHERE function = ? ORDER BY qualifier`, function)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []URLConfig
	for rows.Next() {
		c, err := scanURL(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteURLConfig removes a function's URL config; with qualifier "*" all
// of them (the function is being deleted).
func (s *Store) DeleteURLConfig(ctx context.Context, function, qualifier string) error {
	return s.write(ctx, "DeleteURLConfig", func(w *writeTx) error {
		if qualifier == "*" {
			_, err := w.ExecContext(ctx, sqlDeleteURLConfigs, function)
			return err
		}
		res, err := w.ExecContext(ctx, sqlDeleteURLConfig, function, qualifier)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("url config of %s: %w", function, ErrNotFound)
		}
		return nil
	})
}
