package server_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The daemon's servers bound what a caller can send them: headers of
// 100 KB are refused on the API and on both function-URL listeners (Go's
// default would take up to 1 MB). Boots no VM.
func TestDaemonBoundsRequestHeaders(t *testing.T) {
	u := startWithURLs(t)
	addrs := map[string]string{"API": strings.TrimPrefix(u.url, "http://"), "URLs over HTTP": u.srv.URLAddrs()[0]}
	for name, addr := range addrs {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(c, "GET /fn-url/abc/ HTTP/1.1\r\nHost: localhost\r\nX-Big: "+strings.Repeat("a", 100<<10)+"\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("%v %v, want 431", resp, err)
			}
		})
	}
	t.Run("URLs over HTTPS", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "https://abc.lambda-url.localhost/", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 100<<10))
		resp, err := u.https.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		// HTTP/2 refuses the headers before they make a request: an error,
		// or a 431.
		if err == nil && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431 or a refused request", resp.StatusCode)
		}
	})
}
