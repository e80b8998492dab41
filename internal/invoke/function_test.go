package invoke

import (
	"maps"
	"slices"
	"testing"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

func TestSchedulerFunctionOfAnImage(t *testing.T) {
	s := &Service{}
	f := store.Function{FunctionName: "img", Version: "$LATEST", MemorySize: 256, Timeout: 3, PackageType: store.PackageImage,
		State: "Active", EphemeralStorage: &store.EphemeralStorage{Size: 1024},
		Environment: &store.Environment{Variables: map[string]string{"A": "function", "C": "3"}},
		Image: &store.FunctionImage{ImageURI: "127.0.0.1:5000/fn:v1", Digest: "sha256:ab", RootDisk: "/cache/sha256-ab/rootfs.ext4", RootSize: 4096,
			Command: []string{"/app/fn", "x"}, WorkingDir: "/app", Env: []string{"A=image", "B=2", "PATH=/app:/bin"}}}
	fn := s.schedulerFunction(f, nil)
	if fn.CodeDigest != "" {
		t.Errorf("CodeDigest %q: an image function boots the agent alone", fn.CodeDigest)
	}
	r := fn.Root
	if r == nil || r.Disk != f.Image.RootDisk || r.Size != 4096 || r.Digest != "sha256:ab" || !slices.Equal(r.Command, f.Image.Command) || r.WorkingDir != "/app" {
		t.Fatalf("root %+v", r)
	}
	want := map[string]string{"A": "function", "B": "2", "C": "3", "PATH": "/app:/bin"}
	if !maps.Equal(fn.Env, want) {
		t.Errorf("env %v, want %v (the function's over the image's)", fn.Env, want)
	}
	if fn.EphemeralStorageMB != 1024 {
		t.Errorf("EphemeralStorageMB %d", fn.EphemeralStorageMB)
	}
	if zip := s.schedulerFunction(store.Function{FunctionName: "z", PackageType: store.PackageZip, CodeSha256: "AAAA"}, nil); zip.Root != nil || zip.CodeDigest == "" {
		t.Errorf("zip function: root %+v, digest %q", zip.Root, zip.CodeDigest)
	}
}

func TestInvokable(t *testing.T) {
	for state, conflict := range map[string]bool{"": false, "Active": false, "Pending": true, "Failed": true} {
		err := invokable(store.Function{State: state})
		le, ok := lambdaerr.As(err)
		if got := ok && le.Status == 409; got != conflict || (!conflict && err != nil) {
			t.Errorf("state %q: %v", state, err)
		}
	}
	err := invokable(store.Function{State: "Pending"})
	le, _ := lambdaerr.As(err)
	if want := "The operation cannot be performed at this time. The function is currently in the following state: Pending"; le == nil || le.Message != want || le.Type != "ResourceConflictException" {
		t.Errorf("error %v, want %q", err, want)
	}
}
