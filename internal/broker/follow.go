package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The pull requests of a follower: each expires after followExpiry, and
// the server sends a heartbeat every followHeartbeat while it has nothing.
const (
	followExpiry    = 5 * time.Second
	followHeartbeat = time.Second
)

// Follow delivers the messages of stream on subject after stream sequence
// after, in order, to fn with their stream sequence, through an ordered
// consumer (which starts again by itself where it was when a server or a
// leader goes), until ctx ends (Follow then returns ctx's error) or fn or
// the consumer fails.
func Follow(ctx context.Context, js jetstream.JetStream, stream, subject string, after uint64, fn func(seq uint64, msg jetstream.Msg) error) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
		// Unlimited, a consumer re-made while the cluster has no quorum
		// retries for ever and ignores ctx (nats.go holds its lock): a few
		// tries, then Follow returns and its caller decides.
		MaxResetAttempts: 3,
	})
	if err != nil {
		return fmt.Errorf("follow %s: %w", stream, err)
	}
	// Heartbeats every second: an ordered consumer re-makes itself after
	// two missed ones, so a follower whose consumer went with its server
	// (a host restarting) is back within seconds, not the default 10 s,
	// which is as long as a host waits to catch up before it answers.
	it, err := cons.Messages(jetstream.PullExpiry(followExpiry), jetstream.PullHeartbeat(followHeartbeat))
	if err != nil {
		return fmt.Errorf("follow %s: %w", stream, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("follow %s: %w", stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("follow %s: %w", stream, err)
		}
		if err := fn(md.Sequence.Stream, msg); err != nil {
			return err
		}
	}
}
