// Package configlog keeps the hosts' shared configuration on JetStream:
// the ordered log of configuration writes (a stream, replicated as the
// cluster's streams are) that every host's store applies in order, and the
// code and layer zips by digest (an object store). It implements the
// store's Log and Blobs; the store owns what an entry means.
package configlog

import (
	"context"
	"errors"
	"fmt"
	"github.com/hearthdev/hearth/internal/broker"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/store"
)

// The names the log and the zips go by on JetStream.
const (
	DefaultStream  = "HEARTH_CONFIG"
	DefaultSubject = "hearth.config.log"
	DefaultBucket  = "HEARTH_ZIPS"
)

// Config is where the log and the zips are.
type Config struct {
	JetStream jetstream.JetStream
	// Replicas is how many servers keep each (1 on a standalone broker;
	// the cluster's Replicas() in a cluster).
	Replicas int
	// Stream, Subject and Bucket default to DefaultStream,
	// DefaultSubject and DefaultBucket.
	Stream, Subject, Bucket string
}

// Log is the configuration log and the zips.
type Log struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	zips    jetstream.ObjectStore
	name    string
	subject string
	// purgeDenied: the stream was made before compaction, denying
	// purges, which JetStream does not let a stream's update undo.
	purgeDenied bool
}

// Open makes (or keeps) the stream and the object store.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.JetStream == nil {
		return nil, errors.New("configlog: no JetStream")
	}
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Subject == "" {
		cfg.Subject = DefaultSubject
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	var stream jetstream.Stream
	sc := streamConfig(cfg)
	err := broker.Retry(ctx, func(ctx context.Context) (err error) {
		if old, err := cfg.JetStream.Stream(ctx, cfg.Stream); err == nil && old.CachedInfo().Config.DenyPurge {
			sc.DenyPurge = true // an update may not allow purges again
		}
		stream, err = cfg.JetStream.CreateOrUpdateStream(ctx, sc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("configlog: stream %s: %w", cfg.Stream, err)
	}
	var zips jetstream.ObjectStore
	err = broker.Retry(ctx, func(ctx context.Context) (err error) {
		zips, err = cfg.JetStream.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      cfg.Bucket,
			Description: "Hearth's code and layer zips, by SHA-256",
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("configlog: object store %s: %w", cfg.Bucket, err)
	}
	return &Log{js: cfg.JetStream, stream: stream, zips: zips, name: cfg.Stream, subject: cfg.Subject, purgeDenied: sc.DenyPurge}, nil
}

func streamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "Hearth's configuration: the ordered log of writes every host applies",
		Subjects:    []string{cfg.Subject},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// Every entry is kept, but for the purge below a checkpoint
		// (Purge): a host must find every entry after the last
		// checkpoint, and one missing would make hosts differ.
		Retention:  jetstream.LimitsPolicy,
		MaxMsgs:    -1,
		MaxBytes:   -1,
		Discard:    jetstream.DiscardNew,
		DenyDelete: true,
		// An Append retried with the same id within this window is stored
		// once.
		Duplicates: 2 * time.Minute,
	}
}

// Append publishes entry if the stream's last message is still the one at
// sequence after (Nats-Expected-Last-Sequence); the id is its
// Nats-Msg-Id, so a publish retried is stored once.
func (l *Log) Append(ctx context.Context, after uint64, id string, entry []byte) (uint64, error) {
	ack, err := l.js.Publish(ctx, l.subject, entry, jetstream.WithExpectLastSequence(after), jetstream.WithMsgID(id), jetstream.WithExpectStream(l.name))
	if wrongLastSequence(err) {
		return 0, fmt.Errorf("configlog: append after %d: %w", after, store.ErrLogMoved)
	}
	if err != nil {
		return 0, fmt.Errorf("configlog: append: %w", err)
	}
	return ack.Sequence, nil
}

func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// Last is the stream's last sequence.
func (l *Log) Last(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("configlog: %w", err)
	}
	return info.State.LastSeq, nil
}

// Follow delivers the entries after sequence after, in order, through an
// ordered consumer (it starts again by itself where it was after a
// server or a leader goes).
func (l *Log) Follow(ctx context.Context, after uint64, apply func(seq uint64, entry []byte) error) error {
	return broker.Follow(ctx, l.js, l.name, l.subject, after, func(seq uint64, msg jetstream.Msg) error {
		return apply(seq, msg.Data())
	})
}

// Purge drops the entries before sequence seq, which the store calls with
// a checkpoint's: seq and later stay. A follower whose next entry is gone
// starts at the first one kept (JetStream moves a consumer's start up to
// the stream's first sequence).
func (l *Log) Purge(ctx context.Context, seq uint64) error {
	if l.purgeDenied {
		return fmt.Errorf("configlog: stream %s was made denying purges (before compaction): it keeps every entry", l.name)
	}
	err := broker.RetryFor(ctx, broker.LeaderWait, func(ctx context.Context) error {
		return l.stream.Purge(ctx, jetstream.WithPurgeSequence(seq))
	})
	if err != nil {
		return fmt.Errorf("configlog: purge below %d: %w", seq, err)
	}
	return nil
}

// PutBlob stores a zip under name, unless it is there already (names are
// digests: the same name is the same content). One there already is
// touched instead: its time is what a prune judges its age by, and a zip
// put again is about to be named again.
func (l *Log) PutBlob(ctx context.Context, name string, data []byte) error {
	if info, err := l.zips.GetInfo(ctx, name); err == nil && !info.Deleted {
		if err := l.zips.UpdateMeta(ctx, name, info.ObjectMeta); err == nil {
			return nil
		}
		// Deleted meanwhile (a prune): stored again below.
	}
	if _, err := l.zips.PutBytes(ctx, name, data); err != nil {
		return fmt.Errorf("configlog: put %s: %w", name, err)
	}
	return nil
}

// ListBlobs lists the zips and dumps stored, with when each was last put.
func (l *Log) ListBlobs(ctx context.Context) ([]store.BlobInfo, error) {
	infos, err := l.zips.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("configlog: list: %w", err)
	}
	out := make([]store.BlobInfo, 0, len(infos))
	for _, i := range infos {
		out = append(out, store.BlobInfo{Name: i.Name, Put: i.ModTime, Size: int64(i.Size)})
	}
	return out, nil
}

// DeleteBlob deletes the blob under name if it was last put before
// notAfter (read again just before: a put since keeps it); deleted says
// whether it did.
func (l *Log) DeleteBlob(ctx context.Context, name string, notAfter time.Time) (deleted bool, err error) {
	info, err := l.zips.GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("configlog: %s: %w", name, err)
	}
	if info.ModTime.After(notAfter) {
		return false, nil
	}
	if err := l.zips.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return false, fmt.Errorf("configlog: delete %s: %w", name, err)
	}
	return true, nil
}

// blobLagWait is how long a blob not found is looked for again (see
// GetBlob).
const blobLagWait = 3 * time.Second

// GetBlob reads the zip stored under name.
func (l *Log) GetBlob(ctx context.Context, name string) ([]byte, error) {
	// When the host that led the zips' stream dies, its other replicas
	// elect another within seconds: a get meanwhile is tried again, as
	// broker.Publish does, rather than failing the cold start it serves.
	//
	// A zip is asked for because an entry this host applied names it, and
	// it was put before that entry was appended; but this host's replica
	// of the zips' stream, which may answer the get, can be a moment
	// behind: a zip not found is looked for again for blobLagWait.
	start := time.Now()
	deadline := start.Add(broker.LeaderWait)
	for {
		data, err := l.zips.GetBytes(ctx, name)
		switch {
		case err == nil:
			return data, nil
		case errors.Is(err, jetstream.ErrObjectNotFound) && (ctx.Err() != nil || time.Since(start) >= blobLagWait):
			return nil, fmt.Errorf("configlog: %s: %w", name, store.ErrNotFound)
		case errors.Is(err, jetstream.ErrObjectNotFound):
		case ctx.Err() != nil || time.Now().After(deadline):
			return nil, fmt.Errorf("configlog: get %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("configlog: get %s: %w", name, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
