package funcurl

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/hearthdev/hearth/internal/invoke"
)

// lambdaPrelude is the prelude aws-lambda-go writes for a streamed
// function-URL response: its JSON, then eight zero bytes.
func lambdaPrelude(t *testing.T, status int, headers map[string]string, cookies []string) string {
	t.Helper()
	resp := &events.LambdaFunctionURLStreamingResponse{StatusCode: status, Headers: headers, Cookies: cookies}
	if resp.ContentType() != integrationResponse {
		t.Fatalf("aws-lambda-go streams as %q, we expect %q", resp.ContentType(), integrationResponse)
	}
	b, err := io.ReadAll(resp) // no Body: the prelude alone
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStreamWriter(t *testing.T) {
	nul8 := string(preludeEnd)
	pre201 := lambdaPrelude(t, 201, map[string]string{"Content-Type": "text/plain", "X-Streamed": "yes"}, []string{"a=1; Path=/", "b=2"})
	long := strings.Repeat("x", 70<<10)
	tests := []struct {
		name        string
		contentType string
		chunks      []string
		// wantStarted is started() after the chunks, before finish: once
		// true, the handler can no longer answer with an error status.
		wantStarted bool
		wantStatus  int
		wantHeaders map[string]string
		wantCookies []string
		wantBody    string
	}{
		{
			name: "prelude parsed into status, headers and cookies", contentType: integrationResponse,
			chunks: []string{pre201, "hello ", "world"}, wantStarted: true, wantStatus: 201,
			wantHeaders: map[string]string{"Content-Type": "text/plain", "X-Streamed": "yes"},
			wantCookies: []string{"a=1; Path=/", "b=2"}, wantBody: "hello world",
		},
		{
			name: "prelude and body in one write", contentType: integrationResponse,
			chunks: []string{pre201 + "all at once"}, wantStarted: true, wantStatus: 201,
			wantHeaders: map[string]string{"X-Streamed": "yes"}, wantCookies: []string{"a=1; Path=/", "b=2"}, wantBody: "all at once",
		},
		{
			name: "prelude and its end split across writes", contentType: integrationResponse,
			chunks:      []string{`{"statusCode":`, `202}` + nul8[:3], nul8[3:] + "bo", "dy"},
			wantStarted: true, wantStatus: 202, wantBody: "body",
		},
		{
			name: "zero bytes in the body after the prelude are body", contentType: integrationResponse,
			chunks: []string{lambdaPrelude(t, 200, nil, nil), "a" + nul8 + "b"}, wantStarted: true, wantStatus: 200, wantBody: "a" + nul8 + "b",
		},
		{
			name: "prelude without a status: 200", contentType: integrationResponse,
			chunks: []string{`{"headers":{"X-A":"1"}}` + nul8 + "x"}, wantStarted: true, wantStatus: 200,
			wantHeaders: map[string]string{"X-A": "1"}, wantBody: "x",
		},
		{
			name: "prelude alone, no body", contentType: integrationResponse,
			chunks: []string{lambdaPrelude(t, 204, nil, nil)}, wantStarted: true, wantStatus: 204,
		},
		{
			name: "a prelude that never ends is sent as the body at the end", contentType: integrationResponse,
			chunks: []string{`{"statusCode":201`, `, "more"`}, wantStarted: false, wantStatus: 200, wantBody: `{"statusCode":201, "more"`,
		},
		{
			name: "no prelude in the first 64 KB: passed on as it is", contentType: integrationResponse,
			chunks: []string{long, "tail"}, wantStarted: true, wantStatus: 200, wantBody: long + "tail",
		},
		{
			name: "plain stream: its content type, 200 at once", contentType: "text/event-stream",
			chunks: []string{"data: 1\n\n", "data: 2\n\n"}, wantStarted: true, wantStatus: 200,
			wantHeaders: map[string]string{"Content-Type": "text/event-stream"}, wantBody: "data: 1\n\ndata: 2\n\n",
		},
		{
			name: "plain stream without a content type: octet-stream", contentType: "",
			chunks: []string{"\x00\x01"}, wantStarted: true, wantStatus: 200,
			wantHeaders: map[string]string{"Content-Type": "application/octet-stream"}, wantBody: "\x00\x01",
		},
		{
			name: "plain stream, no bytes at all", contentType: "text/plain",
			wantStarted: true, wantStatus: 200, wantHeaders: map[string]string{"Content-Type": "text/plain"},
		},
		{
			name: "JSON answer: mapped whole at the end, as a buffered one", contentType: "application/json",
			chunks:      []string{`{"statusCode":418,"headers":{"X-B":"2"},`, `"cookies":["c=3"],"body":"teapot"}`},
			wantStarted: false, wantStatus: 418, wantHeaders: map[string]string{"X-B": "2"}, wantCookies: []string{"c=3"}, wantBody: "teapot",
		},
		{
			name: "JSON answer without a statusCode", contentType: "application/json",
			chunks: []string{`{"ok":`, `true}`}, wantStarted: false, wantStatus: 200,
			wantHeaders: map[string]string{"Content-Type": "application/json"}, wantBody: `{"ok":true}`,
		},
		{
			name: "JSON answer of exactly 6 MB", contentType: "application/json",
			chunks: []string{`"`, strings.Repeat("a", MaxPayload-2), `"`}, wantStarted: false, wantStatus: 200,
			wantBody: `"` + strings.Repeat("a", MaxPayload-2) + `"`,
		},
		{
			name: "JSON answer over 6 MB: 502", contentType: "application/json",
			chunks: []string{`"`, strings.Repeat("a", MaxPayload), `"`}, wantStarted: false, wantStatus: 502, wantBody: badGateway,
		},
		{
			// Dropping only the chunk that overflows would leave "[1]":
			// valid JSON, and not what the function said.
			name: "JSON answer over 6 MB whose small chunks would fit: 502", contentType: "application/json",
			chunks: []string{`[1`, strings.Repeat(" ", MaxPayload), `]`}, wantStarted: false, wantStatus: 502, wantBody: badGateway,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			s := newStreamWriter(w, Timeouts{})
			s.Begin(tt.contentType)
			for _, c := range tt.chunks {
				if n, err := s.Write([]byte(c)); n != len(c) || err != nil {
					t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(c))
				}
			}
			if s.started() != tt.wantStarted {
				t.Errorf("started() = %v, want %v", s.started(), tt.wantStarted)
			}
			if !s.started() && (w.Body.Len() != 0 || w.Flushed) {
				t.Errorf("not started, yet %d bytes went out (flushed %v)", w.Body.Len(), w.Flushed)
			}
			s.finish()
			res := w.Result()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", res.StatusCode, tt.wantStatus)
			}
			for k, v := range tt.wantHeaders {
				if got := res.Header.Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
			if got := res.Header.Values("Set-Cookie"); !slices.Equal(got, tt.wantCookies) {
				t.Errorf("Set-Cookie %q, want %q", got, tt.wantCookies)
			}
			if got := w.Body.String(); got != tt.wantBody {
				if len(got) > 100 {
					got = got[:100] + "…"
				}
				t.Errorf("body %q, want %q", got, tt.wantBody)
			}
		})
	}
}

// When the invocation fails, the handler answers with an error status only
// if the stream has not started; after, it can only end the stream early.
func TestStreamWriterError(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		chunks      []string
		wantStatus  int // what the client sees once the handler is done
		wantBody    string
	}{
		{name: "error before any byte", contentType: integrationResponse, wantStatus: 502, wantBody: badGateway},
		{name: "error inside the prelude", contentType: integrationResponse, chunks: []string{`{"statusCode":20`}, wantStatus: 502, wantBody: badGateway},
		{name: "error inside a JSON answer", contentType: "application/json", chunks: []string{`{"statusCode":201,`}, wantStatus: 502, wantBody: badGateway},
		{
			name: "error after the status was sent", contentType: integrationResponse,
			chunks: []string{lambdaPrelude(t, 201, nil, nil), "partial"}, wantStatus: 201, wantBody: "partial",
		},
		{name: "error in a plain stream", contentType: "text/plain", chunks: []string{"partial"}, wantStatus: 200, wantBody: "partial"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			s := newStreamWriter(w, Timeouts{})
			s.Begin(tt.contentType)
			for _, c := range tt.chunks {
				_, _ = s.Write([]byte(c))
			}
			// What ServeHTTP does when the invocation returns an error.
			if s.started() {
				s.finish()
			} else {
				message(w, http.StatusBadGateway, "Internal Server Error")
			}
			if w.Code != tt.wantStatus || w.Body.String() != tt.wantBody {
				t.Errorf("client got %d %q, want %d %q", w.Code, w.Body.String(), tt.wantStatus, tt.wantBody)
			}
		})
	}
}

// Over a real connection, the status goes out with the prelude and each
// chunk reaches the client before the function writes the next.
func TestStreamWriterFlushesEachChunk(t *testing.T) {
	chunks := []string{"first,", "second,", "third"}
	next := make(chan struct{})
	prelude := lambdaPrelude(t, 207, map[string]string{"Content-Type": "text/plain", "X-Streamed": "yes"}, []string{"s=1"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := newStreamWriter(w, Timeouts{})
		s.Begin(integrationResponse)
		_, _ = s.Write([]byte(prelude))
		for _, c := range chunks {
			select {
			case <-next: // the client has everything so far
			case <-r.Context().Done():
				return
			}
			_, _ = s.Write([]byte(c))
		}
		s.finish()
	}))
	defer srv.Close()

	// Nothing is written before the client asks, so an unflushed status or
	// chunk would leave the client waiting until this timeout.
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("no status before the first chunk: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 207 || resp.Header.Get("X-Streamed") != "yes" || resp.Header.Get("Set-Cookie") != "s=1" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	for _, c := range chunks {
		next <- struct{}{}
		buf := make([]byte, len(c))
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatalf("chunk %q not flushed: %v", c, err)
		}
		if string(buf) != c {
			t.Fatalf("read %q, want %q", buf, c)
		}
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the last chunk: %q, %v", rest, err)
	}
}

// A RESPONSE_STREAM client that sends its request and never reads must not
// hold the function's stream: once a chunk's write deadline passes the
// client is abandoned, the rest of the stream is dropped, the invocation
// runs to its end and the handler returns.
func TestStreamToAClientThatNeverReads(t *testing.T) {
	const chunks, chunk = 256, 256 << 10 // 64 MB: far more than the sockets and HTTP/2 windows hold
	const deadline = 300 * time.Millisecond
	newHandler := func(wrote *atomic.Int64) http.Handler {
		inv := &stubInvoker{invoke: func(req invoke.Request) (*invoke.Result, error) {
			req.Stream.Begin("application/octet-stream")
			b := bytes.Repeat([]byte("z"), chunk)
			for range chunks {
				n, err := req.Stream.Write(b)
				if err != nil {
					return nil, err
				}
				wrote.Add(int64(n))
			}
			return &invoke.Result{RequestID: "r-1"}, nil
		}}
		return New(Config{URLs: oneURL{Function: "f", AuthType: "NONE", InvokeMode: "RESPONSE_STREAM"}, Invoker: inv, Log: quietLog(),
			Timeouts: Timeouts{StreamWrite: deadline}})
	}
	tests := []struct {
		name string
		// stall sends a request to the handler and never reads the
		// answer; done is closed when the handler returns.
		stall func(t *testing.T, h http.Handler) (done chan struct{})
	}{
		{"HTTP/1.1, a small receive buffer", func(t *testing.T, h http.Handler) chan struct{} {
			addr, done := serveUntilDone(t, h)
			stalledClient(t, addr, "GET /fn-url/abc/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
			return done
		}},
		{"HTTP/2 over TLS", func(t *testing.T, h http.Handler) chan struct{} {
			done := make(chan struct{})
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(done)
				h.ServeHTTP(w, r)
			}))
			srv.EnableHTTP2 = true
			srv.StartTLS()
			t.Cleanup(srv.Close)
			resp, err := srv.Client().Get(srv.URL + "/fn-url/abc/")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			if resp.ProtoMajor != 2 {
				t.Fatalf("served over %s, want HTTP/2", resp.Proto)
			}
			return done
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wrote atomic.Int64
			start := time.Now()
			done := tt.stall(t, newHandler(&wrote))
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("the handler is still held by a client that does not read (%d bytes streamed)", wrote.Load())
			}
			if took := time.Since(start); took > 10*deadline {
				t.Errorf("the handler took %s to give up on the client, want about %s", took, deadline)
			}
			if wrote.Load() != chunks*chunk {
				t.Errorf("the function streamed %d bytes, want all %d: the invocation must run to its end", wrote.Load(), chunks*chunk)
			}
		})
	}
}
