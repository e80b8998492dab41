package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
)

// OpenSlots makes (or opens) the slots' bucket, replicated as the
// membership's, and returns this member's slots, started.
func OpenSlots(ctx context.Context, m *Member) (*Slots, error) {
	var kv jetstream.KeyValue
	err := retry(ctx, func(ctx context.Context) (err error) {
		kv, err = m.cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SlotsBucket,
			Description: "Hearth hosts' concurrency slots", History: 1, Storage: jetstream.FileStorage, Replicas: m.cfg.Replicas})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: slots bucket: %w", err)
	}
	s := NewSlots(SlotsConfig{KV: JetStreamSlots(kv), Node: m.cfg.Node, Hosts: memberView{m}, Beats: m,
		FenceAfter: m.cfg.DownAfter - m.cfg.Interval, Grace: 2 * m.cfg.Interval, Tick: m.cfg.Interval,
		Log: m.cfg.Log.With(slog.String("part", "slots"))})
	s.Start(ctx)
	return s, nil
}

// JetStreamSlots is a JetStream key-value bucket as the slots' store.
func JetStreamSlots(kv jetstream.KeyValue) SlotsKV { return jsSlots{kv} }

type jsSlots struct{ kv jetstream.KeyValue }

func (j jsSlots) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := j.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

func (j jsSlots) Put(ctx context.Context, key string, value []byte, rev uint64) error {
	var err error
	if rev == 0 {
		_, err = j.kv.Create(ctx, key, value)
	} else {
		_, err = j.kv.Update(ctx, key, value, rev)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("%w: %w", errConflict, err)
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: %w", errConflict, err)
	}
	return err
}

func (j jsSlots) Keys(ctx context.Context) ([]string, error) {
	l, err := j.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// memberView reports gone the hosts the membership sees down or stopped.
type memberView struct{ m *Member }

func (v memberView) Gone(node string) bool {
	h, ok := v.m.host(node)
	return ok && (h.State == StateDown || h.State == StateStopped)
}
