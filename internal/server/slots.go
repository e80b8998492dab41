package server

import (
	"context"

	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/invoke"
)

// openSlots opens this host's share of the cluster-wide concurrency
// limits (reserved per function, the account's unreserved pool), once it
// is a member.
func (s *Server) openSlots(ctx context.Context) error {
	sl, err := cluster.OpenSlots(ctx, s.member)
	if err != nil {
		return err
	}
	s.slots = sl
	return nil
}

// closeSlots gives back the slots not in use, before the host leaves.
func (s *Server) closeSlots(ctx context.Context) {
	if s.slots != nil {
		s.slots.Close(ctx)
		s.slots = nil
	}
}

// invokeSlots is the invocation path's Slots: nil standalone (a nil
// *cluster.Slots in the interface would not be).
func (s *Server) invokeSlots() invoke.Slots {
	if s.slots == nil {
		return nil
	}
	return s.slots
}
