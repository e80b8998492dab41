package broker

import (
	"context"
	"time"
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
	deadline := time.Now().Add(retryTimeout)
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
