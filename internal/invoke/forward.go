package invoke

import (
	"context"

	"github.com/hearthdev/hearth/internal/scheduler"
)

// Forwarder sends an invocation to another host of a cluster when one is
// better placed to run it (a warm environment of the function there, say);
// the server's router is one. It is asked once per RequestResponse, after
// the function is resolved and before an environment is leased here.
type Forwarder interface {
	// Forward runs req (resolved to fn, with its request id) on the host
	// best placed for it and returns that host's answer with forwarded
	// true. forwarded false means run it here: this host is the best
	// placed, or the other could not be reached (or refused before it
	// started anything).
	Forward(ctx context.Context, fn scheduler.Function, requestID string, req Request) (res *Result, forwarded bool, err error)
}

// ConfigSync is a configuration this host shares with others (a host of a
// cluster follows the configuration log): a function not found here may
// have been created on another host a moment ago.
type ConfigSync interface {
	// CatchUp returns once this host has applied what the shared
	// configuration held when it was called (bounded by ctx).
	CatchUp(ctx context.Context) error
}

// forward asks the forwarder, when there is one, to run req elsewhere.
// A streamed response is always served here: its bytes go to the caller
// as the function writes them.
func (s *Service) forward(ctx context.Context, fn scheduler.Function, requestID string, req Request) (*Result, bool, error) {
	if s.cfg.Forwarder == nil || req.NoForward || req.Stream != nil {
		return nil, false, nil
	}
	return s.cfg.Forwarder.Forward(ctx, fn, requestID, req)
}
