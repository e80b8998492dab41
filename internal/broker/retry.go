package broker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// In a cluster that is still forming, or electing a stream's leader, making
// a stream or a consumer times out and then succeeds when tried again. A
// standalone broker answers the first try.
const (
	tryTimeout   = 5 * time.Second
	retryTimeout = 60 * time.Second
)

// Retry runs f, each try bounded by a few seconds, until it succeeds, ctx
// ends, or a minute has passed; it returns f's last error. It is for the
// daemon's start, where waiting for the cluster beats failing.
func Retry(ctx context.Context, f func(context.Context) error) error {
	return RetryFor(ctx, retryTimeout, f)
}

// RetryFor is Retry for at most total.
func RetryFor(ctx context.Context, total time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(total)
	for {
		tctx, cancel := context.WithTimeout(ctx, tryTimeout)
		err := f(tctx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// RetryWithin runs f until it succeeds, ctx ends, or total has passed,
// every 250 ms; it returns f's last error. Unlike Retry it does not bound
// each try: it is for work that may rightly take long (an upload) but
// fails at once while a stream has no leader ("no responders"), which
// JetStream elects within seconds. f must be safe to run again.
func RetryWithin(ctx context.Context, total time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(total)
	for {
		err := f(ctx)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// LeaderWait bounds how long a publish waits for a stream without a
// leader: when the host that led it dies, its other replicas elect one
// within JetStream's election timeout (up to about 10 s).
const LeaderWait = 15 * time.Second

// Publish publishes m to its stream and waits for the ack; a stream that
// does not answer (no leader: "no responders") is tried again every 250 ms
// until it does, ctx ends, or LeaderWait has passed, rather than failing
// at once. A publish no stream answered stored nothing, so sending it
// again makes no duplicate.
func Publish(ctx context.Context, js jetstream.JetStream, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, LeaderWait)
	defer cancel()
	const wait = 250 * time.Millisecond
	opts = append([]jetstream.PublishOpt{jetstream.WithRetryAttempts(int(LeaderWait / wait)), jetstream.WithRetryWait(wait)}, opts...)
	return js.PublishMsg(ctx, m, opts...)
}
