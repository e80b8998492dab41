package api

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/configlog"
	"github.com/hearthdev/hearth/internal/store"
)

// twoHosts are two hosts' APIs whose stores follow one configuration log
// (a real JetStream, standalone): what one writes the other applies, and
// the zips one took are only in the hosts' object store for the other.
func twoHosts(t *testing.T) (*API, *API) {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	br, err := broker.New(ctx, broker.Config{Dir: t.TempDir(), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Shutdown(context.Background()) })
	var apis []*API
	for _, host := range []string{"a", "b"} {
		l, err := configlog.Open(ctx, configlog.Config{JetStream: br.JetStream()})
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Replicate(ctx, store.Replication{Log: l, Blobs: l, Host: host, Logger: quiet}); err != nil {
			t.Fatal(err)
		}
		apis = append(apis, New(Config{Store: st, Invoker: noInvoker{}, Keys: testKeys{"AKIDTEST": "secret"}, Region: "local",
			MaxConcurrency: 8, MaxZipBytes: 50 << 20, MaxUnzippedBytes: 262144000, ValidateCode: func([]byte) error { return nil }}))
	}
	return apis[0], apis[1]
}

// A host reads the zips another host took (the function's code, the
// layers' content) from the hosts' store: an update of a function's
// layers through host b, of a function and layers made through host a,
// checks them as a would.
func TestZipsTakenByAnotherHost(t *testing.T) {
	a, b := twoHosts(t)
	code := zipOf(t, "bootstrap", "#!/bin/sh\n")
	link := publish(t, a, "link", map[string]any{"Content": map[string]any{"ZipFile": symlinkZip(t, "x", "/")}}).LayerVersionArn
	under := publish(t, a, "under", map[string]any{"Content": map[string]any{"ZipFile": zipOf(t, "x/init", "evil")}}).LayerVersionArn
	other := publish(t, a, "other", nil).LayerVersionArn
	createFn(t, a, "fn", map[string]any{"Code": map[string]any{"ZipFile": code}})
	// b has applied a's writes once it sees the function.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _, _ := call(t, b, "GET", "/2015-03-31/functions/fn", nil); c == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never saw the function a made")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, h, body := call(t, b, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Layers": []string{link, other}})
	if c != 200 {
		typ, _, msg := lambdaError(t, h, body)
		t.Fatalf("update through b: %d %s %s", c, typ, msg)
	}
	c, h, body = call(t, b, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Layers": []string{link, under}})
	wantError(t, c, h, body, 400, "InvalidParameterValueException", "cannot be unpacked together")
	if got := getLayers(t, a, "fn"); len(got) != 2 || got[0] != link || got[1] != other {
		t.Errorf("a sees the layers %v", got)
	}
}
