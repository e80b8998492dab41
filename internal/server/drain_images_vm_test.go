package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/testvm"
)

// A container image imported on host a is shared with the others: a
// function created through b on it becomes Active (b fetches the root),
// runs, suspends; drained, its host moves the environment to another,
// which has or fetches the root by its digest and resumes the environment
// there with its memory (here, with the root removed from every other
// host's cache first, by fetching it).
func TestDrainMovesAnImageFunctionEnv(t *testing.T) {
	hs := startDrainCluster(t, 3, time.Second, false)
	a, b := hs[0], hs[1]
	ctx := context.Background()

	tb := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(tb, nil, testvm.FunctionImage(t, "./internal/testfunction")); err != nil {
		t.Fatal(err)
	}
	cache, err := rootfs.New(ImageCacheDir(a.data), rootfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := cache.OpenTarball(tb)
	if err != nil {
		t.Fatal(err)
	}
	root, err := cache.Build(ctx, src) // as `hearth image import` on a
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "a shares the imported root", func() bool {
		a.srv.roots.mu.Lock()
		defer a.srv.roots.mu.Unlock()
		return a.srv.roots.published[root.Digest]
	})

	if _, err := b.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("imgfn"), PackageType: types.PackageTypeImage,
		Code: &types.FunctionCode{ImageUri: aws.String(api.LocalImageURI(root.Digest))}, Role: aws.String("r"), Timeout: aws.Int32(30),
		Environment: &types.Environment{Variables: map[string]string{"TESTFN_INIT_MB": "8"}}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Minute, "imgfn Active on b", func() bool {
		out, err := b.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("imgfn")})
		if err != nil {
			t.Fatal(err)
		}
		if c := out.Configuration; c.State == types.StateFailed {
			t.Fatalf("imgfn Failed on b: %s (%s)", aws.ToString(c.StateReason), c.StateReasonCode)
		}
		return out.Configuration.State == types.StateActive
	})
	if _, ok := b.srv.roots.b.Lookup(root.Digest); !ok {
		t.Fatal("b made the function Active without the root in its cache")
	}
	for _, h := range hs {
		waitUntil(t, 15*time.Second, "the function replicated", func() bool {
			f, err := h.srv.store.Resolve(ctx, "imgfn", "")
			return err == nil && f.State == "Active"
		})
	}

	type verify struct {
		Inits    int   `json:"inits"`
		LoadedMB int   `json:"loadedMB"`
		Intact   bool  `json:"intact"`
		LoadedAt int64 `json:"loadedAt"`
	}
	call := func(h *drainHost) (verify, string) {
		t.Helper()
		out, start := h.invoke(t, "imgfn", `{"action":"verify"}`)
		var v verify
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		return v, start
	}
	first, start := call(a)
	if start != "cold" || first.Inits != 1 || first.LoadedMB != 8 || !first.Intact {
		t.Fatalf("first call: %+v, start %q", first, start)
	}
	var from *drainHost
	var node string
	waitUntil(t, 30*time.Second, "the env suspended", func() bool {
		for i, h := range hs {
			if h.srv.sched.Stats().Suspended == 1 {
				from, node = h, string(rune('a'+i))
				return true
			}
		}
		return false
	})

	// No other host has the root now: the receiver fetches it by its
	// digest before it adopts the env.
	for _, h := range hs {
		if r, ok := h.srv.roots.b.Lookup(root.Digest); ok && h != from {
			if err := os.RemoveAll(filepath.Dir(r.Path)); err != nil {
				t.Fatal(err)
			}
		}
	}
	t0 := time.Now()
	if err := from.srv.member.Drain(ctx, node, true); err != nil {
		t.Fatal(err)
	}
	var p *cluster.DrainProgress
	waitUntil(t, 3*time.Minute, "the env moved", func() bool {
		p = from.srv.moves.DrainProgress()
		if p != nil && p.Dropped > 0 {
			t.Fatalf("dropped: %+v", p.Recent)
		}
		return p != nil && p.Moved == 1 && p.State == cluster.DrainDone
	})
	mv := p.Recent[len(p.Recent)-1]
	t.Logf("moved %s from %s to %s as %s: %.2fs in the mover, %.2fs from the drain request, %d MB shipped (root disk %d MB)",
		mv.Env, node, mv.To, mv.NewEnv, mv.Seconds, time.Since(t0).Seconds(), mv.Bytes>>20, root.Size>>20)
	var to *drainHost
	for i, h := range hs {
		if string(rune('a'+i)) == mv.To {
			to = h
		}
	}
	if to == nil || to == from {
		t.Fatalf("moved to %q", mv.To)
	}
	if st := from.srv.sched.Stats(); st.Suspended != 0 {
		t.Errorf("%s still holds %+v", node, st)
	}
	if _, ok := to.srv.roots.b.Lookup(root.Digest); !ok {
		t.Errorf("%s adopted the env without the root in its cache", mv.To)
	}
	again, start := call(to)
	if start != "resume" || again.Inits != 1 || again.LoadedAt != first.LoadedAt || !again.Intact {
		t.Fatalf("the call on %s: %+v, start %q; want a resume with the first call's memory (%+v)", mv.To, again, start, first)
	}
}
