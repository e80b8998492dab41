package funcurl

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hearthdev/hearth/internal/store"
)

const (
	hAllowOrigin      = "Access-Control-Allow-Origin"
	hAllowMethods     = "Access-Control-Allow-Methods"
	hAllowHeaders     = "Access-Control-Allow-Headers"
	hAllowCredentials = "Access-Control-Allow-Credentials"
	hMaxAge           = "Access-Control-Max-Age"
	hExposeHeaders    = "Access-Control-Expose-Headers"
)

// corsHeaderNames are all the headers CORS may add; a case's want lists
// those it expects, and every other must be absent.
var corsHeaderNames = []string{hAllowOrigin, hAllowMethods, hAllowHeaders, hAllowCredentials, hMaxAge, hExposeHeaders}

func checkCORSHeaders(t *testing.T, got http.Header, want map[string]string) {
	t.Helper()
	for _, k := range corsHeaderNames {
		if g := got.Get(k); g != want[k] {
			t.Errorf("%s: %q, want %q", k, g, want[k])
		}
	}
	if v := got.Values("Vary"); len(v) != 1 || v[0] != "Origin" {
		t.Errorf("Vary %q, want Origin: the answer depends on it", v)
	}
}

func TestPreflight(t *testing.T) {
	full := &store.Cors{
		AllowOrigins: []string{"https://app.example.com", "http://localhost:3000"}, AllowMethods: []string{"GET", "POST"},
		AllowHeaders: []string{"content-type", "x-api-key"}, ExposeHeaders: []string{"x-request-id", "x-total"},
		AllowCredentials: true, MaxAge: 300,
	}
	tests := []struct {
		name       string
		cors       *store.Cors
		origin     string
		method     string
		reqHeaders string
		want       map[string]string
	}{
		{
			name: "allowed origin and method", cors: full, origin: "https://app.example.com", method: "POST", reqHeaders: "content-type",
			want: map[string]string{hAllowOrigin: "https://app.example.com", hAllowMethods: "GET,POST", hAllowHeaders: "content-type,x-api-key",
				hAllowCredentials: "true", hMaxAge: "300", hExposeHeaders: "x-request-id,x-total"},
		},
		{
			name: "origins compare without case, the request's is echoed", cors: full, origin: "HTTP://LOCALHOST:3000", method: "GET",
			want: map[string]string{hAllowOrigin: "HTTP://LOCALHOST:3000", hAllowMethods: "GET,POST", hAllowHeaders: "content-type,x-api-key",
				hAllowCredentials: "true", hMaxAge: "300", hExposeHeaders: "x-request-id,x-total"},
		},
		{
			name: "requested method in lower case", cors: full, origin: "https://app.example.com", method: "post",
			want: map[string]string{hAllowOrigin: "https://app.example.com", hAllowMethods: "GET,POST", hAllowHeaders: "content-type,x-api-key",
				hAllowCredentials: "true", hMaxAge: "300", hExposeHeaders: "x-request-id,x-total"},
		},
		{name: "origin not allowed", cors: full, origin: "https://evil.example.com", method: "POST"},
		{name: "origin differing only by port", cors: full, origin: "http://localhost:3001", method: "GET"},
		{name: "method not allowed", cors: full, origin: "https://app.example.com", method: "DELETE"},
		{
			name: "wildcard origin, no credentials: *", origin: "https://any.test", method: "PUT", reqHeaders: "x-a, x-b",
			cors: &store.Cors{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}},
			want: map[string]string{hAllowOrigin: "*", hAllowMethods: "*", hAllowHeaders: "x-a, x-b"},
		},
		{
			// The API refuses this configuration; one stored before it did
			// must not echo any origin with credentials.
			name: "wildcard origin with credentials: *, never the origin, and no credentials", origin: "https://any.test", method: "GET",
			cors: &store.Cors{AllowOrigins: []string{"*"}, AllowMethods: []string{"GET"}, AllowCredentials: true},
			want: map[string]string{hAllowOrigin: "*", hAllowMethods: "GET"},
		},
		{
			name: "a named origin beside * keeps its credentials", origin: "https://app.test", method: "GET",
			cors: &store.Cors{AllowOrigins: []string{"*", "https://app.test"}, AllowMethods: []string{"GET"}, AllowCredentials: true},
			want: map[string]string{hAllowOrigin: "https://app.test", hAllowMethods: "GET", hAllowCredentials: "true"},
		},
		{
			name: "wildcard headers and none requested", origin: "https://any.test", method: "GET",
			cors: &store.Cors{AllowOrigins: []string{"*"}, AllowMethods: []string{"GET"}, AllowHeaders: []string{"*"}},
			want: map[string]string{hAllowOrigin: "*", hAllowMethods: "GET"},
		},
		{
			// Lambda's AllowOrigins are exact origins or "*": no patterns.
			name: "a * inside an origin is no pattern", origin: "https://a.example.com", method: "GET",
			cors: &store.Cors{AllowOrigins: []string{"https://*.example.com"}, AllowMethods: []string{"GET"}},
		},
		{
			name: "no methods configured", origin: "https://any.test", method: "GET",
			cors: &store.Cors{AllowOrigins: []string{"*"}},
		},
		{
			name: "max age 0 sends none", origin: "https://any.test", method: "GET",
			cors: &store.Cors{AllowOrigins: []string{"https://any.test"}, AllowMethods: []string{"GET"}, MaxAge: 0},
			want: map[string]string{hAllowOrigin: "https://any.test", hAllowMethods: "GET"},
		},
		{
			name: "max age at Lambda's maximum", origin: "https://any.test", method: "GET",
			cors: &store.Cors{AllowOrigins: []string{"https://any.test"}, AllowMethods: []string{"GET"}, MaxAge: 86400},
			want: map[string]string{hAllowOrigin: "https://any.test", hAllowMethods: "GET", hMaxAge: "86400"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodOptions, "http://"+testHost+"/", nil)
			r.Header.Set("Origin", tt.origin)
			r.Header.Set("Access-Control-Request-Method", tt.method)
			if tt.reqHeaders != "" {
				r.Header.Set("Access-Control-Request-Headers", tt.reqHeaders)
			}
			w := httptest.NewRecorder()
			preflight(w, r, tt.cors)
			// Allowed or not, a preflight is answered 200 with no body;
			// only the headers tell the browser.
			if w.Code != http.StatusOK || w.Body.Len() != 0 {
				t.Errorf("preflight answered %d %q, want 200 and no body", w.Code, w.Body.String())
			}
			checkCORSHeaders(t, w.Header(), tt.want)
		})
	}
}

func TestCORSHeaders(t *testing.T) {
	cfg := &store.Cors{
		AllowOrigins: []string{"https://app.example.com"}, AllowMethods: []string{"GET"}, AllowHeaders: []string{"x-api-key"},
		ExposeHeaders: []string{"x-request-id"}, AllowCredentials: true, MaxAge: 600,
	}
	tests := []struct {
		name   string
		cors   *store.Cors
		origin string
		want   map[string]string // nil: no CORS header and no Vary
	}{
		{
			// Only the preflight carries methods, headers and max age.
			name: "allowed origin", cors: cfg, origin: "https://app.example.com",
			want: map[string]string{hAllowOrigin: "https://app.example.com", hAllowCredentials: "true", hExposeHeaders: "x-request-id"},
		},
		{name: "origin not allowed", cors: cfg, origin: "https://evil.example.com"},
		{name: "no Origin: not a CORS request", cors: cfg},
		{
			name: "wildcard", origin: "https://any.test", cors: &store.Cors{AllowOrigins: []string{"*"}},
			want: map[string]string{hAllowOrigin: "*"},
		},
		{
			name: "wildcard with credentials: never the origin", origin: "https://any.test", cors: &store.Cors{AllowOrigins: []string{"*"}, AllowCredentials: true},
			want: map[string]string{hAllowOrigin: "*"},
		},
		{name: "no origins configured", origin: "https://any.test", cors: &store.Cors{AllowMethods: []string{"*"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://"+testHost+"/", nil)
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			w := httptest.NewRecorder()
			corsHeaders(w, r, tt.cors)
			if tt.want == nil {
				if len(w.Header()) != 0 {
					t.Errorf("headers %v, want none", w.Header())
				}
				return
			}
			checkCORSHeaders(t, w.Header(), tt.want)
		})
	}
}
