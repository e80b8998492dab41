package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hearthdev/hearth/internal/broker"
	"log/slog"

	"github.com/nats-io/nats.go"
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
	s := NewSlots(SlotsConfig{KV: JetStreamSlots(m.cfg.JetStream, kv), Node: m.cfg.Node, Hosts: memberView{m}, Beats: m,
		FenceAfter: m.cfg.DownAfter - m.cfg.Interval, Grace: 2 * m.cfg.Interval, Tick: m.cfg.Interval, LeaderWait: broker.LeaderWait,
		Log: m.cfg.Log.With(slog.String("part", "slots"))})
	s.Start(ctx)
	return s, nil
}

// JetStreamSlots is a JetStream key-value bucket as the slots' store.
func JetStreamSlots(js jetstream.JetStream, kv jetstream.KeyValue) SlotsKV {
	prefix := js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	return jsSlots{kv: kv, nc: js.Conn(), get: prefix + "STREAM.MSG.GET.KV_" + kv.Bucket(), subject: "$KV." + kv.Bucket() + "."}
}

type jsSlots struct {
	kv           jetstream.KeyValue
	nc           *nats.Conn
	get, subject string
}

// Get reads through the stream's leader, not a replica: a bucket's own
// Get may be answered by any replica (direct get), one a little behind,
// and a slot value read stale could make a host believe it gave back
// what the bucket still says it holds.
func (j jsSlots) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": j.subject + key})
	if err != nil {
		return nil, 0, err
	}
	msg, err := j.nc.RequestWithContext(ctx, j.get, req)
	if err != nil {
		return nil, 0, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Sequence uint64 `json:"seq"`
			Data     []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, fmt.Errorf("slot %s: %w", key, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, 0, nil
	case resp.Error != nil:
		return nil, 0, resp.Error
	case resp.Message == nil:
		return nil, 0, fmt.Errorf("slot %s: an empty answer", key)
	}
	return resp.Message.Data, resp.Message.Sequence, nil
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
