package funcurl

import (
	"net/http/httptest"
	"testing"
)

func TestRoute(t *testing.T) {
	tests := []struct {
		name       string
		host       string
		target     string
		wantOK     bool
		wantID     string
		wantPath   string
		wantDomain string
	}{
		{"host with a port", "abc123.lambda-url.localhost:9000", "/a/b?x=1", true, "abc123", "/a/b", "abc123.lambda-url.localhost"},
		{"host without a port", "abc123.lambda-url.us-east-1.on.aws", "/", true, "abc123", "/", "abc123.lambda-url.us-east-1.on.aws"},
		{"host keeps the escaped path", "abc123.lambda-url.localhost", "/a%2Fb/c", true, "abc123", "/a%2Fb/c", "abc123.lambda-url.localhost"},
		{"host wins over a /fn-url/ path", "abc123.lambda-url.localhost", "/fn-url/other/x", true, "abc123", "/fn-url/other/x", "abc123.lambda-url.localhost"},
		{"path routing", "127.0.0.1:9000", "/fn-url/abc123/a/b?x=1", true, "abc123", "/a/b", "127.0.0.1"},
		{"path routing, no trailing slash", "localhost:9000", "/fn-url/abc123", true, "abc123", "/", "localhost"},
		{"path routing, trailing slash", "localhost", "/fn-url/abc123/", true, "abc123", "/", "localhost"},
		{"path routing keeps the escaped path", "localhost", "/fn-url/abc123/a%2Fb", true, "abc123", "/a%2Fb", "localhost"},
		{"path routing on an IPv6 host", "[::1]:9000", "/fn-url/abc123/x", true, "abc123", "/x", "::1"},
		{"no id in the path", "localhost:9000", "/fn-url/", false, "", "", ""},
		{"empty id in the path", "localhost:9000", "/fn-url//x", false, "", "", ""},
		{"plain host, plain path", "localhost:9000", "/", false, "", "", ""},
		{"prefix without its slash", "localhost:9000", "/fn-urlabc/x", false, "", "", ""},
		{"host with no id before .lambda-url.", ".lambda-url.localhost:9000", "/x", false, "", "", ""},
		{"lambda-url without a dot before it", "lambda-url.localhost", "/x", false, "", "", ""},
		{"other subdomain", "abc123.lambda.localhost", "/x", false, "", "", ""},
		{"empty host", "", "/x", false, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, nil)
			r.Host = tt.host
			id, path, domain, ok := route(r)
			if ok != tt.wantOK {
				t.Fatalf("route(%s%s) ok = %v, want %v (id %q path %q)", tt.host, tt.target, ok, tt.wantOK, id, path)
			}
			if !ok {
				return
			}
			if id != tt.wantID || path != tt.wantPath || domain != tt.wantDomain {
				t.Errorf("route(%s%s) = id %q path %q domain %q, want %q %q %q",
					tt.host, tt.target, id, path, domain, tt.wantID, tt.wantPath, tt.wantDomain)
			}
		})
	}
}
