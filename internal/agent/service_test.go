package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// A service (a MicroVM's server) is ready once started, without calling
// the Runtime API; a runtime is not.
func TestServiceReadyWithoutRuntimeAPI(t *testing.T) {
	for _, tc := range []struct {
		name    string
		service bool
		want    guestproto.Type
	}{
		{"service", true, guestproto.TypeReady},
		{"runtime", false, guestproto.TypePong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := runAgent(t, "exec sleep 60\n")
			if f := h.next(); f.Type != guestproto.TypeHello {
				t.Fatalf("first frame %s", f.Type)
			}
			h.send(guestproto.TypeInit, guestproto.Init{FunctionName: "vm", MemoryMB: 128, EnvID: "env-1", Service: tc.service}, nil)
			// A ping after the init: a runtime that never calls /next
			// answers the ping first; a service is ready before.
			h.send(guestproto.TypePing, guestproto.Ping{Seq: 1}, nil)
			if f := h.next(); f.Type != tc.want {
				t.Fatalf("first frame after init: %s, want %s", f.Type, tc.want)
			}
		})
	}
}

// A service whose command ends is ready, then reported ended with its
// status, however soon it ends.
func TestServiceThatEnds(t *testing.T) {
	h := runAgent(t, "exit 3\n")
	if f := h.next(); f.Type != guestproto.TypeHello {
		t.Fatalf("first frame %s", f.Type)
	}
	h.send(guestproto.TypeInit, guestproto.Init{FunctionName: "vm", MemoryMB: 128, EnvID: "env-1", Service: true}, nil)
	if f := h.next(); f.Type != guestproto.TypeReady {
		t.Fatalf("after init: %s, want ready", f.Type)
	}
	f := h.next()
	var x guestproto.Exit
	if err := f.Decode(&x); err != nil || f.Type != guestproto.TypeExit || x.Code != 3 {
		t.Fatalf("then %s %+v %v, want exit 3", f.Type, x, err)
	}
}

// runAgent runs an agent in-process (not PID 1, no VM) on a task root
// whose bootstrap is script, and returns the host's end of its channel;
// the agent stops with the test.
func runAgent(t *testing.T, script string) *hostEnd {
	t.Helper()
	guestR, hostW := io.Pipe()
	hostR, guestW := io.Pipe()
	root := bootstrapDir(t, script, 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Channel: struct {
			io.Reader
			io.Writer
		}{guestR, guestW}, TaskRoot: root, RuntimeAPIAddr: freeAddr(t), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	t.Cleanup(func() { cancel(); hostR.Close(); hostW.Close(); <-done })
	h := &hostEnd{t: t, w: guestproto.NewWriter(hostW), frames: make(chan guestproto.Frame, 64)}
	go func() {
		defer close(h.frames)
		r := guestproto.NewReader(hostR)
		for {
			f, err := r.Read()
			if err != nil {
				return
			}
			h.frames <- f
		}
	}()
	return h
}
