package microvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// hookPath is where a hook is posted, on the image's hook port.
const hookPath = "/aws/lambda-microvms/runtime/v1/"

// The hooks.
const (
	hookReady     = "ready"
	hookValidate  = "validate"
	hookRun       = "run"
	hookResume    = "resume"
	hookSuspend   = "suspend"
	hookTerminate = "terminate"
)

// Default hook timeouts. ready is long: on software emulation (tcg) a
// server that starts in a second on hardware may take a minute.
var defaultHookTimeout = map[string]time.Duration{
	hookReady:     300 * time.Second,
	hookValidate:  120 * time.Second,
	hookRun:       60 * time.Second,
	hookResume:    30 * time.Second,
	hookSuspend:   30 * time.Second,
	hookTerminate: 30 * time.Second,
}

// hookRetryEvery is the pause between tries of a hook that is not
// answering yet (nothing listens, or 503 for ready and validate).
const hookRetryEvery = 250 * time.Millisecond

// maxHookAnswer bounds what is read of a hook's answer (for its error).
const maxHookAnswer = 1 << 10

// hook returns whether h enables the named hook, and its timeout.
func hook(h *Hooks, name string) (bool, time.Duration) {
	if h == nil || h.Port == 0 {
		return false, 0
	}
	var on bool
	var secs int
	switch name {
	case hookReady:
		on, secs = h.Ready, h.ReadyTimeoutInSeconds
	case hookValidate:
		on, secs = h.Validate, h.ValidateTimeoutInSeconds
	case hookRun:
		on, secs = h.Run, h.RunTimeoutInSeconds
	case hookResume:
		on, secs = h.Resume, h.ResumeTimeoutInSeconds
	case hookSuspend:
		on, secs = h.Suspend, h.SuspendTimeoutInSeconds
	case hookTerminate:
		on, secs = h.Terminate, h.TerminateTimeoutInSeconds
	}
	if secs > 0 {
		return on, time.Duration(secs) * time.Second
	}
	return on, defaultHookTimeout[name]
}

// hookError is a hook that did not succeed: its answer, or why none came.
type hookError struct {
	name   string
	status int // 0 when no answer came
	body   string
	err    error
}

func (e *hookError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("the %s hook answered %d: %q", e.name, e.status, e.body)
	}
	return fmt.Sprintf("the %s hook did not answer: %v", e.name, e.err)
}

func (e *hookError) Unwrap() error { return e.err }

// callHook posts body to the named hook of env, if h enables it, within
// its timeout. Until the timeout it tries again while nothing listens on
// the hook port (the server is still starting) and, for ready and
// validate, while it answers 503.
func (m *Manager) callHook(ctx context.Context, env *sandbox.Env, h *Hooks, name string, body []byte) error {
	on, timeout := hook(h, name)
	if !on {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	retry503 := name == hookReady || name == hookValidate
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return m.cfg.dial(ctx, env, h.Port)
		},
		DisableKeepAlives: true,
	}}
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("http://127.0.0.1:%d%s%s", h.Port, hookPath, name)
	t0 := time.Now()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		var herr *hookError
		switch {
		case err != nil:
			herr = &hookError{name: name, err: err}
			if !errors.Is(err, sandbox.ErrNothingListening) {
				return herr
			}
		default:
			b, _ := io.ReadAll(io.LimitReader(resp.Body, maxHookAnswer))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				m.log.Debug("hook answered", "hook", name, "env", env.ID(), "took", time.Since(t0))
				return nil
			}
			herr = &hookError{name: name, status: resp.StatusCode, body: string(b)}
			if resp.StatusCode != http.StatusServiceUnavailable || !retry503 {
				return herr
			}
		}
		select {
		case <-ctx.Done():
			herr.err = fmt.Errorf("%w after %s (last: %v)", context.DeadlineExceeded, timeout, herr.Error())
			herr.status = 0
			return herr
		case <-time.After(hookRetryEvery):
		}
	}
}
