package runtimes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/agent/runtimeapi"
	"github.com/hearthdev/hearth/internal/runtimes"
)

// A posted outcome, as the Runtime API received it.
type outcome struct {
	kind      string // "response", "error" or "init"
	requestID string
	errorType string // what the API made of the post
	header    string // the Lambda-Runtime-Function-Error-Type header as sent
	body      []byte
	at        time.Time
}

// fakeInvocations is the agent's side of the Runtime API: it hands out the
// events the test queues and records what the runtime posts. The HTTP side
// is Hearth's own runtimeapi.Server, so the RICs are tested against the
// server they meet in the guest.
type fakeInvocations struct {
	events   chan runtimeapi.Event
	outcomes chan outcome
	handed   chan time.Time // when each event went out

	mu      sync.Mutex
	headers map[string]string // path → error type header of its last post
}

func (f *fakeInvocations) Next(ctx context.Context) (runtimeapi.Event, error) {
	select {
	case ev := <-f.events:
		f.handed <- time.Now()
		return ev, nil
	case <-ctx.Done():
		return runtimeapi.Event{}, ctx.Err()
	}
}

func (f *fakeInvocations) header(kind, id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind == "init" {
		return f.headers["/2018-06-01/runtime/init/error"]
	}
	return f.headers["/2018-06-01/runtime/invocation/"+id+"/error"]
}

func (f *fakeInvocations) record(o outcome) error {
	o.header = f.header(o.kind, o.requestID)
	o.at = time.Now()
	f.outcomes <- o
	return nil
}

func (f *fakeInvocations) Respond(id string, body []byte) error {
	return f.record(outcome{kind: "response", requestID: id, body: body})
}

func (f *fakeInvocations) Fail(id, errorType string, body []byte) error {
	return f.record(outcome{kind: "error", requestID: id, errorType: errorType, body: body})
}

func (f *fakeInvocations) InitFail(errorType string, body []byte) error {
	return f.record(outcome{kind: "init", errorType: errorType, body: body})
}

func (f *fakeInvocations) RestoreNext(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}
func (f *fakeInvocations) RestoreFail(string, []byte) error   { return nil }
func (f *fakeInvocations) Streaming(string) bool              { return false }
func (f *fakeInvocations) Chunk(string, string, []byte) error { return errors.New("not streaming") }

func (f *fakeInvocations) recordHeader(path, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.headers[path] = value
}

func newFake() *fakeInvocations {
	return &fakeInvocations{
		events:   make(chan runtimeapi.Event, 16),
		outcomes: make(chan outcome, 16),
		handed:   make(chan time.Time, 16),
		headers:  map[string]string{},
	}
}

// serveAPI serves the Runtime API over inv on a loopback port. The RIC
// reaches it through a proxy that notes the error-type header of each post
// (the API itself hands the invocations only the type it settled on).
func serveAPI(t *testing.T, inv *fakeInvocations) string {
	t.Helper()
	api := runtimeapi.New(inv, slog.New(slog.NewTextHandler(io.Discard, nil)))
	apiLn, err := api.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go api.Serve(apiLn)
	t.Cleanup(func() { api.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", apiLn.Addr().String())
			if err != nil {
				c.Close()
				return
			}
			go func() { io.Copy(c, b); c.Close() }()
			go func() { sniffErrorTypes(c, b, inv); b.Close() }()
		}
	}()
	return ln.Addr().String()
}

// sniffErrorTypes copies the RIC's requests from c to b, noting the
// error-type header of each POST by its path.
func sniffErrorTypes(c io.Reader, b io.Writer, inv *fakeInvocations) {
	buf := make([]byte, 32<<10)
	var line []byte
	path := ""
	for {
		n, err := c.Read(buf)
		if n > 0 {
			// Noted before it is passed on: the test reads the header once
			// the API has taken the post.
			for _, ch := range buf[:n] {
				if ch != '\n' {
					if len(line) < 4096 {
						line = append(line, ch)
					}
					continue
				}
				l := strings.TrimRight(string(line), "\r")
				line = line[:0]
				if f := strings.Fields(l); len(f) == 3 && f[0] == http.MethodPost && strings.HasPrefix(f[2], "HTTP/") {
					path = f[1]
				} else if name, value, ok := strings.Cut(l, ":"); ok && strings.EqualFold(name, runtimeapi.HeaderErrorType) {
					inv.recordHeader(path, strings.TrimSpace(value))
				}
			}
			if _, werr := b.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// installRIC writes rt's RIC files into a fresh folder, as they go into a
// root's /var/runtime, and returns the bootstrap's path.
func installRIC(t *testing.T, name string) string {
	t.Helper()
	rt, err := runtimes.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	files, err := rt.Files()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "bootstrap")
}

// writeTree writes files (slash paths → contents) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// syncBuffer is the runtime's output, read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runtimeProc is a RIC running as a subprocess against a fake API.
type runtimeProc struct {
	inv    *fakeInvocations
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{} // closed when the process ended
	err    error         // its Wait's error, once exited is closed
}

const (
	testFunctionName = "fn-under-test"
	testMemory       = "256"
	testLogGroup     = "/aws/lambda/fn-under-test"
	testLogStream    = "2024/01/01/[$LATEST]0123456789abcdef"
)

// startRuntime runs the runtime's bootstrap with taskRoot as its code and
// optDir as its layers.
func startRuntime(t *testing.T, runtime, handler, taskRoot, optDir string, env map[string]string) *runtimeProc {
	t.Helper()
	inv := newFake()
	addr := serveAPI(t, inv)
	cmd := exec.Command(installRIC(t, runtime))
	cmd.Dir = taskRoot
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"LANG=C.UTF-8",
		"TZ=:UTC",
		"AWS_LAMBDA_RUNTIME_API=" + addr,
		"LAMBDA_TASK_ROOT=" + taskRoot,
		"_HANDLER=" + handler,
		"AWS_LAMBDA_FUNCTION_NAME=" + testFunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + testMemory,
		"AWS_LAMBDA_LOG_GROUP_NAME=" + testLogGroup,
		"AWS_LAMBDA_LOG_STREAM_NAME=" + testLogStream,
		"AWS_REGION=us-east-1",
		"HEARTH_OPT_DIR=" + optDir,
	}
	// pyenv's shims find their interpreter through these.
	for _, k := range []string{"PYENV_ROOT", "PYENV_VERSION"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &runtimeProc{inv: inv, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("runtime output:\n%s", out.String())
		}
	})
	return p
}

// invoke hands the runtime one event and waits for what it posts.
func (p *runtimeProc) invoke(t *testing.T, ev runtimeapi.Event) (outcome, time.Duration) {
	t.Helper()
	if ev.DeadlineMs == 0 {
		ev.DeadlineMs = time.Now().Add(30 * time.Second).UnixMilli()
	}
	if ev.FunctionARN == "" {
		ev.FunctionARN = "arn:aws:lambda:us-east-1:123456789012:function:" + testFunctionName
	}
	p.inv.events <- ev
	var handed time.Time
	select {
	case handed = <-p.inv.handed:
	case <-p.exited:
		t.Fatalf("the runtime exited before taking event %s: %v", ev.RequestID, p.err)
	case <-time.After(15 * time.Second):
		t.Fatalf("the runtime took no event in 15 s")
	}
	o := p.await(t)
	return o, o.at.Sub(handed)
}

// await waits for the runtime's next post.
func (p *runtimeProc) await(t *testing.T) outcome {
	t.Helper()
	select {
	case o := <-p.inv.outcomes:
		return o
	case <-time.After(15 * time.Second):
		t.Fatalf("the runtime posted nothing in 15 s")
	}
	return outcome{}
}

// decode unmarshals a posted body.
func decode(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return m
}

// waitOutput waits until the runtime's output holds s.
func (p *runtimeProc) waitOutput(t *testing.T, s string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if out := p.out.String(); strings.Contains(out, s) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the runtime's output lacks %q:\n%s", s, p.out.String())
	return ""
}
