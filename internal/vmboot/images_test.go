package vmboot

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
)

// writeZip writes a code package whose bootstrap prints marker, and returns
// its path and SHA-256.
func writeZip(t *testing.T, dir, name, marker string) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	hdr := &zip.FileHeader{Name: "bootstrap", Method: zip.Store}
	hdr.SetMode(0o755)
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("#!/bin/sh\necho " + marker + "\n")); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return p, hex.EncodeToString(sum[:])
}

// testHost is a host whose images can be built without a VM: any file
// serves as the agent and as a module.
func testHost(t *testing.T) *Host {
	t.Helper()
	dir := t.TempDir()
	agent := filepath.Join(dir, "hearth-agent")
	mod := filepath.Join(dir, "virtio_console.ko")
	for _, p := range []string{agent, mod} {
		if err := os.WriteFile(p, []byte("contents of "+filepath.Base(p)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &Host{Agent: agent, AgentDigest: "agent-1", Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux"), Modules: []string{mod}}}
}

// countReads makes h count its zip reads.
func countReads(h *Host) *atomic.Int32 {
	var n atomic.Int32
	h.images.readZip = func(p string) (*guestimage.Code, error) {
		n.Add(1)
		return guestimage.ReadZipFile(p)
	}
	return &n
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCodeImageHitReadsNoZip(t *testing.T) {
	cases := []struct {
		name string
		// after changes the code package once its image is built.
		after func(t *testing.T, zipPath string)
	}{
		{"zip unchanged", func(*testing.T, string) {}},
		{"zip deleted", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
		{"zip replaced by other code", func(t *testing.T, p string) {
			writeZip(t, filepath.Dir(p), filepath.Base(p), "second")
		}},
		{"zip replaced by garbage", func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte("not a zip"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			h := testHost(t)
			reads := countReads(h)
			images := t.TempDir()
			zipPath, digest := writeZip(t, t.TempDir(), "code.zip", "first")

			first, err := h.CodeImage(ctx, images, digest, zipPath)
			if err != nil {
				t.Fatal(err)
			}
			built := mustRead(t, first.Initrd)
			if !bytes.Contains(built, []byte("echo first")) {
				t.Fatalf("the image does not hold the code")
			}
			if first.Kernel != h.Kernel || first.AgentDigest != h.AgentDigest {
				t.Fatalf("image %+v is not for this host", first)
			}
			tc.after(t, zipPath)

			second, err := h.CodeImage(ctx, images, digest, zipPath)
			if err != nil {
				t.Fatalf("cached image not served: %v", err)
			}
			if second.Initrd != first.Initrd {
				t.Fatalf("second image at %s, first at %s", second.Initrd, first.Initrd)
			}
			if !bytes.Equal(mustRead(t, second.Initrd), built) {
				t.Fatal("the cached image was rebuilt")
			}
			if n := reads.Load(); n != 1 {
				t.Fatalf("zip read %d times, want once", n)
			}
		})
	}
}

func TestCodeImageKey(t *testing.T) {
	cases := []struct {
		name string
		// change alters the host or the code; same says whether the image
		// built before still serves.
		change func(t *testing.T, h *Host, dir string) (zipPath, digest string)
		same   bool
	}{
		{"nothing", func(t *testing.T, h *Host, dir string) (string, string) {
			return writeZip(t, dir, "code.zip", "first")
		}, true},
		{"other code", func(t *testing.T, h *Host, dir string) (string, string) {
			return writeZip(t, dir, "other.zip", "second")
		}, false},
		{"other agent build", func(t *testing.T, h *Host, dir string) (string, string) {
			h.AgentDigest = "agent-2"
			return writeZip(t, dir, "code.zip", "first")
		}, false},
		{"other kernel", func(t *testing.T, h *Host, dir string) (string, string) {
			h.Kernel = &guestimage.Kernel{Path: h.Kernel.Path + "-2", Modules: h.Kernel.Modules}
			return writeZip(t, dir, "code.zip", "first")
		}, false},
		{"module rebuilt", func(t *testing.T, h *Host, dir string) (string, string) {
			if err := os.WriteFile(h.Kernel.Modules[0], []byte("a longer module than before"), 0o600); err != nil {
				t.Fatal(err)
			}
			return writeZip(t, dir, "code.zip", "first")
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			images, code := t.TempDir(), t.TempDir()
			h := testHost(t)
			zipPath, digest := writeZip(t, code, "code.zip", "first")
			first, err := h.CodeImage(ctx, images, digest, zipPath)
			if err != nil {
				t.Fatal(err)
			}
			// A host as Open would make it after the change: its key's
			// parts are worked out afresh.
			h2 := &Host{Agent: h.Agent, AgentDigest: h.AgentDigest, Kernel: h.Kernel}
			zipPath, digest = tc.change(t, h2, code)
			second, err := h2.CodeImage(ctx, images, digest, zipPath)
			if err != nil {
				t.Fatal(err)
			}
			if got := second.Initrd == first.Initrd; got != tc.same {
				t.Fatalf("same image = %v (%s, %s), want %v", got, first.Initrd, second.Initrd, tc.same)
			}
		})
	}
}

func TestStoredImageIsCodeImage(t *testing.T) {
	h := testHost(t)
	images := t.TempDir()
	zipPath, digest := writeZip(t, t.TempDir(), "code.zip", "first")
	code, err := guestimage.ReadZipFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := h.StoredImage(images, code)
	if err != nil {
		t.Fatal(err)
	}
	reads := countReads(h)
	img, err := h.CodeImage(context.Background(), images, digest, zipPath)
	if err != nil {
		t.Fatal(err)
	}
	if img.Initrd != stored.Initrd || reads.Load() != 0 {
		t.Fatalf("CodeImage gave %s after %d reads, StoredImage made %s", img.Initrd, reads.Load(), stored.Initrd)
	}
}

func TestCodeImageConcurrentCallersBuildOnce(t *testing.T) {
	h := testHost(t)
	images := t.TempDir()
	zipPath, digest := writeZip(t, t.TempDir(), "code.zip", "first")
	var reads atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	h.images.readZip = func(p string) (*guestimage.Code, error) {
		if reads.Add(1) == 1 {
			close(started)
		}
		<-release
		return guestimage.ReadZipFile(p)
	}
	const callers = 8
	var wg sync.WaitGroup
	initrds := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			img, err := h.CodeImage(context.Background(), images, digest, zipPath)
			initrds[i], errs[i] = img.Initrd, err
		})
	}
	<-started
	time.Sleep(200 * time.Millisecond) // the others reach the build in flight
	close(release)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || initrds[i] != initrds[0] {
			t.Fatalf("caller %d: %q, %v; caller 0: %q", i, initrds[i], errs[i], initrds[0])
		}
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d concurrent callers read the zip %d times, want once", callers, n)
	}
}

func TestCodeImageDifferentDigestsBuildInParallel(t *testing.T) {
	h := testHost(t)
	images, code := t.TempDir(), t.TempDir()
	zipA, digestA := writeZip(t, code, "a.zip", "a")
	zipB, digestB := writeZip(t, code, "b.zip", "b")
	bStarted := make(chan struct{})
	h.images.readZip = func(p string) (*guestimage.Code, error) {
		if p == zipA {
			// A's build finishes only once B's has begun: were builds
			// one at a time, neither would end.
			select {
			case <-bStarted:
			case <-time.After(10 * time.Second):
				return nil, errors.New("b's build did not start while a's ran")
			}
		} else {
			close(bStarted)
		}
		return guestimage.ReadZipFile(p)
	}
	errA := make(chan error, 1)
	go func() {
		_, err := h.CodeImage(context.Background(), images, digestA, zipA)
		errA <- err
	}()
	time.Sleep(50 * time.Millisecond) // A's build is under way
	if _, err := h.CodeImage(context.Background(), images, digestB, zipB); err != nil {
		t.Fatal(err)
	}
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
}

func TestCodeImageWaiterLeavesWithItsContext(t *testing.T) {
	h := testHost(t)
	images := t.TempDir()
	zipPath, digest := writeZip(t, t.TempDir(), "code.zip", "first")
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.images.readZip = func(p string) (*guestimage.Code, error) {
		once.Do(func() { close(started) })
		<-release
		return guestimage.ReadZipFile(p)
	}
	leader := make(chan error, 1)
	go func() {
		_, err := h.CodeImage(context.Background(), images, digest, zipPath)
		leader <- err
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.CodeImage(ctx, images, digest, zipPath); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter: %v, want its deadline", err)
	}
	close(release)
	if err := <-leader; err != nil {
		t.Fatalf("the build failed after a waiter left: %v", err)
	}
}

func TestCodeImageFailures(t *testing.T) {
	cases := []struct {
		name string
		// prepare sets the scene and returns the zip and digest asked for.
		prepare func(t *testing.T, images, code string) (zipPath, digest string)
		wantErr string
	}{
		{"zip missing", func(t *testing.T, images, code string) (string, string) {
			_, digest := writeZip(t, code, "code.zip", "first")
			return filepath.Join(code, "gone.zip"), digest
		}, "cannot read code package"},
		{"zip does not match its digest", func(t *testing.T, images, code string) (string, string) {
			p, _ := writeZip(t, code, "code.zip", "first")
			_, other := writeZip(t, code, "other.zip", "second")
			return p, other
		}, "its SHA-256 is"},
		{"not a zip", func(t *testing.T, images, code string) (string, string) {
			p := filepath.Join(code, "code.zip")
			if err := os.WriteFile(p, []byte("not a zip"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p, strings.Repeat("0", 64)
		}, "Could not unzip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := testHost(t)
			images, code := t.TempDir(), t.TempDir()
			zipPath, digest := tc.prepare(t, images, code)
			_, err := h.CodeImage(context.Background(), images, digest, zipPath)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			left, _ := filepath.Glob(filepath.Join(images, "*", "*"))
			if len(left) != 0 {
				t.Fatalf("a failed build left %v", left)
			}
		})
	}
}

func TestCodeImageRetriesAfterFailure(t *testing.T) {
	h := testHost(t)
	images, code := t.TempDir(), t.TempDir()
	src, digest := writeZip(t, code, "built.zip", "first")
	zipPath := filepath.Join(code, "code.zip")
	if _, err := h.CodeImage(context.Background(), images, digest, zipPath); err == nil {
		t.Fatal("an image was made without its zip")
	}
	if err := os.Rename(src, zipPath); err != nil {
		t.Fatal(err)
	}
	img, err := h.CodeImage(context.Background(), images, digest, zipPath)
	if err != nil {
		t.Fatalf("a failed build was remembered: %v", err)
	}
	if !bytes.Contains(mustRead(t, img.Initrd), []byte("echo first")) {
		t.Fatal("the image does not hold the code")
	}
}

func TestCodeImageIgnoresHalfWrittenImage(t *testing.T) {
	h := testHost(t)
	images := t.TempDir()
	zipPath, digest := writeZip(t, t.TempDir(), "code.zip", "first")
	// A build that crashed left its file aside, never under the used name.
	dir := filepath.Join(images, h.imageKey(digest))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(dir, imageFile+".123.tmp")
	if err := os.WriteFile(half, []byte("070701 half"), 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := h.CodeImage(context.Background(), images, digest, zipPath)
	if err != nil {
		t.Fatal(err)
	}
	if img.Initrd == half || !bytes.Contains(mustRead(t, img.Initrd), []byte("echo first")) {
		t.Fatalf("served %s, not a whole image", img.Initrd)
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	if len(tmps) != 1 {
		t.Fatalf("the build left its own temporary files: %v", tmps)
	}
}

// A function with no zip (a container image) boots the agent alone: no
// code is read, and the image is built once and kept apart from any code's.
func TestCodeImageAgentOnly(t *testing.T) {
	ctx := context.Background()
	h := testHost(t)
	reads := countReads(h)
	images := t.TempDir()
	first, err := h.CodeImage(ctx, images, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(mustRead(t, first.Initrd), []byte("var/task/bootstrap")) {
		t.Error("the agent-only image holds a bootstrap")
	}
	zipPath, digest := writeZip(t, t.TempDir(), "code.zip", "zip")
	code, err := h.CodeImage(ctx, images, digest, zipPath)
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.CodeImage(ctx, images, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if again.Initrd != first.Initrd || code.Initrd == first.Initrd {
		t.Errorf("agent-only at %s then %s, code at %s", first.Initrd, again.Initrd, code.Initrd)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("zips read %d times, want once (the code's)", n)
	}
}

// writeLayer writes a layer zip holding data/b.txt with body, and returns
// it as CodeImage takes it.
func writeLayer(t *testing.T, dir, name, body string) LayerZip {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	hdr := &zip.FileHeader{Name: "data/b.txt", Method: zip.Store}
	hdr.SetMode(0o644)
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return LayerZip{Digest: hex.EncodeToString(sum[:]), Path: p}
}

func TestCodeImageLayersKey(t *testing.T) {
	dir := t.TempDir()
	one := writeLayer(t, dir, "one.zip", "layer one")
	two := writeLayer(t, dir, "two.zip", "layer two")
	cases := []struct {
		name   string
		layers []LayerZip
		same   bool   // the image built for [one two] serves
		holds  string // what the image holds of data/b.txt
	}{
		{"same layers", []LayerZip{one, two}, true, "layer two"},
		{"no layers", nil, false, ""},
		{"one layer fewer", []LayerZip{one}, false, "layer one"},
		{"the other order", []LayerZip{two, one}, false, "layer one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			h := testHost(t)
			reads := countReads(h)
			images := t.TempDir()
			zipPath, digest := writeZip(t, t.TempDir(), "code.zip", "first")
			first, err := h.CodeImage(ctx, images, digest, zipPath, one, two)
			if err != nil {
				t.Fatal(err)
			}
			second, err := h.CodeImage(ctx, images, digest, zipPath, tc.layers...)
			if err != nil {
				t.Fatal(err)
			}
			if got := second.Initrd == first.Initrd; got != tc.same {
				t.Fatalf("same image = %v (%s, %s), want %v", got, first.Initrd, second.Initrd, tc.same)
			}
			wantReads := int32(2)
			if tc.same {
				wantReads = 1
			}
			if n := reads.Load(); n != wantReads {
				t.Errorf("code read %d times, want %d", n, wantReads)
			}
			img := mustRead(t, second.Initrd)
			for _, body := range []string{"layer one", "layer two"} {
				if got, want := bytes.Contains(img, []byte(body)), body == tc.holds; got != want {
					t.Errorf("image holds %q: %v, want %v", body, got, want)
				}
			}
		})
	}
	t.Run("a layer whose zip is not its digest", func(t *testing.T) {
		h := testHost(t)
		zipPath, digest := writeZip(t, t.TempDir(), "code.zip", "first")
		bad := LayerZip{Digest: one.Digest, Path: two.Path}
		_, err := h.CodeImage(context.Background(), t.TempDir(), digest, zipPath, bad)
		if err == nil || !strings.Contains(err.Error(), "its SHA-256 is "+two.Digest) {
			t.Fatalf("got %v, want the digest mismatch", err)
		}
	})
}
