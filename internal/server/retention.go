package server

import (
	"context"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/store"
)

// retention lets go, now and then, of the code zips no function names
// any more (an update replaced them, or their function was deleted): from
// this host's code folder and, in a cluster, from the hosts' store.
type retention struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (s *Server) startRetention(ctx context.Context) {
	grace := s.cfg.CodeGrace
	if grace <= 0 {
		grace = store.DefaultCodeGrace
	}
	blobGrace := max(grace, store.DefaultBlobGrace)
	if s.cfg.CodeGrace > 0 {
		blobGrace = grace // a test's
	}
	r := &retention{}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		// A prune removes a zip only once it has seen it unnamed for the
		// grace: passes half a grace apart keep that within 1.5 graces.
		t := time.NewTicker(grace / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.pruneCode(ctx, grace, blobGrace)
		}
	}()
	s.retention = r
}

func (s *Server) pruneCode(ctx context.Context, grace, blobGrace time.Duration) {
	removed, err := s.store.PruneCode(ctx, grace)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("code retention: this host's code folder", "err", err)
	}
	if len(removed) > 0 {
		s.log.Info("code retention: removed zips no function names", "zips", len(removed))
	}
	deleted, err := s.store.PruneBlobs(ctx, blobGrace)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("code retention: the hosts' store", "err", err)
	}
	if len(deleted) > 0 {
		s.log.Info("code retention: deleted zips no host's configuration names", "blobs", len(deleted))
	}
}

func (s *Server) stopRetention() {
	if s.retention != nil {
		s.retention.cancel()
		s.retention.wg.Wait()
	}
}
