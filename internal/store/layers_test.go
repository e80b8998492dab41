package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

const testLayerArn = "arn:aws:lambda:local:000000000000:layer:"

func publishLayer(t *testing.T, s *Store, name, content string, runtimes ...string) LayerVersion {
	t.Helper()
	lv, err := s.PublishLayerVersion(context.Background(), LayerVersion{LayerName: name, Runtimes: runtimes}, testLayerArn+name, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	return lv
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestLayerVersionNumbersAreNeverReused(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	want := []int64{1, 2}
	for i, w := range want {
		if lv := publishLayer(t, s, "deps", "zip"+string(rune('a'+i))); lv.Version != w || lv.LayerVersionArn != testLayerArn+"deps:"+string(rune('0'+w)) {
			t.Fatalf("version %d, arn %s; want %d", lv.Version, lv.LayerVersionArn, w)
		}
	}
	if lv := publishLayer(t, s, "other", "zip"); lv.Version != 1 {
		t.Errorf("another layer starts at %d, want 1", lv.Version)
	}
	for _, v := range []int64{1, 2, 2, 7} { // deleting twice, or what never was, is no error
		if err := s.DeleteLayerVersion(ctx, "deps", v); err != nil {
			t.Fatalf("delete %d: %v", v, err)
		}
	}
	if _, err := s.GetLayerVersion(ctx, "deps", 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted version: %v", err)
	}
	if lv := publishLayer(t, s, "deps", "zipc"); lv.Version != 3 {
		t.Errorf("after deleting every version the next is %d, want 3", lv.Version)
	}
	got, err := s.GetLayerVersion(ctx, "deps", 3)
	if err != nil || got.CodeSize != 4 || got.CodeSha256 == "" || !exists(s.LayerPath(got.Digest)) {
		t.Errorf("get %+v %v", got, err)
	}
}

func TestListLayersGivesTheLatestMatchingVersion(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	publishLayer(t, s, "a", "a1", "python3.11")
	publishLayer(t, s, "a", "a2", "nodejs18.x")
	publishLayer(t, s, "b", "b1", "python3.11")
	publishLayer(t, s, "c", "c1", "python3.11")
	publishLayer(t, s, "c", "c2", "python3.11")
	gone := publishLayer(t, s, "d", "d1", "python3.11")
	if err := s.DeleteLayerVersion(ctx, "d", gone.Version); err != nil {
		t.Fatal(err)
	}
	py := func(lv LayerVersion) bool { return slices.Contains(lv.Runtimes, "python3.11") }
	all := func(LayerVersion) bool { return true }
	type item struct {
		name string
		v    int64
	}
	tests := []struct {
		name     string
		marker   string
		max      int
		match    func(LayerVersion) bool
		want     []item
		wantNext string
	}{
		{"all", "", 50, all, []item{{"a", 2}, {"b", 1}, {"c", 2}}, ""},
		{"python only: an older version of a", "", 50, py, []item{{"a", 1}, {"b", 1}, {"c", 2}}, ""},
		{"first page", "", 2, all, []item{{"a", 2}, {"b", 1}}, "b"},
		{"second page", "b", 2, all, []item{{"c", 2}}, ""},
		{"a page exactly full", "a", 2, all, []item{{"b", 1}, {"c", 2}}, ""},
		{"none", "", 50, func(LayerVersion) bool { return false }, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := s.ListLayers(ctx, tt.marker, tt.max, tt.match)
			if err != nil {
				t.Fatal(err)
			}
			var items []item
			for _, lv := range got {
				items = append(items, item{lv.LayerName, lv.Version})
			}
			if !slices.Equal(items, tt.want) || next != tt.wantNext {
				t.Errorf("got %v next %q, want %v next %q", items, next, tt.want, tt.wantNext)
			}
		})
	}
	versions, err := s.ListLayerVersions(ctx, "c")
	if err != nil || len(versions) != 2 || versions[0].Version != 2 || versions[1].Version != 1 {
		t.Errorf("versions of c, newest first: %+v %v", versions, err)
	}
	if versions, err := s.ListLayerVersions(ctx, "nothing"); err != nil || len(versions) != 0 {
		t.Errorf("versions of a layer that does not exist: %+v %v", versions, err)
	}
}

// A deleted version stays, hidden, while a function uses it: FunctionLayers
// still finds it and its zip. Once no function does, it and its zip go,
// unless another version has the same zip.
func TestDeletedLayerVersionsStayWhileUsed(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	used := publishLayer(t, s, "deps", "shared content")
	twin := publishLayer(t, s, "twin", "shared content")
	alone := publishLayer(t, s, "alone", "alone content")
	f := Function{FunctionName: "fn", FunctionArn: "arn:fn", Layers: []Layer{{Arn: used.LayerVersionArn, CodeSize: used.CodeSize}, {Arn: alone.LayerVersionArn, CodeSize: alone.CodeSize}}}
	if err := s.CreateFunction(ctx, f); err != nil {
		t.Fatal(err)
	}
	// A published version keeps using alone after $LATEST drops it.
	if _, err := s.PublishVersion(ctx, "fn", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateFunction(ctx, "fn", func(f *Function) error { f.Layers = f.Layers[:1]; f.RevisionID = "r2"; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, lv := range []LayerVersion{used, alone} {
		if err := s.DeleteLayerVersion(ctx, lv.LayerName, lv.Version); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetLayerVersion(ctx, lv.LayerName, lv.Version); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s is still found after its deletion: %v", lv.LayerVersionArn, err)
		}
	}
	if got, _, _ := s.ListLayers(ctx, "", 50, func(LayerVersion) bool { return true }); len(got) != 1 || got[0].LayerName != "twin" {
		t.Errorf("ListLayers shows deleted versions: %+v", got)
	}
	v1, err := s.GetVersion(ctx, "fn", "1")
	if err != nil {
		t.Fatal(err)
	}
	layers, err := s.FunctionLayers(ctx, v1)
	if err != nil || len(layers) != 2 || layers[0].LayerName != "deps" || layers[1].LayerName != "alone" {
		t.Fatalf("FunctionLayers of version 1: %+v %v", layers, err)
	}
	for _, lv := range layers {
		if !exists(s.LayerPath(lv.Digest)) {
			t.Errorf("the zip of %s, which version 1 uses, is gone", lv.LayerVersionArn)
		}
	}
	// The function goes: its layers are pruned; the zip deps shared with
	// twin stays.
	if err := s.DeleteFunction(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if err := s.PruneLayers(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FunctionLayers(ctx, v1); !errors.Is(err, ErrNotFound) {
		t.Errorf("a pruned layer is still found: %v", err)
	}
	if exists(s.LayerPath(alone.Digest)) {
		t.Error("the zip of a pruned layer is kept")
	}
	if !exists(s.LayerPath(twin.Digest)) {
		t.Error("pruning deps removed the zip twin still has")
	}
	if err := s.DeleteLayerVersion(ctx, "twin", twin.Version); err != nil {
		t.Fatal(err)
	}
	if exists(s.LayerPath(twin.Digest)) {
		t.Error("the last version with a zip went, the zip stayed")
	}
}

// A database made before layers existed opens, and its functions have none.
func TestStoreFromBeforeLayersOpens(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFunction(ctx, Function{FunctionName: "old", FunctionArn: "arn:old"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `DROP TABLE layers; DROP TABLE layer_versions`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, "layers")); err != nil {
		t.Fatal(err)
	}
	s = openStoreAt(t, dir)
	f, err := s.GetFunction(ctx, "old")
	if err != nil || f.Layers != nil {
		t.Fatalf("old function: %+v %v", f.Layers, err)
	}
	if lv := publishLayer(t, s, "new", "zip"); lv.Version != 1 {
		t.Errorf("first layer version %d", lv.Version)
	}
}

func openStoreAt(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLayerVersionPolicy(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	lv := publishLayer(t, s, "deps", "zip")
	if _, err := s.GetLayerVersionPolicy(ctx, "deps", lv.Version); !errors.Is(err, ErrNotFound) {
		t.Errorf("policy of a version with none: %v", err)
	}
	add := func(p *Policy) error {
		p.Document.Statement = append(p.Document.Statement, PolicyStatement{Sid: "all", Effect: "Allow", Principal: "*", Action: "lambda:GetLayerVersion"})
		return nil
	}
	if _, err := s.UpdateLayerVersionPolicy(ctx, "deps", 9, "r0", add); !errors.Is(err, ErrNotFound) {
		t.Errorf("policy of a missing version: %v", err)
	}
	if _, err := s.UpdateLayerVersionPolicy(ctx, "deps", lv.Version, "r1", add); err != nil {
		t.Fatal(err)
	}
	p, err := s.GetLayerVersionPolicy(ctx, "deps", lv.Version)
	if err != nil || p.RevisionID != "r1" || len(p.Document.Statement) != 1 || p.Document.Version != "2012-10-17" {
		t.Fatalf("policy %+v %v", p, err)
	}
	if _, err := s.UpdateLayerVersionPolicy(ctx, "deps", lv.Version, "r2", func(p *Policy) error { p.Document.Statement = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLayerVersionPolicy(ctx, "deps", lv.Version); !errors.Is(err, ErrNotFound) {
		t.Errorf("a policy with no statement left is not removed: %v", err)
	}
}
