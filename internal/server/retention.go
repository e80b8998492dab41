package server

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// retention lets go, now and then, of the code zips no function names
// any more (an update replaced them, or their function was deleted): from
// this host's code folder and, in a cluster, from the hosts' store; and
// of the stored initramfs images unused for days that no environment
// needs.
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
	imagesUnused := s.cfg.ImagesUnusedFor
	if imagesUnused <= 0 {
		imagesUnused = DefaultImagesUnusedFor
	}
	imagesEvery := min(time.Hour, max(grace/2, time.Second))
	r := &retention{}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		// A prune removes a zip only once it has seen it unnamed for the
		// grace: passes half a grace apart keep that within 1.5 graces.
		code := time.NewTicker(grace / 2)
		defer code.Stop()
		images := time.NewTicker(imagesEvery)
		defer images.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-code.C:
				s.pruneCode(ctx, grace, blobGrace)
			case <-images.C:
				s.pruneImages(imagesUnused)
			}
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

// DefaultImagesUnusedFor is how long a stored image may go unused before
// it is removed (a cold start then builds it again, in about a second).
const DefaultImagesUnusedFor = 7 * 24 * time.Hour

// pruneImages removes the stored images unused for unusedFor that no
// environment, template or MicroVM folder names.
func (s *Server) pruneImages(unusedFor time.Duration) {
	removed, err := s.host.PruneImages(filepath.Join(s.cfg.DataDir, "images"), unusedFor, imagesNamed(s.cfg.DataDir))
	if err != nil {
		s.log.Warn("image retention", "err", err)
	}
	if len(removed) > 0 {
		s.log.Info("image retention: removed images unused for long", "images", len(removed), "unusedFor", unusedFor)
	}
}

// imagesNamed is the initramfs paths the environment and template folders
// under dataDir name, two levels deep: the daemon's environments,
// SnapStart templates and MicroVMs (their images' templates one level
// down, in microvms/templates), and `hearth env`'s environments and
// templates.
func imagesNamed(dataDir string) map[string]bool {
	named := map[string]bool{}
	var visit func(dir string, depth int)
	visit = func(dir string, depth int) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return // none yet
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			sub := filepath.Join(dir, e.Name())
			if f, err := sandbox.ReadFolder(sub); err == nil {
				named[f.Initrd] = true
			} else if depth > 1 {
				visit(sub, depth-1) // a folder of folders
			}
		}
	}
	for _, root := range []string{"envs", "snapstart", "microvms", "templates"} {
		visit(filepath.Join(dataDir, root), 2)
	}
	return named
}

func (s *Server) stopRetention() {
	if s.retention != nil {
		s.retention.cancel()
		s.retention.wg.Wait()
	}
}
