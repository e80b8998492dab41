package objects

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/johannesboyne/gofakes3"

	"github.com/hearthdev/hearth/internal/atomicfile"
)

// How an object came to be, or went: the second half of S3's event names
// (ObjectCreated:Put, ObjectRemoved:Delete).
const (
	KindPut                     = "Put"
	KindCopy                    = "Copy"
	KindCompleteMultipartUpload = "CompleteMultipartUpload"
	KindDelete                  = "Delete"
)

// Change is an object created or removed.
type Change struct {
	Bucket, Key string
	// Created is false for a removal.
	Created bool
	// Kind is one of the Kind constants.
	Kind string
	// Size and MD5 are the new object's; none for a removal.
	Size int64
	MD5  []byte
	// Sequencer orders the changes of a key: a later change's is greater
	// (as strings), across restarts too.
	Sequencer string
}

// Events hears of each change once it is on disk and before the request
// that made it is answered, so that a change acknowledged to a client has
// had its event stored (by whatever Events does with it). An error fails
// the request; the change stays, and a client that retries makes it, and
// its event, again.
type Events interface {
	Changed(c Change) error
}

// SetEvents makes the store tell e of changes; set it before serving.
func (s *Store) SetEvents(e Events) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = e
}

// nextSequencer is the next change's sequencer; s.mu is held. It counts
// from the clock at Open (in nanoseconds), so that it keeps growing after
// a restart.
func (s *Store) nextSequencer() string {
	s.seq++
	return fmt.Sprintf("%016X", s.seq)
}

// changed tells Events of changes; s.mu is not held (a slow Events holds
// up no other request).
func (s *Store) changed(cs ...Change) error {
	s.mu.RLock()
	e := s.events
	s.mu.RUnlock()
	if e == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		if err := e.Changed(c); err != nil {
			errs = append(errs, fmt.Errorf("%s %s/%s: storing its event: %w", c.Kind, c.Bucket, c.Key, err))
		}
	}
	return errors.Join(errs...)
}

// A bucket's configurations (its notification configuration, say) are
// files <bucket>/<name>.config beside its objects: they go with the
// bucket, and a new bucket of the same name starts without them.
var configNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

const configSuffix = ".config"

func (s *Store) configPath(bucket, name string) (string, error) {
	if !configNameRE.MatchString(name) {
		return "", fmt.Errorf("objects: bad configuration name %q", name)
	}
	return filepath.Join(s.dir, bucket, name+configSuffix), nil
}

// BucketConfig is a bucket's configuration called name; nil when it has
// none.
func (s *Store) BucketConfig(bucket, name string) ([]byte, error) {
	path, err := s.configPath(bucket, name)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.buckets[bucket]
	if b == nil {
		return nil, gofakes3.BucketNotFound(bucket)
	}
	if raw, ok := b.configs[name]; ok {
		return raw, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return raw, err
}

// PutBucketConfig keeps a bucket's configuration called name (written
// aside and renamed); nil or empty removes it.
func (s *Store) PutBucketConfig(bucket, name string, raw []byte) error {
	path, err := s.configPath(bucket, name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucket]
	if b == nil {
		return gofakes3.BucketNotFound(bucket)
	}
	if len(raw) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		delete(b.configs, name)
		return atomicfile.SyncDir(filepath.Dir(path))
	}
	if err := atomicfile.Write(path, raw, 0o600); err != nil {
		return err
	}
	b.configs[name] = append([]byte(nil), raw...)
	return nil
}
