package rootfs

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestResolveErrors(t *testing.T) {
	reg := newRegistry(t)
	good := reg.push(t, "fn/img:v1", testImage(t, "amd64"))
	armOnly := reg.push(t, "fn/arm:v1", testImage(t, "arm64"))
	armIndex := reg.pushIndex(t, "fn/multi:v1", mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: testImage(t, "arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: testImage(t, "arm"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}}},
	))
	private := reg.push(t, "private/img:v1", testImage(t, "amd64"))
	reg.setDeny("/private/")
	closed := closedPort(t)

	tests := []struct {
		name, uri string
		limit     int64
		code      Code
		inMessage string
	}{
		{"empty", "", 0, InvalidReference, "is not valid"},
		{"spaces", " " + good, 0, InvalidReference, "is not valid"},
		{"upper case repository", reg.host + "/Fn/Img:v1", 0, InvalidReference, "is not valid"},
		{"bad tag", reg.host + "/fn/img:v1!", 0, InvalidReference, "is not valid"},
		{"bad digest", reg.host + "/fn/img@sha256:abc", 0, InvalidReference, "is not valid"},
		{"missing tag", reg.host + "/fn/img:v2", 0, NotFound, "does not exist"},
		{"missing repository", reg.host + "/fn/nothing:v1", 0, NotFound, "does not exist"},
		{"missing digest", reg.host + "/fn/img@sha256:" + strings.Repeat("ab", 32), 0, NotFound, "does not exist"},
		{"access denied", private, 0, AccessDenied, "permission"},
		{"unreachable", closed + "/fn/img:v1", 0, Unreachable, "could not be reached"},
		{"arm64 only", armOnly, 0, UnsupportedPlatform, "linux/arm64"},
		{"index without amd64", armIndex, 0, UnsupportedPlatform, "platforms available: linux/arm/v7, linux/arm64"},
		{"compressed layers over the limit", good, 64, TooLarge, "exceeds the maximum of 64 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, Options{MaxUncompressedSize: tc.limit})
			img, err := b.Resolve(ctxT(t), tc.uri)
			if err == nil {
				t.Fatalf("Resolve(%q) = %+v, want a %s error", tc.uri, img, tc.code)
			}
			e, ok := AsError(err)
			if !ok || e.Code != tc.code {
				t.Fatalf("Resolve(%q) error = %v, want code %s", tc.uri, err, tc.code)
			}
			if !strings.Contains(e.Message, tc.inMessage) {
				t.Errorf("message %q does not say %q", e.Message, tc.inMessage)
			}
			if tc.uri != "" && !strings.Contains(e.Message, strings.TrimSpace(tc.uri)) {
				t.Errorf("message %q does not name the image %q", e.Message, tc.uri)
			}
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A registry that accepts connections and never answers must not hold a
// create for long: Resolve gives up after Options.Timeout.
func TestResolveGivesUpOnASilentRegistry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // hold it open, say nothing
		}
	}()
	b := newBuilder(t, Options{Timeout: 300 * time.Millisecond})
	start := time.Now()
	_, err = b.Resolve(ctxT(t), l.Addr().String()+"/fn/img:v1")
	if !IsCode(err, Unreachable) {
		t.Fatalf("Resolve = %v, want %s", err, Unreachable)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Resolve took %v with a 300ms timeout", d)
	}

	// The caller's own cancellation is reported as such, not as the
	// registry's fault.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = b.Resolve(ctx, l.Addr().String()+"/fn/img:v1")
	if !errors.Is(err, context.Canceled) || IsCode(err, Unreachable) {
		t.Errorf("Resolve with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestImportErrors(t *testing.T) {
	dir := t.TempDir()
	notTar := filepath.Join(dir, "not.tar")
	if err := os.WriteFile(notTar, []byte("this is not a tarball"), 0o644); err != nil {
		t.Fatal(err)
	}
	armTar := filepath.Join(dir, "arm.tar")
	tag, err := name.NewTag("arm:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(armTar, tag, testImage(t, "arm64")); err != nil {
		t.Fatal(err)
	}
	twoTar := filepath.Join(dir, "two.tar")
	tag2, err := name.NewTag("other:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.MultiWriteToFile(twoTar, map[name.Tag]v1.Image{tag: testImage(t, "amd64"), tag2: testImage(t, "arm64")}); err != nil {
		t.Fatal(err)
	}
	armLayout := filepath.Join(dir, "arm-layout")
	p, err := layout.Write(armLayout, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(testImage(t, "arm64"), layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"})); err != nil {
		t.Fatal(err)
	}
	emptyDir := filepath.Join(dir, "empty")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}

	b := newBuilder(t, Options{})
	tests := []struct {
		name string
		open func() (*Image, error)
		code Code
	}{
		{"missing tarball", func() (*Image, error) { return b.OpenTarball(filepath.Join(dir, "missing.tar")) }, InvalidImage},
		{"not a tarball", func() (*Image, error) { return b.OpenTarball(notTar) }, InvalidImage},
		{"tarball of two images", func() (*Image, error) { return b.OpenTarball(twoTar) }, InvalidImage},
		{"arm64 tarball", func() (*Image, error) { return b.OpenTarball(armTar) }, UnsupportedPlatform},
		{"not a layout", func() (*Image, error) { return b.OpenLayout(emptyDir) }, InvalidImage},
		{"arm64 layout", func() (*Image, error) { return b.OpenLayout(armLayout) }, UnsupportedPlatform},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := tc.open()
			if !IsCode(err, tc.code) {
				t.Fatalf("got %+v, %v; want a %s error", img, err, tc.code)
			}
		})
	}
}

func TestStateReasonCodes(t *testing.T) {
	for code, want := range map[Code]string{
		NotFound: "ImageDeleted", AccessDenied: "ImageAccessDenied", TooLarge: "InvalidImage",
		UnsupportedPlatform: "InvalidImage", InvalidEntryPoint: "FunctionError.InvalidEntryPoint",
	} {
		if got := (&Error{Code: code}).StateReasonCode(); got != want {
			t.Errorf("%s: StateReasonCode = %s, want %s", code, got, want)
		}
	}
}
