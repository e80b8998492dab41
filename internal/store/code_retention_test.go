package store

import (
	"context"
	"os"
	"slices"
	"testing"
)

// A zip stays while $LATEST or a published version names it; an unnamed
// one goes at the first prune that finds it unnamed since an earlier one
// (a grace apart), and a zip put since waits again.
func TestPruneCode(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	put := func(body string) (b64, hexSum string) {
		t.Helper()
		b64, hexSum, err := s.PutCode([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return b64, hexSum
	}
	create := func(name, b64 string) {
		t.Helper()
		f := newFn(name)
		f.CodeSha256 = b64
		if err := s.CreateFunction(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	prune := func() []string {
		t.Helper()
		removed, err := s.PruneCode(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(removed)
		return removed
	}
	exists := func(sum string) bool {
		_, err := os.Stat(s.CodePath(sum))
		return err == nil
	}
	v1b64, v1 := put("version 1's code")
	latestB64, latest := put("$LATEST's code")
	goneB64, gone := put("a deleted function's code")
	create("f", v1b64)
	if _, err := s.PublishVersion(ctx, "f", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateFunction(ctx, "f", func(f *Function) error { f.CodeSha256 = latestB64; return nil }); err != nil {
		t.Fatal(err)
	}
	create("g", goneB64)
	if err := s.DeleteFunction(ctx, "g"); err != nil {
		t.Fatal(err)
	}

	if removed := prune(); len(removed) != 0 {
		t.Fatalf("the first prune removed %v: an unnamed zip must be seen so twice", removed)
	}
	// A zip put between the two prunes (its function not yet written)
	// and one put again are not due yet.
	_, pending := put("a zip whose function is being created")
	usedBefore, _, err := s.CodeStorage()
	if err != nil {
		t.Fatal(err)
	}
	if removed := prune(); !slices.Equal(removed, []string{gone}) {
		t.Errorf("removed %v, want only the deleted function's %s", removed, gone)
	}
	for _, kept := range []string{v1, latest, pending} {
		if !exists(kept) {
			t.Errorf("zip %s removed", kept)
		}
	}
	if used, _, _ := s.CodeStorage(); used != usedBefore-int64(len("a deleted function's code")) {
		t.Errorf("code storage %d after the prune, want %d", used, usedBefore-int64(len("a deleted function's code")))
	}

	// Deleting the function lets its versions' zips go; a zip put again
	// between the prunes stays, and one put after its prune is stored
	// again.
	if err := s.DeleteFunction(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if removed := prune(); !slices.Equal(removed, []string{pending}) {
		t.Errorf("removed %v, want the zip unnamed since the last prune, %s", removed, pending)
	}
	put("$LATEST's code")
	if removed := prune(); !slices.Equal(removed, []string{v1}) {
		t.Errorf("removed %v, want version 1's %s (the other was put again)", removed, v1)
	}
	if !exists(latest) {
		t.Error("a zip put again between the prunes was removed")
	}
	if _, sum := put("version 1's code"); !exists(sum) {
		t.Error("a zip put again after its prune is missing")
	}
}
