package objects

import (
	"errors"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
)

type heard struct {
	changes []Change
	fail    error
}

func (h *heard) Changed(c Change) error {
	if h.fail != nil {
		return h.fail
	}
	h.changes = append(h.changes, c)
	return nil
}

// Each change is heard once it is on disk, with how it was made; a
// missing key's delete is none; a change whose event is not stored fails
// its request, and the change stays.
func TestEvents(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &heard{}
	s.SetEvents(h)
	if err := s.CreateBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	put(t, s, "bkt", "in/a", "hello")
	if _, err := s.CopyObject("bkt", "in/a", "bkt", "in/copy", nil); err != nil {
		t.Fatal(err)
	}
	id, err := s.CreateMultipartUpload("bkt", "in/big", nil)
	if err != nil {
		t.Fatal(err)
	}
	etag, err := s.UploadPart("bkt", "in/big", id, 1, 3, strings.NewReader("abc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CompleteMultipartUpload("bkt", "in/big", id, &gofakes3.CompleteMultipartUploadRequest{Parts: []gofakes3.CompletedPart{{PartNumber: 1, ETag: etag}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteObject("bkt", "in/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteObject("bkt", "in/never"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteMulti("bkt", "in/copy", "in/nope"); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		key, kind string
		created   bool
		size      int64
	}{{"in/a", KindPut, true, 5}, {"in/copy", KindCopy, true, 5}, {"in/big", KindCompleteMultipartUpload, true, 3},
		{"in/a", KindDelete, false, 0}, {"in/copy", KindDelete, false, 0}}
	if len(h.changes) != len(want) {
		t.Fatalf("heard %+v", h.changes)
	}
	for i, w := range want {
		c := h.changes[i]
		if c.Bucket != "bkt" || c.Key != w.key || c.Kind != w.kind || c.Created != w.created || c.Size != w.size || (w.created && len(c.MD5) != 16) {
			t.Errorf("change %d: %+v, want %+v", i, c, w)
		}
		if i > 0 && c.Sequencer <= h.changes[i-1].Sequencer {
			t.Errorf("sequencer %s after %s", c.Sequencer, h.changes[i-1].Sequencer)
		}
	}

	h.fail = errors.New("broker down")
	if _, err := s.PutObject("bkt", "in/x", nil, strings.NewReader("x"), 1, nil); err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Fatalf("a put whose event was not stored: %v", err)
	}
	if got := get(t, s, "bkt", "in/x"); got != "x" {
		t.Errorf("the object stays: %q", got)
	}
	res, err := s.DeleteMulti("bkt", "in/x")
	if err != nil || len(res.Error) != 1 || len(res.Deleted) != 0 {
		t.Errorf("a multi-delete whose event was not stored: %+v %v", res, err)
	}
}

// A bucket's configurations outlive a restart, and go with the bucket.
func TestBucketConfig(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BucketConfig("nobucket", "notification"); !gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket) {
		t.Errorf("a missing bucket: %v", err)
	}
	if err := s.PutBucketConfig("bkt", "../x", []byte("x")); err == nil {
		t.Error("a configuration name that is a path was taken")
	}
	if err := s.PutBucketConfig("bkt", "notification", []byte("<x/>")); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := s.BucketConfig("bkt", "notification"); err != nil || string(raw) != "<x/>" {
		t.Fatalf("after a restart: %q %v", raw, err)
	}
	if err := s.DeleteBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	if raw, err := s.BucketConfig("bkt", "notification"); err != nil || raw != nil {
		t.Fatalf("a new bucket of the same name: %q %v", raw, err)
	}
	if err := s.PutBucketConfig("bkt", "notification", []byte("<y/>")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBucketConfig("bkt", "notification", nil); err != nil {
		t.Fatal(err)
	}
	s, _ = Open(dir)
	if raw, _ := s.BucketConfig("bkt", "notification"); raw != nil {
		t.Fatalf("removed, yet %q", raw)
	}
}
