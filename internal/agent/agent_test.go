package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// hostEnd is the host's side of the channel to an agent run in-process.
type hostEnd struct {
	t      *testing.T
	w      *guestproto.Writer
	frames chan guestproto.Frame
}

// next returns the next frame that is not a log line.
func (h *hostEnd) next() guestproto.Frame {
	h.t.Helper()
	for {
		select {
		case f, ok := <-h.frames:
			if !ok {
				h.t.Fatal("channel closed")
			}
			if f.Type != guestproto.TypeLog {
				return f
			}
		case <-time.After(10 * time.Second):
			h.t.Fatal("no frame from the agent")
		}
	}
}

func (h *hostEnd) send(typ guestproto.Type, header any, body []byte) {
	h.t.Helper()
	if err := h.w.Write(typ, header, body); err != nil {
		h.t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The agent as a host process (not PID 1, no VM): greeting, ping, init,
// one invocation through the real Runtime API, a resume, and its end when
// the host closes the channel. The "runtime" is the test itself, over HTTP;
// the bootstrap only has to be running.
func TestAgentRun(t *testing.T) {
	guestR, hostW := io.Pipe()
	hostR, guestW := io.Pipe()
	addr := freeAddr(t)
	root := bootstrapDir(t, "echo \"api=$AWS_LAMBDA_RUNTIME_API\"\nexec sleep 60\n", 0o755)
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), Config{Channel: struct {
			io.Reader
			io.Writer
		}{guestR, guestW}, TaskRoot: root, RuntimeAPIAddr: addr, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	t.Cleanup(func() { hostR.Close() })
	h := &hostEnd{t: t, w: guestproto.NewWriter(hostW), frames: make(chan guestproto.Frame, 64)}
	var logs strings.Builder
	logged := make(chan struct{})
	go func() {
		defer close(h.frames)
		r := guestproto.NewReader(hostR)
		for {
			f, err := r.Read()
			if err != nil {
				return
			}
			if f.Type == guestproto.TypeLog && logs.Len() == 0 {
				logs.Write(f.Body)
				close(logged)
			}
			h.frames <- f
		}
	}()

	if f := h.next(); f.Type != guestproto.TypeHello || decode[guestproto.Hello](t, f).AgentVersion != Version {
		t.Fatalf("first frame %s %s, want hello", f.Type, f.Header)
	}
	h.send(guestproto.TypePing, guestproto.Ping{Seq: 7}, nil)
	if f := h.next(); f.Type != guestproto.TypePong || decode[guestproto.Ping](t, f).Seq != 7 {
		t.Errorf("answer to ping: %s %s", f.Type, f.Header)
	}

	h.send(guestproto.TypeInit, guestproto.Init{FunctionName: "f", FunctionARN: "arn:aws:lambda:local:000000000000:function:f",
		MemoryMB: 128, EnvID: "env-1"}, nil)
	select {
	case <-logged:
		if logs.String() != "api="+addr+"\n" {
			t.Errorf("the runtime's output %q", logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no output from the bootstrap")
	}
	type answer struct {
		resp *http.Response
		body string
		err  error
	}
	nextDone := make(chan answer, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/2018-06-01/runtime/invocation/next")
		if err != nil {
			nextDone <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		nextDone <- answer{resp: resp, body: string(b)}
	}()
	if f := h.next(); f.Type != guestproto.TypeReady {
		t.Fatalf("after the first /next: %s, want ready", f.Type)
	}
	h.send(guestproto.TypeInvoke, guestproto.Invoke{RequestID: "req-1", DeadlineMs: 1700000000000}, []byte(`{"n":1}`))
	a := <-nextDone
	if a.err != nil || a.body != `{"n":1}` || a.resp.Header.Get("Lambda-Runtime-Aws-Request-Id") != "req-1" ||
		a.resp.Header.Get("Lambda-Runtime-Invoked-Function-Arn") != "arn:aws:lambda:local:000000000000:function:f" {
		t.Fatalf("/next: %v %q", a.err, a.body)
	}
	resp, err := http.Post("http://"+addr+"/2018-06-01/runtime/invocation/req-1/response", "application/json", strings.NewReader(`{"ok":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	f := h.next()
	if res := decode[guestproto.Result](t, f); f.Type != guestproto.TypeResponse || res.RequestID != "req-1" || res.MaxRSSKiB <= 0 || string(f.Body) != `{"ok":true}` {
		t.Errorf("result: %s %s %q", f.Type, f.Header, f.Body)
	}

	h.send(guestproto.TypeResume, guestproto.Resume{EnvID: "env-2", Clone: true}, nil)
	if f := h.next(); f.Type != guestproto.TypeResumed {
		t.Errorf("after resume: %s", f.Type)
	} else if r := decode[guestproto.Resumed](t, f); r.EnvID != "env-2" || r.Restores != 1 {
		t.Errorf("resumed %+v", r)
	}

	hostW.Close() // the host hangs up: the agent stops its runtime and ends
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end after the channel closed")
	}
	if resp, err := http.Get("http://" + addr + "/2018-06-01/runtime/invocation/next"); err == nil {
		resp.Body.Close()
		t.Errorf("the Runtime API still answers after Run ended: %d", resp.StatusCode)
	}
}
