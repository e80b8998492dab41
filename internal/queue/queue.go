// Package queue keeps SQS-like queues on JetStream: each queue is a
// stream (work-queue retention: a message leaves it when it is deleted)
// with one durable pull consumer, whose ack wait is the queue's visibility
// timeout. A received message is a message delivered by the consumer and
// not yet acknowledged; its receipt handle is the JetStream ack subject,
// signed, so any caller can later delete it (+ACK), change its visibility
// (-NAK with a delay) — also after a daemon restart, since the consumer's
// state is on disk. ApproximateReceiveCount is JetStream's delivery count;
// a message received more than a redrive policy's maxReceiveCount times is
// moved to the dead-letter queue when it is delivered once more. A delayed
// message is a JetStream message schedule ("@at") that the server publishes
// into the queue at its time. The queues' settings are rows in SQLite.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/store"
)

// AccountID is the account in queues' ARNs and URLs.
const AccountID = "000000000000"

// Message is a message to send.
type Message struct {
	Body       string
	Attributes map[string]MessageAttribute
	// DelaySeconds delays it (0–900); 0 takes the queue's DelaySeconds.
	DelaySeconds int
}

// MessageAttribute is a message attribute: DataType String, Number or
// Binary, optionally with a custom suffix ("Number.float").
type MessageAttribute struct {
	DataType    string
	StringValue string
	BinaryValue []byte
}

// Sent is a sent message.
type Sent struct{ MessageID, MD5OfBody string }

// Received is a received message.
type Received struct {
	MessageID, ReceiptHandle, Body, MD5OfBody string
	// Attributes are the system attributes: ApproximateReceiveCount,
	// SentTimestamp, ApproximateFirstReceiveTimestamp (ms), SenderId.
	Attributes        map[string]string
	MessageAttributes map[string]MessageAttribute
}

// Stats are a queue's counts.
type Stats struct {
	Visible, InFlight, Delayed int
	// OldestAge is the age of the oldest message (0 when empty).
	OldestAge time.Duration
}

// Queue is a queue's settings.
type Queue struct {
	Name       string
	ARN        string
	Attributes Attributes
	Created    time.Time
	Modified   time.Time
}

// Store keeps the queues' settings; store.Store is it.
type Store interface {
	CreateQueue(ctx context.Context, q store.Queue) error
	Queue(ctx context.Context, name string) (store.Queue, error)
	Queues(ctx context.Context) ([]store.Queue, error)
	UpdateQueue(ctx context.Context, name, attributes string, modified time.Time) error
	DeleteQueue(ctx context.Context, name string) error
}

// Config is what the Service needs.
type Config struct {
	Store Store
	// JetStream and Conn are the broker's (broker.Broker).
	JetStream jetstream.JetStream
	Conn      *nats.Conn
	// Region is in the queues' ARNs.
	Region string
	// Key signs receipt handles; it must stay the same across restarts
	// for handles given before one to stay valid.
	Key []byte
	// Replicas is how many copies each queue's stream keeps
	// (broker.Broker.Replicas: 1 standalone, up to 3 in a cluster).
	Replicas int
	// Sync, in a cluster, catches this host up with the shared
	// configuration: a queue not found is looked for again after it.
	// Nil standalone.
	Sync ConfigSync
	Log  *slog.Logger
}

// ConfigSync waits until this host has applied the configuration the
// hosts share, as of now.
type ConfigSync interface {
	CatchUp(ctx context.Context) error
}

// Service is the queues.
type Service struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	queues map[string]*state // by name; loaded on first use
	// createMu orders creating and deleting queues.
	createMu sync.Mutex
}

// state is a queue in use: its settings and its consumer, and what this
// daemon knows of the messages it handed out.
type state struct {
	rec   store.Queue
	attrs Attributes
	cons  jetstream.Consumer

	mu     sync.Mutex
	flight map[uint64]flight // by stream sequence
}

// flight is a received message: when it was first received and when it
// becomes visible again. Kept in memory only: after a restart, the
// messages in flight count as visible until they are received again, and
// their first receive is their next.
type flight struct{ first, visibleAt time.Time }

// consumerName is each queue's one consumer.
const consumerName = "receiver"

// streamPrefix starts the queues' streams' names.
const streamPrefix = "SQS_"

// New returns the queues, and deletes the streams of queues that no
// longer exist (a daemon that stopped between the two steps of creating
// or deleting one left it).
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if len(cfg.Key) < 16 {
		return nil, errors.New("queue: the receipt key must be at least 16 bytes")
	}
	s := &Service{cfg: cfg, log: cfg.Log.With("part", "queue"), now: time.Now, queues: map[string]*state{}}
	if err := s.sweep(ctx); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return s, nil
}

func (s *Service) sweep(ctx context.Context) error {
	recs, err := s.cfg.Store.Queues(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, r := range recs {
		known[streamName(r.ID)] = true
	}
	names := s.cfg.JetStream.StreamNames(ctx)
	for n := range names.Name() {
		if strings.HasPrefix(n, streamPrefix) && !known[n] {
			if err := s.cfg.JetStream.DeleteStream(ctx, n); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return err
			}
			s.log.Info("deleted the stream of a queue that no longer exists", "stream", n)
		}
	}
	return names.Err()
}

func streamName(id string) string { return streamPrefix + id }

// readySubject carries a queue's messages that can be received;
// delaySubject its delayed ones, each on its own subject (a schedule is
// one per subject).
func readySubject(id string) string        { return "sqs." + id + ".m" }
func delaySubject(id, msgID string) string { return "sqs." + id + ".d." + msgID }

// ARN is a queue's ARN.
func (s *Service) ARN(name string) string {
	return "arn:aws:sqs:" + s.cfg.Region + ":" + AccountID + ":" + name
}

// NameOf is the name of the queue with this ARN; ErrNotFound if there is
// no such queue.
func (s *Service) NameOf(arn string) (string, error) {
	return s.nameOf(context.Background(), arn)
}

func (s *Service) nameOf(ctx context.Context, arn string) (string, error) {
	f := strings.Split(arn, ":")
	if len(f) != 6 || f[0] != "arn" || f[2] != "sqs" || f[3] != s.cfg.Region || f[4] != AccountID {
		return "", errorf(ErrNotFound, "The specified queue does not exist: %s", arn)
	}
	if _, err := s.state(ctx, f[5]); err != nil {
		return "", err
	}
	return f[5], nil
}

// state is the queue named name, loaded once.
func (s *Service) state(ctx context.Context, name string) (*state, error) {
	st, err := s.load(ctx, name)
	if errors.Is(err, store.ErrNotFound) && s.cfg.Sync != nil {
		// Made through another host a moment ago, perhaps: this host
		// applies the shared configuration shortly after. Once caught up,
		// a miss is a miss.
		if cerr := s.cfg.Sync.CatchUp(ctx); cerr != nil {
			s.log.Warn("queue: catching up with the shared configuration", "queue", name, "err", cerr)
		}
		st, err = s.load(ctx, name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(name)
	}
	return st, err
}

// load returns the queue's state, loading it from the store on first use.
func (s *Service) load(ctx context.Context, name string) (*state, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.queues[name]; ok {
		return st, nil
	}
	rec, err := s.cfg.Store.Queue(ctx, name)
	if err != nil {
		return nil, err
	}
	attrs := DefaultAttributes()
	if err := json.Unmarshal([]byte(rec.Attributes), &attrs); err != nil {
		return nil, fmt.Errorf("queue %s: its attributes: %w", name, err)
	}
	cons, err := s.cfg.JetStream.Consumer(ctx, streamName(rec.ID), consumerName)
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", name, err)
	}
	st := &state{rec: rec, attrs: attrs, cons: cons, flight: map[uint64]flight{}}
	s.queues[name] = st
	return st, nil
}

func (s *Service) forget(name string) {
	s.mu.Lock()
	delete(s.queues, name)
	s.mu.Unlock()
}

func (s *Service) queueOf(st *state) Queue {
	st.mu.Lock()
	defer st.mu.Unlock()
	return Queue{Name: st.rec.Name, ARN: s.ARN(st.rec.Name), Attributes: st.attrs, Created: st.rec.Created, Modified: st.rec.Modified}
}

// Create makes a queue with these attributes (SQS's names and string
// values). A queue of that name with the same attributes is returned as
// it is; with others, it is ErrExists.
func (s *Service) Create(ctx context.Context, name string, attrs map[string]string) (Queue, error) {
	if err := checkName(name); err != nil {
		return Queue{}, err
	}
	a := DefaultAttributes()
	if err := a.apply(attrs); err != nil {
		return Queue{}, err
	}
	if err := s.checkRedrive(ctx, name, a.RedrivePolicy); err != nil {
		return Queue{}, err
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if st, err := s.state(ctx, name); err == nil {
		if cur := st.settings(); !sameAttributes(cur, a) {
			return Queue{}, errorf(ErrExists, "A queue already exists with the same name and a different value for attribute(s): %s", strings.Join(differing(cur, a), ", "))
		}
		return s.queueOf(st), nil
	} else if !errors.Is(err, ErrNotFound) {
		return Queue{}, err
	}
	id := newID()
	if err := s.makeStream(ctx, id, a); err != nil {
		return Queue{}, fmt.Errorf("queue %s: %w", name, err)
	}
	enc, _ := json.Marshal(a)
	now := s.now()
	rec := store.Queue{Name: name, ID: id, Attributes: string(enc), Created: now, Modified: now}
	if err := s.cfg.Store.CreateQueue(ctx, rec); err != nil {
		_ = s.cfg.JetStream.DeleteStream(ctx, streamName(id))
		return Queue{}, err
	}
	st, err := s.state(ctx, name)
	if err != nil {
		return Queue{}, err
	}
	s.log.Info("queue created", "queue", name, "stream", streamName(id))
	return s.queueOf(st), nil
}

func sameAttributes(a, b Attributes) bool { return len(differing(a, b)) == 0 }

func differing(a, b Attributes) []string {
	as, bs := a.Strings(), b.Strings()
	var out []string
	for k := range maps.Keys(as) {
		if as[k] != bs[k] {
			out = append(out, k)
		}
	}
	for k := range maps.Keys(bs) {
		if _, ok := as[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// makeStream makes a queue's stream and its consumer.
func (s *Service) makeStream(ctx context.Context, id string, a Attributes) error {
	_, err := s.cfg.JetStream.CreateStream(ctx, s.streamConfig(id, a))
	if err != nil {
		return err
	}
	if _, err := s.cfg.JetStream.CreateOrUpdateConsumer(ctx, streamName(id), consumerConfig(id, a)); err != nil {
		_ = s.cfg.JetStream.DeleteStream(ctx, streamName(id))
		return err
	}
	return nil
}

func (s *Service) streamConfig(id string, a Attributes) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Replicas: max(s.cfg.Replicas, 1),
		Name:     streamName(id),
		Subjects: []string{"sqs." + id + ".>"},
		// A message leaves the stream once its consumer acknowledges it:
		// DeleteMessage.
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
		Discard:   jetstream.DiscardOld,
		MaxAge:    time.Duration(a.MessageRetentionPeriod) * time.Second,
		// DelaySeconds: a schedule publishes the message at its time.
		AllowMsgSchedules: true,
		AllowRollup:       true,
		MaxMsgSize:        2 * MaxMessageBytes,
	}
}

// maxInFlight is SQS's bound on a standard queue's messages in flight.
const maxInFlight = 120000

func consumerConfig(id string, a Attributes) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       consumerName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Duration(a.VisibilityTimeout) * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: maxInFlight,
		MaxWaiting:    4096,
		FilterSubject: readySubject(id),
	}
}

// checkRedrive checks that a redrive policy's target is another queue
// that exists.
func (s *Service) checkRedrive(ctx context.Context, name string, p *RedrivePolicy) error {
	if p == nil {
		return nil
	}
	target, err := s.nameOf(ctx, p.DeadLetterTargetArn)
	if err != nil {
		return errorf(ErrInvalidAttributeValue, "Value for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist: %s", p.DeadLetterTargetArn)
	}
	if target == name {
		return errorf(ErrInvalidAttributeValue, "Value for parameter RedrivePolicy is invalid. Reason: a queue cannot be its own dead-letter queue.")
	}
	return nil
}

// Get is a queue's settings.
func (s *Service) Get(ctx context.Context, name string) (Queue, error) {
	st, err := s.state(ctx, name)
	if err != nil {
		return Queue{}, err
	}
	return s.queueOf(st), nil
}

// List lists the queues whose names start with prefix, by name.
func (s *Service) List(ctx context.Context, prefix string) ([]Queue, error) {
	recs, err := s.cfg.Store.Queues(ctx)
	if err != nil {
		return nil, err
	}
	var out []Queue
	for _, r := range recs {
		if !strings.HasPrefix(r.Name, prefix) {
			continue
		}
		if q, err := s.Get(ctx, r.Name); err == nil {
			out = append(out, q)
		}
	}
	return out, nil
}

// DeadLetterSources lists the queues whose redrive policy targets name.
func (s *Service) DeadLetterSources(ctx context.Context, name string) ([]Queue, error) {
	if _, err := s.state(ctx, name); err != nil {
		return nil, err
	}
	all, err := s.List(ctx, "")
	if err != nil {
		return nil, err
	}
	arn := s.ARN(name)
	var out []Queue
	for _, q := range all {
		if p := q.Attributes.RedrivePolicy; p != nil && p.DeadLetterTargetArn == arn {
			out = append(out, q)
		}
	}
	return out, nil
}

// SetAttributes changes a queue's attributes.
func (s *Service) SetAttributes(ctx context.Context, name string, attrs map[string]string) error {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	st, err := s.state(ctx, name)
	if err != nil {
		return err
	}
	a := st.settings()
	a.Kept = maps.Clone(a.Kept)
	if err := a.apply(attrs); err != nil {
		return err
	}
	if err := s.checkRedrive(ctx, name, a.RedrivePolicy); err != nil {
		return err
	}
	id := st.rec.ID
	if a.MessageRetentionPeriod != st.attrs.MessageRetentionPeriod {
		if _, err := s.cfg.JetStream.UpdateStream(ctx, s.streamConfig(id, a)); err != nil {
			return fmt.Errorf("queue %s: %w", name, err)
		}
	}
	if a.VisibilityTimeout != st.attrs.VisibilityTimeout {
		if _, err := s.cfg.JetStream.CreateOrUpdateConsumer(ctx, streamName(id), consumerConfig(id, a)); err != nil {
			return fmt.Errorf("queue %s: %w", name, err)
		}
	}
	enc, _ := json.Marshal(a)
	now := s.now()
	if err := s.cfg.Store.UpdateQueue(ctx, name, string(enc), now); err != nil {
		return err
	}
	// In place: the messages in flight that this state tracks stay.
	st.mu.Lock()
	st.attrs, st.rec.Attributes, st.rec.Modified = a, string(enc), now
	st.mu.Unlock()
	return nil
}

// DeleteQueue deletes a queue and its messages.
func (s *Service) DeleteQueue(ctx context.Context, name string) error {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	st, err := s.state(ctx, name)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteQueue(ctx, name); err != nil {
		return err
	}
	s.forget(name)
	if err := s.cfg.JetStream.DeleteStream(ctx, streamName(st.rec.ID)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("queue %s: %w", name, err)
	}
	s.log.Info("queue deleted", "queue", name)
	return nil
}

// Purge deletes every message of a queue: visible, in flight and delayed.
func (s *Service) Purge(ctx context.Context, name string) error {
	st, err := s.state(ctx, name)
	if err != nil {
		return err
	}
	stream, err := s.cfg.JetStream.Stream(ctx, streamName(st.rec.ID))
	if err != nil {
		return fmt.Errorf("queue %s: %w", name, err)
	}
	if err := stream.Purge(ctx); err != nil {
		return fmt.Errorf("queue %s: %w", name, err)
	}
	st.mu.Lock()
	clear(st.flight)
	st.mu.Unlock()
	return nil
}

// settings are the queue's attributes now.
func (st *state) settings() Attributes {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.attrs
}
