package invoke

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/hearthdev/hearth/internal/store"
)

// countedFunctions counts the layer look-ups.
type countedFunctions struct {
	*store.Store
	layerReads atomic.Int32
}

func (c *countedFunctions) FunctionLayers(ctx context.Context, f store.Function) ([]store.LayerVersion, error) {
	c.layerReads.Add(1)
	return c.Store.FunctionLayers(ctx, f)
}

func TestFunctionLayerDigests(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	const arn = "arn:aws:lambda:us-east-1:000000000000:layer:"
	var layers []store.Layer
	var want []string
	for _, name := range []string{"one", "two"} {
		lv, err := fx.store.PublishLayerVersion(ctx, store.LayerVersion{LayerName: name}, arn+name, []byte("zip of "+name))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, store.Layer{Arn: lv.LayerVersionArn})
		want = append(want, lv.Digest)
	}
	// The function lists them the other way round: its order is kept.
	slices.Reverse(layers)
	slices.Reverse(want)
	for _, f := range []store.Function{
		{FunctionName: "layered", Version: "$LATEST", RevisionID: "r", MemorySize: 128, Timeout: 3, Layers: layers},
		{FunctionName: "plain", Version: "$LATEST", RevisionID: "r", MemorySize: 128, Timeout: 3},
	} {
		if err := fx.store.CreateFunction(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	fns := &countedFunctions{Store: fx.store}
	svc := New(Config{Functions: fns})
	for i := range 3 {
		fn, err := svc.function(ctx, "layered", "")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(fn.LayerDigests, want) {
			t.Fatalf("call %d: layer digests %v, want %v", i, fn.LayerDigests, want)
		}
	}
	if n := fns.layerReads.Load(); n != 1 {
		t.Errorf("layers looked up %d times for 3 invocations, want once", n)
	}
	fn, err := svc.function(ctx, "plain", "")
	if err != nil {
		t.Fatal(err)
	}
	if fn.LayerDigests != nil || fns.layerReads.Load() != 1 {
		t.Errorf("a function without layers: digests %v, %d look-ups", fn.LayerDigests, fns.layerReads.Load())
	}
}
