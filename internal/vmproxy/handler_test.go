package vmproxy

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/microvm"
)

func TestForward(t *testing.T) {
	b := newBackends(t)
	b.addGuest(t, "mvm-a", microvm.DefaultPort)
	b.addGuest(t, "mvm-a", 9000)
	e := startEndpoint(t, b, Config{})
	exp := time.Now().Add(time.Hour)
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}, {Start: 9000, End: 9000}}, exp)

	tests := []struct {
		name      string
		method    string
		host      string
		path      string
		body      string
		hdr       map[string]string
		wantLabel string
		wantPath  string
		wantQuery string
	}{
		{name: "GET", method: "GET", host: e.host("mvm-a"), path: "/echo?x=1",
			wantLabel: "mvm-a/8080", wantPath: "/echo", wantQuery: "x=1"},
		{name: "POST with body", method: "POST", host: e.host("mvm-a"), path: "/upload", body: strings.Repeat("payload ", 10000),
			wantLabel: "mvm-a/8080", wantPath: "/upload"},
		{name: "host in capitals", method: "GET", host: strings.ToUpper(e.host("mvm-a")), path: "/",
			wantLabel: "mvm-a/8080", wantPath: "/"},
		{name: "other port", method: "GET", host: e.host("mvm-a"), path: "/p", hdr: map[string]string{"X-aws-proxy-port": "9000"},
			wantLabel: "mvm-a/9000", wantPath: "/p"},
		{name: "path form", method: "GET", host: e.addr, path: "/microvm/mvm-a/deep/er%2Fpath?q=2",
			wantLabel: "mvm-a/8080", wantPath: "/deep/er%2Fpath", wantQuery: "q=2"},
		{name: "path form, bare", method: "GET", host: "example.test", path: "/microvm/mvm-a",
			wantLabel: "mvm-a/8080", wantPath: "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			hdr := map[string]string{"X-aws-proxy-auth": tok, "X-Forwarded-Prefix": "/client"}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			req := e.request(t, ctx, tt.method, tt.host, tt.path, strings.NewReader(tt.body), hdr)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", res.StatusCode, errorMessage(t, res))
			}
			var got echo
			if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			if got.Label != tt.wantLabel || got.Method != tt.method || got.Path != tt.wantPath || got.Query != tt.wantQuery || got.Body != tt.body {
				t.Fatalf("guest saw %s %s %s ?%s (body %d bytes), want %s %s %s ?%s (%d bytes)",
					got.Label, got.Method, got.Path, got.Query, len(got.Body), tt.wantLabel, tt.method, tt.wantPath, tt.wantQuery, len(tt.body))
			}
			if got.Host != tt.host {
				t.Errorf("guest saw Host %q, want the client's %q", got.Host, tt.host)
			}
			wantPrefix := ""
			if strings.HasPrefix(tt.path, PathPrefix) {
				wantPrefix = "/microvm/mvm-a"
			}
			if p := got.Headers.Get("X-Forwarded-Prefix"); p != wantPrefix {
				t.Errorf("guest saw X-Forwarded-Prefix %q, want %q", p, wantPrefix)
			}
			if tr := res.Trailer.Get("X-Guest-Trailer"); tr != "done" {
				t.Errorf("trailer %q, want done", tr)
			}
		})
	}
	b.waitClosed(t)
}

// The guest never sees the endpoint's headers, and sees X-Forwarded-* set
// by the endpoint, not by the client.
func TestHeaders(t *testing.T) {
	b := newBackends(t)
	b.addGuest(t, "mvm-a", 8080)
	e := startEndpoint(t, b, Config{})
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))
	req := e.request(t, testContext(t), "GET", e.host("mvm-a"), "/", nil, map[string]string{
		"X-aws-proxy-auth":     tok,
		"X-aws-proxy-port":     "8080",
		"X-Aws-Proxy-Force-H2": "false",
		"x-aws-proxy-other":    "reserved",
		"X-Forwarded-For":      "6.6.6.6",
		"X-Forwarded-Host":     "evil.test",
		"Authorization":        "Bearer app-token",
		"X-App":                "kept",
	})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got echo
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	for name := range got.Headers {
		if hasPrefixFold(name, "x-aws-proxy-") {
			t.Errorf("guest saw %s: %v", name, got.Headers[name])
		}
	}
	want := map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Host":  req.Host,
		"X-Forwarded-Proto": "http",
		"Authorization":     "Bearer app-token",
		"X-App":             "kept",
	}
	for k, v := range want {
		if got := strings.Join(got.Headers.Values(k), ","); got != v {
			t.Errorf("guest saw %s %q, want %q", k, got, v)
		}
	}
}

func TestRefused(t *testing.T) {
	b := newBackends(t)
	b.addGuest(t, "mvm-a", 8080)
	b.setState("mvm-b", nil) // known, nothing listening
	b.setState("mvm-susp", fmt.Errorf("MicroVM mvm-susp is SUSPENDED and its idle policy does not resume it: %w", microvm.ErrConflict))
	e := startEndpoint(t, b, Config{})
	now := time.Now()
	mint := func(id string, start, end int, exp time.Time) string {
		return mustMint(t, b.tokens, id, []microvm.PortRange{{Start: start, End: end}}, exp)
	}
	good := mint("mvm-a", 8080, 8080, now.Add(time.Hour))

	tests := []struct {
		name     string
		id       string
		path     string
		hdr      map[string]string
		want     int
		wantMsg  string
		wantType string
	}{
		{"no token", "mvm-a", "/", nil, 403, "missing the X-Aws-Proxy-Auth header", "AccessDeniedException"},
		{"garbage token", "mvm-a", "/", map[string]string{"X-aws-proxy-auth": "not-a-token"}, 403, "malformed token", ""},
		{"forged token", "mvm-a", "/", map[string]string{"X-aws-proxy-auth": mustMint(t, testTokens(t, 9), "mvm-a", []microvm.PortRange{{Start: 1, End: 65535}}, now.Add(time.Hour))}, 403, "not minted by this Hearth", ""},
		{"expired token", "mvm-a", "/", map[string]string{"X-aws-proxy-auth": mint("mvm-a", 8080, 8080, now.Add(-time.Second))}, 403, "token expired", ""},
		{"token for another MicroVM", "mvm-a", "/", map[string]string{"X-aws-proxy-auth": mint("mvm-b", 8080, 8080, now.Add(time.Hour))}, 403, "another MicroVM", ""},
		{"port outside the token", "mvm-a", "/", map[string]string{"X-aws-proxy-auth": good, "X-aws-proxy-port": "8081"}, 403, "port not allowed", ""},
		{"port 0", "mvm-a", "/", map[string]string{"X-aws-proxy-auth": good, "X-aws-proxy-port": "0"}, 400, "not a port", "ValidationException"},
		{"port 65536", "mvm-a", "/", map[string]string{"X-aws-proxy-auth": good, "X-aws-proxy-port": "65536"}, 400, "not a port", ""},
		{"port not a number", "mvm-a", "/", map[string]string{"X-aws-proxy-auth": good, "X-aws-proxy-port": "http"}, 400, "not a port", ""},
		{"unknown MicroVM", "mvm-ghost", "/", map[string]string{"X-aws-proxy-auth": mint("mvm-ghost", 8080, 8080, now.Add(time.Hour))}, 404, "mvm-ghost", "ResourceNotFoundException"},
		{"invalid id", "mvm.a", "/", map[string]string{"X-aws-proxy-auth": good}, 404, "not a MicroVM id", ""},
		{"nothing listening", "mvm-b", "/", map[string]string{"X-aws-proxy-auth": mint("mvm-b", 8080, 8080, now.Add(time.Hour))}, 502, "nothing listens on port 8080 of MicroVM mvm-b", ""},
		{"nothing listening on the other port", "mvm-a", "/", map[string]string{"X-aws-proxy-auth": mint("mvm-a", 1, 65535, now.Add(time.Hour)), "X-aws-proxy-port": "9999"}, 502, "nothing listens on port 9999", ""},
		{"suspended, no auto-resume", "mvm-susp", "/", map[string]string{"X-aws-proxy-auth": mint("mvm-susp", 8080, 8080, now.Add(time.Hour))}, 409, "does not resume it", "ConflictException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dials := b.dials.Load()
			req := e.request(t, testContext(t), "GET", e.host(tt.id), tt.path, nil, tt.hdr)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			msg := errorMessage(t, res)
			if res.StatusCode != tt.want || !strings.Contains(msg, tt.wantMsg) {
				t.Fatalf("%d %q, want %d with %q", res.StatusCode, msg, tt.want, tt.wantMsg)
			}
			if tt.wantType != "" && res.Header.Get("X-Amzn-ErrorType") != tt.wantType {
				t.Errorf("X-Amzn-ErrorType %q, want %q", res.Header.Get("X-Amzn-ErrorType"), tt.wantType)
			}
			// A refused token never reaches (or wakes) the MicroVM.
			if (tt.want == 403 || tt.want == 400) && b.dials.Load() != dials {
				t.Errorf("a refused request dialed the guest")
			}
		})
	}
}

// Requests that are not a MicroVM's go to the next handler (function URLs).
func TestRoute(t *testing.T) {
	b := newBackends(t)
	e := startEndpoint(t, b, Config{})
	tests := []struct {
		name, host, path string
		microvm          bool
	}{
		{"microvm host", "m1.lambda-microvm.localhost", "/", true},
		{"microvm host, trailing dot", "m1.lambda-microvm.localhost.", "/", true},
		{"microvm host, path prefix too", "m1.lambda-microvm.localhost:9080", "/microvm/m2/", true},
		{"path form", "127.0.0.1:9080", "/microvm/m1/x", true},
		{"function url", "abc.lambda-url.localhost", "/", false},
		{"function url with the microvm path", "abc.lambda-url.localhost", "/microvm/m1/", false},
		{"function url path form", "127.0.0.1", "/fn-url/abc/", false},
		{"other domain", "m1.lambda-microvm.example.com", "/", false},
		{"prefix without slash", "127.0.0.1", "/microvmx/m1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "http://x"+tt.path, nil)
			r.Host = tt.host
			if got := e.h.Match(r); got != tt.microvm {
				t.Fatalf("Match = %v, want %v", got, tt.microvm)
			}
		})
	}
	// Through the listener: the function URL stand-in answers 418.
	res, err := http.DefaultClient.Do(e.request(t, testContext(t), "GET", "abc.lambda-url.localhost", "/microvm/m1/", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTeapot {
		t.Fatalf("function URL request answered %d, want the next handler's 418", res.StatusCode)
	}
}

// SSE arrives event by event: the first event is read before the guest
// writes the second.
func TestSSE(t *testing.T) {
	b := newBackends(t)
	g := b.addGuest(t, "mvm-a", 8080)
	e := startEndpoint(t, b, Config{})
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))
	res, err := http.DefaultClient.Do(e.request(t, testContext(t), "GET", e.host("mvm-a"), "/sse", nil, map[string]string{"X-aws-proxy-auth": tok}))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := bufio.NewReader(res.Body)
	readEvent := func() string {
		t.Helper()
		var ev strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the stream: %v (so far %q)", err, ev.String())
			}
			if line == "\n" {
				return ev.String()
			}
			ev.WriteString(line)
		}
	}
	if ev := readEvent(); ev != "data: 1\n" {
		t.Fatalf("first event %q", ev)
	}
	close(g.sseNext) // only now does the guest write the second
	if ev := readEvent(); ev != "data: 2\n" {
		t.Fatalf("second event %q", ev)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last event: %v, want EOF", err)
	}
}

// A client that goes away mid-stream closes its guest connection: nothing
// is left behind.
func TestClientGoneClosesGuest(t *testing.T) {
	b := newBackends(t)
	g := b.addGuest(t, "mvm-a", 8080)
	e := startEndpoint(t, b, Config{})
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))
	ctx, cancel := contextWithCancel(t)
	res, err := http.DefaultClient.Do(e.request(t, ctx, "GET", e.host("mvm-a"), "/sse", nil, map[string]string{"X-aws-proxy-auth": tok}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	res.Body.Close()
	select {
	case <-g.sseGone:
	case <-time.After(10 * time.Second):
		t.Fatal("the guest's handler still runs after the client left")
	}
	b.waitClosed(t)
}
