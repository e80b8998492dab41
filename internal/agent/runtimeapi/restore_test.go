package runtimeapi

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// GET /restore/next answers once the environment is restored, and not
// before.
func TestRestoreNextWaitsForTheRestore(t *testing.T) {
	f, srv := newTestServer(t)
	f.restored = make(chan struct{})
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Get(srv.URL + prefix + "/restore/next")
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	select {
	case s := <-answered:
		t.Fatalf("answered %d before the restore", s)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.restored)
	select {
	case s := <-answered:
		if s != http.StatusOK {
			t.Errorf("status %d, want 200", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after the restore")
	}
}

func TestRestoreNextFails(t *testing.T) {
	f, srv := newTestServer(t)
	f.restoreErr = errors.New("host channel closed")
	resp, err := http.Get(srv.URL + prefix + "/restore/next")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", resp.StatusCode)
	}
}

// A runtime that gives up waiting ends the wait on the agent's side.
func TestRestoreNextEndsWhenTheRuntimeHangsUp(t *testing.T) {
	f, srv := newTestServer(t)
	f.restored = make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+prefix+"/restore/next", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("answered %d without a restore", resp.StatusCode)
	}
}

// Routes: the wrong method or an unknown path is refused by the router.
func TestRoutes(t *testing.T) {
	_, srv := newTestServer(t)
	tests := []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, "/invocation/next", http.StatusMethodNotAllowed},
		{http.MethodGet, "/invocation/req-1/response", http.StatusMethodNotAllowed},
		{http.MethodGet, "/init/error", http.StatusMethodNotAllowed},
		{http.MethodPost, "/restore/next", http.StatusMethodNotAllowed},
		{http.MethodGet, "/invocation/req-1/other", http.StatusNotFound},
		{http.MethodGet, "/../2018-06-01/runtime/unknown", http.StatusNotFound},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+prefix+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
	}
}
