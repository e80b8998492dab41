package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// eventInvokeSchema holds the functions' asynchronous invocation settings,
// one row per function and qualifier ("$LATEST", a version or an alias);
// appended to schema, IF NOT EXISTS, so an older database gains it.
const eventInvokeSchema = `
CREATE TABLE IF NOT EXISTS event_invoke_configs (
	function  TEXT NOT NULL,
	qualifier TEXT NOT NULL,
	config    TEXT NOT NULL,
	PRIMARY KEY (function, qualifier)
);
`

// EventInvokeConfig is a function's asynchronous invocation settings, in
// the shape of the Lambda API's FunctionEventInvokeConfig. LastModified is
// in seconds since the epoch, as restJson1 writes a timestamp.
type EventInvokeConfig struct {
	FunctionArn              string             `json:"FunctionArn"`
	LastModified             float64            `json:"LastModified"`
	MaximumRetryAttempts     *int               `json:"MaximumRetryAttempts,omitempty"`
	MaximumEventAgeInSeconds *int               `json:"MaximumEventAgeInSeconds,omitempty"`
	DestinationConfig        *DestinationConfig `json:"DestinationConfig,omitempty"`
}

// DestinationConfig says where the records of asynchronous invocations go.
type DestinationConfig struct {
	OnSuccess *Destination `json:"OnSuccess,omitempty"`
	OnFailure *Destination `json:"OnFailure,omitempty"`
}

// Destination is a queue's or a function's ARN; empty for none.
type Destination struct {
	Destination string `json:"Destination,omitempty"`
}

// DeadLetterConfig is where a function's failed asynchronous events go
// (the event alone): a queue's ARN.
type DeadLetterConfig struct {
	TargetArn string `json:"TargetArn,omitempty"`
}

// PutEventInvokeConfig stores a function's asynchronous invocation
// settings at qualifier, replacing any.
func (s *Store) PutEventInvokeConfig(ctx context.Context, function, qualifier string, c EventInvokeConfig) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.write(ctx, "PutEventInvokeConfig", func(w *writeTx) error {
		_, err := w.ExecContext(ctx, sqlPutEventInvokeConfig, function, qualifier, string(b))
		return err
	})
}

// EventInvokeConfig returns a function's settings at qualifier;
// ErrNotFound when it has none.
func (s *Store) EventInvokeConfig(ctx context.Context, function, qualifier string) (EventInvokeConfig, error) {
	var raw string
	err := s.db.QueryRowContext(ctx, `SELECT config FROM event_invoke_configs WHERE function = ? AND qualifier = ?`, function, qualifier).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return EventInvokeConfig{}, fmt.Errorf("event invoke config of %s:%s: %w", function, qualifier, ErrNotFound)
	}
	if err != nil {
		return EventInvokeConfig{}, err
	}
	var c EventInvokeConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return EventInvokeConfig{}, fmt.Errorf("event invoke config of %s:%s: %w", function, qualifier, err)
	}
	return c, nil
}

// EventInvokeConfigs lists a function's settings, by qualifier.
func (s *Store) EventInvokeConfigs(ctx context.Context, function string) ([]EventInvokeConfig, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT config FROM event_invoke_configs WHERE function = ? ORDER BY qualifier`, function)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []EventInvokeConfig
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		var c EventInvokeConfig
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteEventInvokeConfig removes a function's settings at qualifier;
// with qualifier "*" all of them (the function is being deleted).
func (s *Store) DeleteEventInvokeConfig(ctx context.Context, function, qualifier string) error {
	return s.write(ctx, "DeleteEventInvokeConfig", func(w *writeTx) error {
		if qualifier == "*" {
			_, err := w.ExecContext(ctx, sqlDeleteEventInvokeConfigs, function)
			return err
		}
		res, err := w.ExecContext(ctx, sqlDeleteEventInvokeConfig, function, qualifier)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("event invoke config of %s:%s: %w", function, qualifier, ErrNotFound)
		}
		return nil
	})
}
