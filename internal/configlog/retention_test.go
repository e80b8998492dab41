package configlog

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/store"
)

// The hosts' store lets go of the zips no function, version or layer
// version names once they are older than the grace, whichever host
// deleted what named them; a zip put again is young again, and is stored
// again once pruned.
func TestUnnamedZipsArePruned(t *testing.T) {
	ctx := context.Background()
	js := newJetStream(t)
	a, b := newHost(t, js, "a"), newHost(t, js, "b")
	l, err := Open(ctx, Config{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	create := func(h *store.Store, name, body string) string {
		t.Helper()
		b64, hexSum, err := h.PutCode([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		f := newFn(name)
		f.CodeSha256 = b64
		if err := h.CreateFunction(ctx, f); err != nil {
			t.Fatal(err)
		}
		return hexSum
	}
	kept := create(a, "kept", "PK kept")
	gone := create(b, "gone", "PK gone")
	if err := b.DeleteFunction(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	used, err := a.PublishLayerVersion(ctx, store.LayerVersion{LayerName: "used"}, "arn:used", []byte("PK used layer"))
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := a.PublishLayerVersion(ctx, store.LayerVersion{LayerName: "dropped"}, "arn:dropped", []byte("PK dropped layer"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteLayerVersion(ctx, "dropped", dropped.Version); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		t.Helper()
		infos, err := l.ListBlobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range infos {
			out = append(out, i.Name)
		}
		slices.Sort(out)
		return out
	}
	all := []string{"code/" + gone, "code/" + kept, "layer/" + dropped.Digest, "layer/" + used.Digest}
	slices.Sort(all)
	if got := names(); !slices.Equal(got, all) {
		t.Fatalf("blobs %v, want %v", got, all)
	}

	// A host's first sighting of an unnamed zip deletes nothing, nor
	// does one within the grace.
	time.Sleep(20 * time.Millisecond)
	if deleted, err := b.PruneBlobs(ctx, 0); err != nil || len(deleted) != 0 {
		t.Fatalf("b's first prune: deleted %v, %v", deleted, err)
	}
	if deleted, err := a.PruneBlobs(ctx, time.Hour); err != nil || len(deleted) != 0 {
		t.Fatalf("within the grace: deleted %v, %v", deleted, err)
	}
	time.Sleep(20 * time.Millisecond)
	deleted, err := a.PruneBlobs(ctx, 10*time.Millisecond)
	slices.Sort(deleted)
	want := []string{"code/" + gone, "layer/" + dropped.Digest}
	slices.Sort(want)
	if err != nil || !slices.Equal(deleted, want) {
		t.Fatalf("deleted %v, %v; want %v", deleted, err, want)
	}
	if got, want := names(), []string{"code/" + kept, "layer/" + used.Digest}; !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	if p, err := b.FetchCode(ctx, kept); err != nil {
		t.Errorf("a named zip after the prune: %s %v", p, err)
	}

	// A zip put again is stored again (and fetched by the other host).
	again := create(b, "again", "PK gone")
	if again != gone {
		t.Fatal("digest changed")
	}
	if _, err := l.GetBlob(ctx, "code/"+gone); err != nil {
		t.Errorf("a pruned zip put again: %v", err)
	}

	// A put of a zip there already renews it: a prune that listed it
	// before does not delete it.
	before := putTime(t, l, "code/"+kept)
	time.Sleep(20 * time.Millisecond)
	if _, _, err := a.PutCode([]byte("PK kept")); err != nil {
		t.Fatal(err)
	}
	if after := putTime(t, l, "code/"+kept); !after.After(before) {
		t.Errorf("put again at %v, first put %v: not renewed", after, before)
	}
	if ok, err := l.DeleteBlob(ctx, "code/"+kept, before.Add(time.Millisecond)); ok || err != nil {
		t.Errorf("a blob renewed after the cutoff was deleted: %v %v", ok, err)
	}
}

func putTime(t *testing.T, l *Log, name string) time.Time {
	t.Helper()
	infos, err := l.ListBlobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range infos {
		if i.Name == name {
			return i.Put
		}
	}
	t.Fatalf("no blob %s", name)
	return time.Time{}
}
