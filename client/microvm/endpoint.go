package microvm

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// EndpointURL is the URL of p (a path, with any query) on the MicroVM's
// endpoint, as GetMicrovm gives it.
func EndpointURL(endpoint, p string) (string, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(strings.TrimSuffix(endpoint, "/"))
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("endpoint %q is not a URL", endpoint)
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return u.String() + p, nil
}

// Request is a request to the MicroVM's endpoint: p on its endpoint, with
// the token in AuthHeader and, when port is not 0, the guest port in
// PortHeader.
func Request(ctx context.Context, method, endpoint, p, token string, port int, body io.Reader) (*http.Request, error) {
	u, err := EndpointURL(endpoint, p)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set(AuthHeader, token)
	if port != 0 {
		req.Header.Set(PortHeader, strconv.Itoa(port))
	}
	return req, nil
}

// tokenTTL is how long the tokens Fetch mints live.
const tokenTTL = 15 * time.Minute

// Fetch sends a request to the MicroVM's endpoint (from GetMicrovm), with
// a token for port (the default port when 0) minted for it; a suspended
// MicroVM with auto-resume is resumed by the endpoint.
func (c *Client) Fetch(ctx context.Context, id, method, p string, port int, body io.Reader) (*http.Response, error) {
	vm, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	spec := Port(8080)
	if port != 0 {
		spec = Port(port)
	}
	tok, err := c.AuthToken(ctx, id, tokenTTL, spec)
	if err != nil {
		return nil, err
	}
	req, err := Request(ctx, method, vm.Endpoint, p, tok, port, body)
	if err != nil {
		return nil, err
	}
	return c.http.Do(req)
}

// localhostTransport is http.DefaultTransport's settings, dialing names
// under .localhost (a MicroVM's endpoint on a local daemon) on loopback,
// as RFC 6761 says they are and as curl and browsers do; Go's resolver
// asks DNS for them.
func localhostTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, LoopbackAddr(addr))
	}
	return t
}

// LoopbackAddr is addr with a host name under .localhost replaced by
// 127.0.0.1; other addresses are returned as they are.
func LoopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
