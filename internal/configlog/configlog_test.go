package configlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/store"
)

// Two (or more) hosts' stores on one in-process JetStream: the real
// stream, object store, SQLite and ordered consumers.

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := broker.New(ctx, broker.Config{Dir: t.TempDir(), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Shutdown(ctx)
	})
	return b.JetStream()
}

// openHost opens a store in dir and makes it follow the log.
func openHost(t *testing.T, js jetstream.JetStream, dir, name string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, Config{JetStream: js, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Replicate(ctx, store.Replication{Log: l, Blobs: l, Host: name, Logger: quiet}); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s
}

func newHost(t *testing.T, js jetstream.JetStream, name string) *store.Store {
	t.Helper()
	s := openHost(t, js, t.TempDir(), name)
	t.Cleanup(func() { s.Close() })
	return s
}

func newFn(name string) store.Function {
	return store.Function{FunctionName: name, FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:" + name, Runtime: "provided.al2023",
		Handler: "bootstrap", MemorySize: 128, Timeout: 3, Version: "$LATEST", RevisionID: "r1", State: "Active", PackageType: store.PackageZip}
}

// eventually retries check until it passes or ten seconds pass: a host
// applies another's writes shortly after they are in the log.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A write on one host is read on the other, whatever table it is in, and
// the reader's configuration generation moves (the invocation path's
// resolve cache drops what it kept).
func TestWritesOnOneHostAreReadOnTheOther(t *testing.T) {
	ctx := context.Background()
	js := newJetStream(t)
	a, b := newHost(t, js, "a"), newHost(t, js, "b")

	gen := b.ConfigGeneration()
	if err := a.CreateFunction(ctx, newFn("f")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "function on b", func() error { _, err := b.GetFunction(ctx, "f"); return err })
	if b.ConfigGeneration() == gen {
		t.Error("b's configuration generation did not change with a's write")
	}

	// b writes next: it must have a's entry first, and a gets b's.
	if _, err := b.UpdateFunction(ctx, "f", func(f *store.Function) error { f.MemorySize = 512; return nil }); err != nil {
		t.Fatal(err)
	}
	v, err := b.PublishVersion(ctx, "f", "first")
	if err != nil || v.Version != "1" {
		t.Fatalf("publish on b: %+v %v", v.Version, err)
	}
	if err := a.PutAlias(ctx, "f", store.Alias{Name: "live", FunctionVersion: "1", RevisionID: "x"}, false); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateTags(ctx, "f", func(tags map[string]string) error { tags["team"] = "core"; return nil }); err != nil {
		t.Fatal(err)
	}
	n := 3
	if err := a.SetConcurrency(ctx, "f", &n); err != nil {
		t.Fatal(err)
	}
	if err := a.PutURLConfig(ctx, store.URLConfig{Function: "f", URLID: "abc", AuthType: "NONE"}, false); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateQueue(ctx, store.Queue{Name: "q", ID: "q1", Attributes: "{}", Created: time.UnixMilli(1), Modified: time.UnixMilli(1)}); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateEventSourceMapping(ctx, store.EventSourceMapping{UUID: "u1", Function: "f", EventSourceArn: "arn:q", BatchSize: 10, State: "Enabled"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's writes on b", func() error {
		f, err := b.Resolve(ctx, "f", "live")
		if err != nil {
			return err
		}
		if f.Version != "1" || f.MemorySize != 512 {
			return fmt.Errorf("live is version %s with %d MB", f.Version, f.MemorySize)
		}
		if tags, err := b.Tags(ctx, "f"); err != nil || tags["team"] != "core" {
			return fmt.Errorf("tags %v %v", tags, err)
		}
		if c, err := b.Concurrency(ctx, "f"); err != nil || c == nil || *c != 3 {
			return fmt.Errorf("concurrency %v %v", c, err)
		}
		if u, err := b.URLConfigByID(ctx, "abc"); err != nil || u.Function != "f" {
			return fmt.Errorf("url %+v %v", u, err)
		}
		if _, err := b.Queue(ctx, "q"); err != nil {
			return err
		}
		_, err = b.GetEventSourceMapping(ctx, "u1")
		return err
	})

	if err := b.DeleteFunction(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delete on a", func() error {
		if _, err := a.GetFunction(ctx, "f"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("a still has f: %v", err)
		}
		return nil
	})
	if a.AppliedSequence() != b.AppliedSequence() {
		t.Errorf("applied: a %d, b %d", a.AppliedSequence(), b.AppliedSequence())
	}
}

// Hosts creating the same function at once: exactly one wins, the others
// get ErrExists, and every host has the winner's. Updates made at once on
// several hosts are all kept (none lost), and versions published at once
// get distinct numbers.
func TestConcurrentWritesOnSeveralHosts(t *testing.T) {
	ctx := context.Background()
	js := newJetStream(t)
	hosts := []*store.Store{newHost(t, js, "a"), newHost(t, js, "b"), newHost(t, js, "c")}

	for round := 0; round < 10; round++ {
		name := fmt.Sprintf("f%d", round)
		errs := make([]error, len(hosts))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				f := newFn(name)
				f.Description = fmt.Sprintf("host %d", i)
				errs[i] = h.CreateFunction(ctx, f)
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: hosts %d and %d both created %s", round, winner, i, name)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrExists):
				t.Fatalf("round %d: host %d: %v, want ErrExists", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no host created %s: %v", round, name, errs)
		}
		for i, h := range hosts {
			eventually(t, "the winner's function", func() error {
				f, err := h.GetFunction(ctx, name)
				if err != nil {
					return err
				}
				if want := fmt.Sprintf("host %d", winner); f.Description != want {
					return fmt.Errorf("host %d has %q, want %q", i, f.Description, want)
				}
				return nil
			})
		}
	}

	const perHost = 5
	var wg sync.WaitGroup
	versions := make(chan string, len(hosts)*perHost)
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perHost; k++ {
				if _, err := h.UpdateFunction(ctx, "f0", func(f *store.Function) error {
					f.Timeout++
					f.RevisionID = fmt.Sprintf("r%d", f.Timeout)
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
				v, err := h.PublishVersion(ctx, "f0", "")
				if err != nil {
					t.Error(err)
					return
				}
				versions <- v.Version
			}
		}()
	}
	wg.Wait()
	close(versions)
	for _, h := range hosts {
		eventually(t, "every update", func() error {
			f, err := h.GetFunction(ctx, "f0")
			if err != nil {
				return err
			}
			if want := 3 + len(hosts)*perHost; f.Timeout != want {
				return fmt.Errorf("timeout %d, want %d: updates lost", f.Timeout, want)
			}
			return nil
		})
	}
	// Each publish follows an update, though another host's update may
	// come between: at least as many distinct versions as... each one
	// published is a distinct number, and the last host's list has them.
	seen := map[string]bool{}
	for v := range versions {
		seen[v] = true
	}
	// c may apply the last publishes after the last update: wait for them.
	var list []store.Function
	eventually(t, "every published version on c", func() error {
		var err error
		if list, err = hosts[2].ListVersions(ctx, "f0"); err != nil {
			return err
		}
		for v := range seen {
			found := false
			for _, f := range list {
				found = found || f.Version == v
			}
			if !found {
				return fmt.Errorf("version %s published, not listed on c", v)
			}
		}
		return nil
	})
	for i, f := range list[1:] {
		if f.Version != fmt.Sprint(i+1) {
			t.Errorf("versions %v: not 1..n", list)
			break
		}
	}
}

// A host that stops and starts again resumes after the last entry it
// applied: it applies the ones written meanwhile, and none twice.
func TestRestartedHostResumesFromItsAppliedSequence(t *testing.T) {
	ctx := context.Background()
	js := newJetStream(t)
	dirA := t.TempDir()
	a := openHost(t, js, dirA, "a")
	b := newHost(t, js, "b")
	for _, name := range []string{"f1", "f2"} {
		if err := a.CreateFunction(ctx, newFn(name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.PublishLayerVersion(ctx, store.LayerVersion{LayerName: "l"}, "arn:l", []byte("zip 1")); err != nil {
		t.Fatal(err)
	}
	stoppedAt := a.AppliedSequence()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	eventually(t, "b has a's entries", func() error {
		if b.AppliedSequence() != stoppedAt {
			return fmt.Errorf("b at %d, a stopped at %d", b.AppliedSequence(), stoppedAt)
		}
		return nil
	})
	if err := b.CreateFunction(ctx, newFn("f3")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishLayerVersion(ctx, store.LayerVersion{LayerName: "l"}, "arn:l", []byte("zip 2")); err != nil {
		t.Fatal(err)
	}

	a = openHost(t, js, dirA, "a")
	defer a.Close()
	if got, want := a.AppliedSequence(), b.AppliedSequence(); got != want {
		t.Fatalf("restarted a applied up to %d, the log has %d", got, want)
	}
	// A fresh store's generation counts the entries it applied since it
	// opened: b's two, not the log's five.
	if g := a.ConfigGeneration(); g != 2 {
		t.Errorf("a applied %d entries after its restart, want 2", g)
	}
	if _, err := a.GetFunction(ctx, "f3"); err != nil {
		t.Error(err)
	}
	lvs, err := a.ListLayerVersions(ctx, "l")
	if err != nil {
		t.Fatal(err)
	}
	if len(lvs) != 2 || lvs[0].Version != 2 {
		t.Errorf("layer versions after restart: %+v", lvs)
	}
	lv, err := a.PublishLayerVersion(ctx, store.LayerVersion{LayerName: "l"}, "arn:l", []byte("zip 3"))
	if err != nil || lv.Version != 3 {
		t.Errorf("next layer version on a: %d %v, want 3", lv.Version, err)
	}
}

// Entries no host can apply (garbage, another format, a statement that is
// not a replicated write, wrong arguments, one failing on the rows) are
// refused: skipped by every host, nothing of them written, and the hosts
// go on with the next.
func TestInvalidEntriesAreRefused(t *testing.T) {
	ctx := context.Background()
	js := newJetStream(t)
	a, b := newHost(t, js, "a"), newHost(t, js, "b")
	if err := a.CreateFunction(ctx, newFn("kept")); err != nil {
		t.Fatal(err)
	}
	bad := []string{
		`not json`,
		`{"v":2,"id":"x","op":"Future","stmts":[{"sql":"DELETE FROM functions WHERE name = ?","args":["kept"]}]}`,
		`{"v":1,"id":"x","op":"Drop","stmts":[{"sql":"DROP TABLE functions"}]}`,
		`{"v":1,"id":"x","op":"Envs","stmts":[{"sql":"DELETE FROM envs"}]}`,
		`{"v":1,"id":"x","op":"Args","stmts":[{"sql":"DELETE FROM functions WHERE name = ?","args":[]}]}`,
		`{"v":1,"id":"x","op":"Float","stmts":[{"sql":"DELETE FROM functions WHERE name = ?","args":[1.5]}]}`,
		`{"v":1,"id":"x","op":"Empty","stmts":[]}`,
		// Valid statements, the second failing (the name is taken): the
		// first is not kept either.
		`{"v":1,"id":"x","op":"Half","stmts":[{"sql":"DELETE FROM functions WHERE name = ?","args":["kept"]},` +
			`{"sql":"INSERT INTO functions (name, config) VALUES (?, ?)","args":["other","{}"]},` +
			`{"sql":"INSERT INTO functions (name, config) VALUES (?, ?)","args":["other","{}"]}]}`,
	}
	for _, e := range bad {
		if _, err := js.Publish(ctx, DefaultSubject, []byte(e)); err != nil {
			t.Fatal(err)
		}
	}
	// A valid write after them: every host gets past the bad ones.
	if err := b.CreateFunction(ctx, newFn("after")); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]*store.Store{"a": a, "b": b} {
		eventually(t, name+" past the bad entries", func() error {
			if _, err := h.GetFunction(ctx, "after"); err != nil {
				return err
			}
			if _, err := h.GetFunction(ctx, "kept"); err != nil {
				return fmt.Errorf("a refused entry changed the store: %w", err)
			}
			if _, err := h.GetFunction(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("half of a refused entry was kept: %v", err)
			}
			if n, err := h.FunctionCount(ctx); err != nil || n != 2 {
				return fmt.Errorf("%d functions (%v), want 2", n, err)
			}
			return nil
		})
	}
	if want := uint64(len(bad) + 2); a.AppliedSequence() != want || b.AppliedSequence() != want {
		t.Errorf("applied a %d, b %d, want %d", a.AppliedSequence(), b.AppliedSequence(), want)
	}
	// And writes go on.
	if _, err := a.UpdateFunction(ctx, "kept", func(f *store.Function) error { f.Description = "still"; return nil }); err != nil {
		t.Fatal(err)
	}
}

// A zip stored on one host is read on the other, which did not have it,
// and a zip whose content is not its name's is not taken.
func TestZipWrittenOnOneHostIsReadOnTheOther(t *testing.T) {
	ctx := context.Background()
	js := newJetStream(t)
	a, b := newHost(t, js, "a"), newHost(t, js, "b")
	code := []byte("PK code of f")
	_, hexSum, err := a.PutCode(code)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.CodePath(hexSum)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("b has the code before fetching it: %v", err)
	}
	p, err := b.FetchCode(ctx, hexSum)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, code) {
		t.Errorf("b's code: %q %v", got, err)
	}

	lv, err := a.PublishLayerVersion(ctx, store.LayerVersion{LayerName: "l"}, "arn:l", []byte("PK layer"))
	if err != nil {
		t.Fatal(err)
	}
	p, err = b.FetchLayer(ctx, lv.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "PK layer" {
		t.Errorf("b's layer: %q %v", got, err)
	}

	l, err := Open(ctx, Config{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	forged := "0000000000000000000000000000000000000000000000000000000000000000"
	if err := l.PutBlob(ctx, "code/"+forged, []byte("not that")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.FetchCode(ctx, forged); err == nil {
		t.Error("a zip whose digest is not its name's was taken")
	}
	if _, err := b.FetchCode(ctx, "1111111111111111111111111111111111111111111111111111111111111111"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a zip no host stored: %v, want ErrNotFound", err)
	}
}

// A standalone node becomes a cluster's first host: following the empty
// log, it brings its configuration and zips into it, and a host that joins
// next has them. Another host with a configuration of its own is refused,
// and keeps its own.
func TestStandaloneConfigurationSeedsAnEmptyLog(t *testing.T) {
	ctx := context.Background()
	js := newJetStream(t)
	dir := t.TempDir()
	s, err := store.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	_, hexSum, err := s.PutCode([]byte("PK standalone code"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFunction(ctx, newFn("mine")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PublishVersion(ctx, "mine", ""); err != nil {
		t.Fatal(err)
	}
	n := 2
	if err := s.SetConcurrency(ctx, "mine", &n); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	first := openHost(t, js, dir, "first")
	defer first.Close()
	if first.AppliedSequence() == 0 {
		t.Fatal("the first host's configuration is not in the log")
	}
	joined := newHost(t, js, "joined")
	f, err := joined.Resolve(ctx, "mine", "1")
	if err != nil || f.FunctionName != "mine" {
		t.Fatalf("the seeded function on the joined host: %+v %v", f, err)
	}
	if c, err := joined.Concurrency(ctx, "mine"); err != nil || c == nil || *c != 2 {
		t.Errorf("seeded concurrency: %v %v", c, err)
	}
	if p, err := joined.FetchCode(ctx, hexSum); err != nil {
		t.Errorf("seeded code: %v", err)
	} else if b, _ := os.ReadFile(p); string(b) != "PK standalone code" {
		t.Errorf("seeded code: %q", b)
	}
	// The seed is the first's rows (its version sequence too): writes go
	// on from it as anywhere.
	if v, err := first.PublishVersion(ctx, "mine", ""); err != nil || v.Version != "1" {
		t.Errorf("publishing an unchanged $LATEST: version %s %v, want 1", v.Version, err)
	}
	if _, err := joined.UpdateFunction(ctx, "mine", func(f *store.Function) error { f.RevisionID = "r2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if v, err := joined.PublishVersion(ctx, "mine", ""); err != nil || v.Version != "2" {
		t.Errorf("next version on the joined host: %s %v, want 2", v.Version, err)
	}

	other, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.CreateFunction(ctx, newFn("theirs")); err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, Config{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Replicate(ctx, store.Replication{Log: l, Blobs: l, Host: "other", Logger: quiet}); err == nil {
		t.Fatal("a second host with its own functions joined the log")
	}
	if _, err := other.GetFunction(ctx, "theirs"); err != nil {
		t.Errorf("refused store lost its function: %v", err)
	}
	if _, err := other.GetFunction(ctx, "mine"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused store got the log's function: %v", err)
	}
}
