package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"
)

// The zips a replicated store's configuration names are in the hosts'
// blob store too, put there before the entry that names them is
// appended; a host keeps the ones it has used in its code and layers
// folders, and fetches a missing one when it needs it (FetchCode,
// FetchLayer).

func codeBlob(hexSum string) string  { return "code/" + hexSum }
func layerBlob(hexSum string) string { return "layer/" + hexSum }

// blobPutTimeout bounds PutCode's upload, which the API calls without a
// context.
const blobPutTimeout = 2 * time.Minute

// blobMinPace is the slowest upload (bytes a second) a put of a zip
// waits out before it takes the hosts' store for out of reach: 2 MiB/s,
// a 50 MB zip 28 s (three copies on loopback go at tens of MB/s).
const blobMinPace = 2 << 20

// putBlob puts a zip in the hosts' store; nothing when standalone.
func (s *Store) putBlob(ctx context.Context, name string, data []byte) error {
	if s.rep == nil || s.rep.blobs == nil {
		return nil
	}
	// Put again: a prune's wait for it starts again (see PruneBlobs).
	s.blobMu.Lock()
	delete(s.blobUnnamed, name)
	s.blobMu.Unlock()
	// The upload may rightly take long (a big zip, three copies); a
	// host cut off from the quorum would wait it out: the log's last
	// sequence first, which it cannot read then.
	lctx, cancel := context.WithTimeout(ctx, appendWait)
	_, err := s.rep.log.Last(lctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("store: %s: %w", name, err)
		}
		return fmt.Errorf("store: %s: %w: %w", name, ErrUnreachable, err)
	}
	// A cut-off host may still read the log (it led the stream, and
	// learns it no longer does only after a while): the upload is bound
	// too, by its size at a pace any healthy cluster beats.
	bctx, cancel := context.WithTimeout(ctx, appendWait+time.Duration(len(data))*time.Second/blobMinPace)
	defer cancel()
	if err := s.rep.blobs.PutBlob(bctx, name, data); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("store: %s: %w", name, err)
		}
		return fmt.Errorf("store: %s: %w: %w", name, ErrUnreachable, err)
	}
	return nil
}

// FetchCode returns the path of the code zip with this hex digest,
// fetching it from the hosts' store if this host lacks it.
func (s *Store) FetchCode(ctx context.Context, hexSum string) (string, error) {
	return s.fetch(ctx, s.CodePath(hexSum), codeBlob(hexSum), hexSum)
}

// FetchLayer returns the path of the layer zip with this hex digest,
// fetching it from the hosts' store if this host lacks it.
func (s *Store) FetchLayer(ctx context.Context, hexSum string) (string, error) {
	s.layerMu.Lock()
	defer s.layerMu.Unlock()
	return s.fetch(ctx, s.LayerPath(hexSum), layerBlob(hexSum), hexSum)
}

func (s *Store) fetch(ctx context.Context, path, name, hexSum string) (string, error) {
	if hexSum == "" {
		return path, nil // no zip (a container image function)
	}
	if _, err := os.Stat(path); err == nil || s.rep == nil || s.rep.blobs == nil {
		return path, nil // here, or standalone: the path is all there is
	}
	// A digest from another host's entry names a file here: a SHA-256
	// in hex, nothing else.
	if b, err := hex.DecodeString(hexSum); err != nil || len(b) != sha256.Size || hex.EncodeToString(b) != hexSum {
		return "", fmt.Errorf("fetch %s: not a SHA-256", name)
	}
	data, err := s.rep.blobs.GetBlob(ctx, name)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", name, err)
	}
	// What another host put is checked as a zip from a client would be.
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != hexSum {
		return "", fmt.Errorf("fetch %s: the content's digest is %x", name, sum)
	}
	if err := writeOnce(path, data); err != nil {
		return "", fmt.Errorf("fetch %s: %w", name, err)
	}
	return path, nil
}
