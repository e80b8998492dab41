package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerServesTheEmbeddedPage(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		method, path string
		wantStatus   int
		wantType     string
		wantBody     string
	}{
		{"GET", "/console/", 200, "text/html", `<script type="module" src="app.js">`},
		{"GET", "/console/app.js", 200, "text/javascript", "signIn"},
		{"GET", "/console/sigv4.js", 200, "text/javascript", "AWS4-HMAC-SHA256"},
		{"GET", "/console/api.js", 200, "text/javascript", "sessionStorage"},
		{"GET", "/console/charts.js", 200, "text/javascript", "lineChart"},
		{"GET", "/console/style.css", 200, "text/css", "svg.chart"},
		{"HEAD", "/console/", 200, "text/html", ""},
		{"GET", "/console", 301, "", ""},
		{"GET", "/console/nothing.js", 404, "", ""},
		{"POST", "/console/", 405, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == 301 && resp.Header.Get("Location") != Path {
				t.Errorf("redirect to %q, want %q", resp.Header.Get("Location"), Path)
			}
			if tt.wantStatus != 200 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.wantType)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body lacks %q", tt.wantBody)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			for _, want := range []string{"script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
		})
	}
}

// The page loads nothing from elsewhere: no CDN, no absolute URL in a
// script or style reference.
func TestPageLoadsNothingFromElsewhere(t *testing.T) {
	entries, err := static.ReadDir("static")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"https://", "//cdn", "http://", "innerHTML", "eval("} {
			s := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", e.Name(), bad)
			}
		}
	}
}
