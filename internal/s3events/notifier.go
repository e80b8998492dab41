package s3events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"

	"github.com/hearthdev/hearth/internal/objects"
	"github.com/hearthdev/hearth/internal/s3api"
)

// ConfigName is the name a bucket's notification configuration is kept
// under (objects.Store.BucketConfig).
const ConfigName = "notification"

// Buckets keeps buckets' configurations; objects.Store is one.
type Buckets interface {
	BucketConfig(bucket, name string) ([]byte, error)
	PutBucketConfig(bucket, name string, raw []byte) error
}

// Targets are where events go: the daemon's functions (through the one
// invocation path, as Event invocations) and queues.
type Targets interface {
	// CheckFunction says whether function (at qualifier) exists: an error
	// wrapping ErrNoTarget when not.
	CheckFunction(ctx context.Context, function, qualifier string) error
	// InvokeEvent stores an Event invocation of function with payload; it
	// returns once the event is stored (the async path then runs it,
	// retries it, and sends it to its destinations). ErrNoTarget when the
	// function is gone.
	InvokeEvent(ctx context.Context, function, qualifier string, payload []byte) error
	// QueueName is the name of the queue arn names: ErrNoTarget when
	// there is none.
	QueueName(ctx context.Context, arn string) (string, error)
	// SendToQueue sends body to a queue; it returns once the message is
	// stored.
	SendToQueue(ctx context.Context, queue string, body []byte) error
}

// ErrNoTarget is a function or queue that does not exist.
var ErrNoTarget = errors.New("no such target")

// Config is a Notifier's.
type Config struct {
	Buckets Buckets
	Targets Targets
	// Region is the daemon's: in the events, and the region a function's
	// or queue's ARN must name.
	Region string
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	Log *slog.Logger
}

// Notifier keeps the configurations and sends the events of changes
// (objects.Events) that match them.
type Notifier struct {
	cfg Config

	mu    sync.Mutex
	cache map[string]cached // bucket → its configuration, parsed
}

type cached struct {
	raw   []byte
	rules []rule
}

// New returns a Notifier.
func New(cfg Config) *Notifier {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Notifier{cfg: cfg, cache: map[string]cached{}}
}

var _ objects.Events = (*Notifier)(nil)
var _ s3api.Notifications = (*Notifier)(nil)

// bucketError answers a bucket the store does not have as S3 does.
func bucketError(err error) error {
	if gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket) {
		return &s3api.Error{Status: http.StatusNotFound, Code: "NoSuchBucket", Message: "The specified bucket does not exist"}
	}
	return err
}

// NotificationConfiguration is a bucket's configuration; an empty one
// when it has none.
func (n *Notifier) NotificationConfiguration(ctx context.Context, bucket string) ([]byte, error) {
	raw, err := n.cfg.Buckets.BucketConfig(bucket, ConfigName)
	if err != nil {
		return nil, bucketError(err)
	}
	if len(raw) > 0 {
		return raw, nil
	}
	return (&Configuration{}).Marshal()
}

// PutNotificationConfiguration checks a configuration (its shape, and
// that its functions and queues exist unless skipValidation) and keeps
// it; an empty one removes the bucket's.
func (n *Notifier) PutNotificationConfiguration(ctx context.Context, bucket string, body []byte, skipValidation bool) error {
	c, err := Parse(body)
	if err != nil {
		return err
	}
	if !skipValidation {
		if err := n.checkTargets(ctx, c); err != nil {
			return err
		}
	}
	var raw []byte
	if len(c.Functions)+len(c.Queues) > 0 {
		if raw, err = c.Marshal(); err != nil {
			return err
		}
	}
	return bucketError(n.cfg.Buckets.PutBucketConfig(bucket, ConfigName, raw))
}

// checkTargets refuses a configuration whose functions or queues do not
// exist, naming each, as S3's "Unable to validate the following
// destination configurations".
func (n *Notifier) checkTargets(ctx context.Context, c *Configuration) error {
	var bad []string
	var firstErr error
	note := func(arn string, err error) {
		if errors.Is(err, ErrNoTarget) {
			bad = append(bad, arn)
		} else if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, f := range c.Functions {
		fn, q, err := n.functionOf(f.FunctionARN)
		if err == nil {
			err = n.cfg.Targets.CheckFunction(ctx, fn, q)
		}
		note(f.FunctionARN, err)
	}
	for _, q := range c.Queues {
		_, err := n.cfg.Targets.QueueName(ctx, q.QueueARN)
		note(q.QueueARN, err)
	}
	if firstErr != nil {
		return firstErr
	}
	if len(bad) > 0 {
		return &s3api.Error{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: "Unable to validate the following destination configurations",
			ArgumentName: strings.Join(bad, ", "), ArgumentValue: "The destination does not exist"}
	}
	return nil
}

// functionOf reads a function's ARN (arn:aws:lambda:<region>:<account>:
// function:<name>[:<qualifier>]) of this region and account; an error
// wrapping ErrNoTarget for any other.
func (n *Notifier) functionOf(arn string) (function, qualifier string, err error) {
	p := strings.Split(arn, ":")
	if (len(p) != 7 && len(p) != 8) || p[0] != "arn" || p[2] != "lambda" || p[3] != n.cfg.Region || p[4] != owner || p[5] != "function" || p[6] == "" {
		return "", "", fmt.Errorf("%w: %s is not a function of this region", ErrNoTarget, arn)
	}
	if len(p) == 8 {
		qualifier = p[7]
	}
	return p[6], qualifier, nil
}

// rules are a bucket's configuration's, parsed once per version of it.
func (n *Notifier) rules(bucket string) ([]rule, error) {
	raw, err := n.cfg.Buckets.BucketConfig(bucket, ConfigName)
	if err != nil || len(raw) == 0 {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.cache[bucket]; ok && bytes.Equal(c.raw, raw) {
		return c.rules, nil
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: its notification configuration: %w", bucket, err)
	}
	rules := c.rules()
	n.cache[bucket] = cached{raw: raw, rules: rules}
	return rules, nil
}

// deliverTimeout bounds the storing of one change's events.
const deliverTimeout = 30 * time.Second

// Changed stores the events of a change for the configurations it
// matches: a function's as an Event invocation, a queue's as a message;
// each is stored (on disk) when it returns. A target that is gone drops
// its event (as S3's would fail to deliver); any other failure is the
// caller's, whose request fails.
func (n *Notifier) Changed(c objects.Change) error {
	rules, err := n.rules(c.Bucket)
	if err != nil || len(rules) == 0 {
		return err
	}
	name := eventName(c)
	ctx, cancel := context.WithTimeout(context.Background(), deliverTimeout)
	defer cancel()
	at := n.cfg.Now()
	for _, r := range rules {
		if !r.matches(name, c.Key) {
			continue
		}
		body, err := json.Marshal(Event{Records: []Record{record(c, r.id, n.cfg.Region, at)}})
		if err != nil {
			return err
		}
		if err := n.send(ctx, r, body); errors.Is(err, ErrNoTarget) {
			n.cfg.Log.Warn("bucket notification: its target is gone", "bucket", c.Bucket, "configuration", r.id, "err", err)
		} else if err != nil {
			return err
		}
	}
	return nil
}

func (n *Notifier) send(ctx context.Context, r rule, body []byte) error {
	if r.function != "" {
		fn, q, err := n.functionOf(r.function)
		if err != nil {
			return err
		}
		return n.cfg.Targets.InvokeEvent(ctx, fn, q, body)
	}
	q, err := n.cfg.Targets.QueueName(ctx, r.queue)
	if err != nil {
		return err
	}
	return n.cfg.Targets.SendToQueue(ctx, q, body)
}
