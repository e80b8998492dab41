package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

const hookPrefix = "/aws/lambda-microvms/runtime/v1/"

// maxHookBody is how much of a hook's body is kept: the runHookPayload is
// at most 16 KB (microvm.MaxRunHookPayload).
const maxHookBody = 16 << 10

// hookCall is one recorded call, as GET /hooks and hooks.jsonl show it.
type hookCall struct {
	Name      string `json:"name"`
	Body      string `json:"body"`
	BodyBytes int64  `json:"bodyBytes"`
	UnixMs    int64  `json:"unixMs"`
	Status    int    `json:"status"`
}

// hooks answers and records the lifecycle hooks. Calls are recorded in
// memory (which a snapshot keeps) and in a file, so that a test can read
// them either through the hook port or with exec/files.
type hooks struct {
	cfg config
	log *slog.Logger

	mu       sync.Mutex
	calls    []hookCall
	ready503 int // 503s still to answer on /ready
}

func newHooks(cfg config, log *slog.Logger) *hooks {
	return &hooks{cfg: cfg, log: log, ready503: cfg.ready503}
}

func (h *hooks) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+hookPrefix+"{name}", h.hook)
	mux.HandleFunc("GET /hooks", func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		calls := append([]hookCall{}, h.calls...)
		h.mu.Unlock()
		writeJSON(w, http.StatusOK, calls)
	})
	return mux
}

func (h *hooks) hook(w http.ResponseWriter, r *http.Request) {
	name := hookName(r.URL.Path)
	if name == "" {
		http.NotFound(w, r)
		return
	}
	call := hookCall{Name: name, UnixMs: time.Now().UnixMilli()}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHookBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rest, _ := io.Copy(io.Discard, r.Body)
	call.Body, call.BodyBytes = string(body), int64(len(body))+rest

	if h.cfg.hookDelay > 0 && (h.cfg.hookDelayOnly == "" || h.cfg.hookDelayOnly == name) {
		select {
		case <-time.After(h.cfg.hookDelay):
		case <-r.Context().Done():
		}
	}

	h.mu.Lock()
	call.Status = http.StatusOK
	switch {
	case name == "ready" && h.ready503 > 0:
		h.ready503--
		call.Status = http.StatusServiceUnavailable
	case name == "validate" && h.cfg.validateFail:
		call.Status = http.StatusInternalServerError
	}
	h.calls = append(h.calls, call)
	err = h.appendFile(call)
	h.mu.Unlock()
	if err != nil {
		// The in-memory record is the one tests rely on most; a failing
		// file is logged, not turned into a failed hook.
		h.log.Error("testmicrovm: recording hook", "hook", name, "err", err)
	}
	writeJSON(w, call.Status, map[string]bool{"ok": call.Status == http.StatusOK})
}

// appendFile appends call to the hooks file; h.mu is held, so lines never
// interleave.
func (h *hooks) appendFile(call hookCall) error {
	line, err := json.Marshal(call)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(h.cfg.hooksFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open hooks file: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write hooks file: %w", err)
	}
	return f.Close()
}
