package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// Item 7: results a guest sends while nothing waits for them (stale ones,
// or repeats of one already taken) are dropped as they are read, not
// kept for the next invocation: a guest cannot pin host memory with them.
func TestStaleResultsAreNotRetained(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	img := Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")}
	cfg := Config{VMM: fakevmm.New(), Dir: filepath.Join(dir, "envs"), BootTimeout: time.Second}
	ctx := context.Background()
	env, err := Boot(ctx, cfg, Function{Name: "f", MemoryMB: 128, Timeout: 3 * time.Second}, img)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close(ctx)
	res, err := env.Invoke(ctx, Request{Payload: []byte(`{"hostile":"stale-after","count":4,"bytes":6000000}`)})
	if err != nil || res.Error != nil {
		t.Fatalf("invoke: %v %s", err, brief(res))
	}
	// A ping answered means every frame sent before it was read.
	c := env.current()
	if err := c.out.Write(guestproto.TypePing, guestproto.Ping{Seq: 1}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.pong:
	case <-time.After(3 * time.Second):
		t.Fatal("no pong")
	}
	if n := len(c.results); n != 0 {
		t.Fatalf("%d results of 6 MB kept after the invocation ended", n)
	}
	res, err = env.Invoke(ctx, Request{Payload: []byte(`{}`)})
	if err != nil || res.Error != nil || !strings.Contains(string(res.Payload), `"count":2`) {
		t.Fatalf("next invoke: %v %s", err, brief(res))
	}
}

func brief(res *Result) string {
	if res == nil {
		return "no result"
	}
	return fmt.Sprintf("error %+v, payload %.100q (%d bytes)", res.Error, res.Payload, len(res.Payload))
}
