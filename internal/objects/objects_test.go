package objects

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
)

func put(t *testing.T, s *Store, bucket, key, body string) {
	t.Helper()
	if _, err := s.PutObject(bucket, key, map[string]string{"Content-Type": "text/plain", "X-Amz-Security-Token": "secret"},
		strings.NewReader(body), int64(len(body)), nil); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s *Store, bucket, key string) string {
	t.Helper()
	o, err := s.GetObject(bucket, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Contents.Close()
	b, _ := io.ReadAll(o.Contents)
	return string(b)
}

// Keys are names, never paths; what a request carried for its own sake
// is not kept; a reopened store has every object, and what a crash left
// half-written is gone.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"one", "two"} {
		if err := s.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	put(t, s, "one", "a", "file a")
	put(t, s, "one", "a/b", "under a")
	put(t, s, "one", "../two/x", "climber")
	if got := get(t, s, "one", "a"); got != "file a" {
		t.Errorf("a: %q", got)
	}
	if got := get(t, s, "one", "a/b"); got != "under a" {
		t.Errorf("a/b: %q", got)
	}
	if _, err := s.HeadObject("two", "x"); err == nil {
		t.Error("a key with .. reached another bucket")
	}
	h, err := s.HeadObject("one", "a")
	if err != nil || h.Metadata["Content-Type"] != "text/plain" || h.Metadata["X-Amz-Security-Token"] != "" {
		t.Errorf("metadata kept: %v %v", h, err)
	}
	// A put whose body fails leaves the old object.
	if _, err := s.PutObject("one", "a", nil, io.MultiReader(strings.NewReader("par"), errReader{}), 10, nil); err == nil {
		t.Fatal("a failed body was stored")
	}
	if got := get(t, s, "one", "a"); got != "file a" {
		t.Errorf("after a failed put: %q", got)
	}
	stale := filepath.Join(dir, "one", "objects", "x.99999999.1.tmp")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, s2, "one", "a/b"); got != "under a" {
		t.Errorf("reopened: %q", got)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a crash's leftover is still there: %v", err)
	}
	l, err := s2.ListBucket("one", &gofakes3.Prefix{HasPrefix: true, Prefix: "a", HasDelimiter: true, Delimiter: "/"}, gofakes3.ListBucketPage{})
	if err != nil || len(l.Contents) != 1 || len(l.CommonPrefixes) != 1 {
		t.Errorf("list: %+v %v", l, err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
