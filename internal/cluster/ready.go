package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
)

// What a host has ready for a cold start, told in its heartbeat so that
// placement can prefer a host that need not fetch and build first: the
// code images (a function's code package and layers built into an
// initramfs) and the container images' root disks in its cache. Each is
// named by a short key (16 hex digits of a SHA-256: 64 bits, so that a
// record of MaxReady of each stays a few kB), and each list is bounded,
// most recently used first: a host with more has the older ones left out
// of its record, which costs only a missed preference.

// MaxReady bounds each list of a host's Ready.
const MaxReady = 256

// keyLen is a key's length in hex digits.
const keyLen = 16

// Ready is what a host has ready for a cold start.
type Ready struct {
	// Code holds CodeKey of the code images the host has built.
	Code []string `json:"code,omitempty"`
	// Roots holds RootKey of the container images' roots in its cache.
	Roots []string `json:"roots,omitempty"`
}

// HasCode reports whether the host has the code image of key.
func (r *Ready) HasCode(key string) bool {
	return r != nil && slices.Contains(r.Code, key)
}

// HasRoot reports whether the host has the root of key.
func (r *Ready) HasRoot(key string) bool {
	return r != nil && slices.Contains(r.Roots, key)
}

// CodeKey names the code image of a code package (its SHA-256, hex) and
// layers (theirs, in their order, which decides what /opt holds). An
// empty digest (a function whose code is on a root disk of its own: the
// image every host has) is "".
func CodeKey(digest string, layers []string) string {
	if digest == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.Join(append([]string{digest}, layers...), " ")))
	return hex.EncodeToString(sum[:])[:keyLen]
}

// RootKey names a container image's root by its image digest
// (sha256:<hex>); another digest (a managed runtime's root, on every
// host) is "".
func RootKey(digest string) string {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) < keyLen {
		return ""
	}
	return h[:keyLen]
}

// ReadySet is a host's Ready as it changes: safe for concurrent use; a
// nil *ReadySet records nothing.
type ReadySet struct {
	mu          sync.Mutex
	code, roots []string
}

// UsedCode records that the code image of key was built or used now.
func (s *ReadySet) UsedCode(key string) {
	if s == nil || key == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.code = toFront(s.code, key)
}

// UsedRoot records that the root of key was fetched, built or used now.
func (s *ReadySet) UsedRoot(key string) {
	if s == nil || key == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roots = toFront(s.roots, key)
}

// HasRoot records a root found in the cache (not used): last, unless it
// is listed already.
func (s *ReadySet) HasRoot(key string) {
	if s == nil || key == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.roots, key) && len(s.roots) < MaxReady {
		s.roots = append(s.roots, key)
	}
}

// Ready is a copy of the set now; nil when it is empty.
func (s *ReadySet) Ready() *Ready {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.code) == 0 && len(s.roots) == 0 {
		return nil
	}
	return &Ready{Code: slices.Clone(s.code), Roots: slices.Clone(s.roots)}
}

// toFront moves (or adds) key to the front of l, keeping at most MaxReady.
func toFront(l []string, key string) []string {
	if i := slices.Index(l, key); i >= 0 {
		l = slices.Delete(l, i, i+1)
	}
	l = slices.Insert(l, 0, key)
	if len(l) > MaxReady {
		l = l[:MaxReady]
	}
	return l
}
