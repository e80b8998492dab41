package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The event source mappings' table: a mapping's settings as JSON, with
// the columns it is found by. Created with the rest of the schema, IF NOT
// EXISTS, as microvmSchema is.
const esmSchema = `
CREATE TABLE IF NOT EXISTS event_source_mappings (
	uuid      TEXT PRIMARY KEY,
	function  TEXT NOT NULL,
	qualifier TEXT NOT NULL DEFAULT '',
	source    TEXT NOT NULL,
	config    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_source_mappings_by_function ON event_source_mappings (function);
CREATE INDEX IF NOT EXISTS event_source_mappings_by_source ON event_source_mappings (source);
`

// EventSourceMapping is an event source mapping's record: what the API
// was given, validated, and the state the pollers settled it in. The API
// shapes it as Lambda's EventSourceMappingConfiguration.
type EventSourceMapping struct {
	UUID string `json:"uuid"`
	// Function is the function's name, Qualifier its version or alias
	// ("" for $LATEST unqualified).
	Function       string `json:"function"`
	Qualifier      string `json:"qualifier,omitempty"`
	EventSourceArn string `json:"eventSourceArn"`
	BatchSize      int    `json:"batchSize"`
	// MaximumBatchingWindowInSeconds is 0 to 300.
	MaximumBatchingWindowInSeconds int `json:"maximumBatchingWindowInSeconds"`
	// ReportBatchItemFailures is FunctionResponseTypes
	// ["ReportBatchItemFailures"].
	ReportBatchItemFailures bool `json:"reportBatchItemFailures,omitempty"`
	// MaximumConcurrency is ScalingConfig.MaximumConcurrency; 0 for none.
	MaximumConcurrency int `json:"maximumConcurrency,omitempty"`
	// Filters are FilterCriteria.Filters' patterns, as given.
	Filters []string `json:"filters,omitempty"`
	// Enabled is what the caller asked for; State is where the mapping is
	// (Creating, Enabling, Enabled, Updating, Disabling, Disabled,
	// Deleting).
	Enabled               bool      `json:"enabled"`
	State                 string    `json:"state"`
	StateTransitionReason string    `json:"stateTransitionReason,omitempty"`
	LastModified          time.Time `json:"lastModified"`
	LastProcessingResult  string    `json:"lastProcessingResult,omitempty"`
}

// CreateEventSourceMapping stores a new mapping; a UUID taken is
// ErrExists.
func (s *Store) CreateEventSourceMapping(ctx context.Context, m EventSourceMapping) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.write(ctx, "CreateEventSourceMapping", func(w *writeTx) error {
		_, err := w.ExecContext(ctx, sqlInsertESM, m.UUID, m.Function, m.Qualifier, m.EventSourceArn, string(b))
		if isUniqueViolation(err) {
			return fmt.Errorf("event source mapping %s: %w", m.UUID, ErrExists)
		}
		return err
	})
}

// GetEventSourceMapping returns a mapping; ErrNotFound when there is none.
func (s *Store) GetEventSourceMapping(ctx context.Context, uuid string) (EventSourceMapping, error) {
	var cfg string
	err := s.db.QueryRowContext(ctx, `SELECT config FROM event_source_mappings WHERE uuid = ?`, uuid).Scan(&cfg)
	if errors.Is(err, sql.ErrNoRows) {
		return EventSourceMapping{}, fmt.Errorf("event source mapping %s: %w", uuid, ErrNotFound)
	}
	if err != nil {
		return EventSourceMapping{}, err
	}
	return decodeESM(cfg)
}

// UpdateEventSourceMapping changes a mapping with fn, atomically; fn's
// error leaves it as it was.
func (s *Store) UpdateEventSourceMapping(ctx context.Context, uuid string, fn func(*EventSourceMapping) error) (EventSourceMapping, error) {
	var m EventSourceMapping
	err := s.write(ctx, "UpdateEventSourceMapping", func(w *writeTx) error {
		var cfg string
		err := w.QueryRowContext(ctx, `SELECT config FROM event_source_mappings WHERE uuid = ?`, uuid).Scan(&cfg)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("event source mapping %s: %w", uuid, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if m, err = decodeESM(cfg); err != nil {
			return err
		}
		if err := fn(&m); err != nil {
			return err
		}
		m.UUID = uuid
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		_, err = w.ExecContext(ctx, sqlUpdateESM, m.Function, m.Qualifier, m.EventSourceArn, string(b), uuid)
		return err
	})
	if err != nil {
		return EventSourceMapping{}, err
	}
	return m, nil
}

// DeleteEventSourceMapping removes a mapping; one that is not there is
// ErrNotFound.
func (s *Store) DeleteEventSourceMapping(ctx context.Context, uuid string) error {
	return s.write(ctx, "DeleteEventSourceMapping", func(w *writeTx) error {
		res, err := w.ExecContext(ctx, sqlDeleteESM, uuid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("event source mapping %s: %w", uuid, ErrNotFound)
		}
		return nil
	})
}

// ESMFilter picks mappings to list: of a function (and, when Qualifier is
// set, of that qualifier only), of an event source; empty fields pick all.
type ESMFilter struct {
	Function       string
	Qualifier      string
	EventSourceArn string
}

// ListEventSourceMappings returns up to max mappings after marker (a UUID
// the previous page ended with), in UUID order, and the marker of the next
// page ("" at the end).
func (s *Store) ListEventSourceMappings(ctx context.Context, f ESMFilter, marker string, max int) ([]EventSourceMapping, string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT config FROM event_source_mappings
		WHERE uuid > ? AND (? = '' OR function = ?) AND (? = '' OR qualifier = ?) AND (? = '' OR source = ?)
		ORDER BY uuid LIMIT ?`,
		marker, f.Function, f.Function, f.Qualifier, f.Qualifier, f.EventSourceArn, f.EventSourceArn, max+1)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []EventSourceMapping
	for rows.Next() {
		var cfg string
		if err := rows.Scan(&cfg); err != nil {
			return nil, "", err
		}
		m, err := decodeESM(cfg)
		if err != nil {
			return nil, "", err
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > max {
		out = out[:max]
		next = out[max-1].UUID
	}
	return out, next, nil
}

func decodeESM(cfg string) (EventSourceMapping, error) {
	var m EventSourceMapping
	if err := json.Unmarshal([]byte(cfg), &m); err != nil {
		return m, fmt.Errorf("event source mapping record: %w", err)
	}
	return m, nil
}
