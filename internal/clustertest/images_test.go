package clustertest_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/clustertest"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
)

// A container image imported on host a (`hearth image import` writes into
// a's cache beside its daemon) is shared with the others: a function
// created through a on it is invoked through b, which runs it cold there
// after fetching the root by its digest into its own cache.
func TestImageImportedOnOneHostRunsOnAnother(t *testing.T) {
	testvm.Driver(t)
	c := clustertest.Start(t, clustertest.Options{})
	a, b := c.Host("a"), c.Host("b")
	ctx := context.Background()

	tb := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(tb, nil, testvm.FunctionImage(t, "./internal/testfunction")); err != nil {
		t.Fatal(err)
	}
	cache, err := rootfs.New(server.ImageCacheDir(a.Data), rootfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := cache.OpenTarball(tb)
	if err != nil {
		t.Fatal(err)
	}
	root, err := cache.Build(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Lambda().CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("imgfn"), PackageType: types.PackageTypeImage,
		Code: &types.FunctionCode{ImageUri: aws.String(api.LocalImageURI(root.Digest))}, Role: aws.String("r"), Timeout: aws.Int32(60)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := b.Lambda().GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("imgfn")})
		if err == nil && out.Configuration.State == types.StateActive {
			break
		}
		if err == nil && out.Configuration.State == types.StateFailed {
			t.Fatalf("imgfn Failed: %s (%s)", aws.ToString(out.Configuration.StateReason), out.Configuration.StateReasonCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("imgfn not Active as b sees it: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	bDisk := filepath.Join(server.ImageCacheDir(b.Data), "ext4-v1", "sha256-"+strings.TrimPrefix(root.Digest, "sha256:"), rootfs.DiskFile)
	if _, err := os.Stat(bDisk); err == nil {
		t.Fatal("b has the root before it needs it")
	}

	// a has the root ready, so placement would send the cold start there:
	// a and c drained, b is the one host left to start it.
	for _, n := range []string{"a", "c"} {
		if err := hearthCall(ctx, b, http.MethodPost, "/hearth/v1/cluster/hosts/"+n+"/drain", nil, nil); err != nil {
			t.Fatalf("drain %s: %v", n, err)
		}
	}
	if err := c.WaitFor(ctx, b, "a and c drained", func(st api.ClusterStatus) bool {
		drained := 0
		for _, h := range st.Hosts {
			if (h.Node == "a" || h.Node == "c") && h.Draining {
				drained++
			}
		}
		return drained == 2
	}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	got := invokeVia(t, b, "imgfn", []byte(`{"action":"argv"}`))
	took := time.Since(t0)
	if got.node != "b" || got.start != "cold" || !strings.Contains(string(got.payload), "/app/testfunction") {
		t.Fatalf("through b: ran on %q (%s): %s", got.node, got.start, got.payload)
	}
	fi, err := os.Stat(bDisk)
	if err != nil || fi.Size() != root.Size {
		t.Fatalf("b's copy of the root: %v, %v; want %d bytes", fi, err, root.Size)
	}
	t.Logf("cold start through b with the root fetched: %v (root disk %d MB)", took.Round(time.Millisecond), root.Size>>20)
}
