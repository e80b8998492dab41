package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"time"
)

// A host asked for something another host holds (a MicroVM, a bucket)
// sends the request on, as it came, to that host: hostProxy is the one
// reverse proxy both use. It keeps the Host header (SigV4 signs it, the
// MicroVMs' endpoint and virtual-host buckets route by it), streams both
// ways without buffering (FlushInterval -1: WebSockets, exec streams,
// aws-chunked uploads and large objects pass as they come), speaks h2c
// when the client did, and adds only HeaderForwarded, which stops a
// second hop and grants nothing: the receiver checks the request as if
// the client had called it.

// HeaderForwarded marks a request another host forwarded: it is served
// here, never forwarded again (no loop when an owners' record and the
// hosts disagree for a moment). Its value names the forwarding host.
const HeaderForwarded = "X-Hearth-Forwarded-By"

// forwardTimeout bounds reaching the owner (not the request, which may
// be a long exec, a WebSocket or a large object).
const forwardTimeout = 10 * time.Second

// hop is where one forwarded request goes.
type hop struct {
	node, addr string
	// answerHeader, when set, names node on the answer.
	answerHeader string
	// unreachable answers when the host does not (in the shape of the
	// API the request was for).
	unreachable func(w http.ResponseWriter, err error)
}

type hopKey struct{}

func hopOf(ctx context.Context) hop {
	h, _ := ctx.Value(hopKey{}).(hop)
	return h
}

// hostProxy forwards requests to other hosts.
type hostProxy struct {
	node  string // this host, told in HeaderForwarded
	proxy *httputil.ReverseProxy
}

func newHostProxy(node string) *hostProxy {
	p := &hostProxy{node: node}
	dial := &net.Dialer{Timeout: forwardTimeout}
	h1 := &http.Transport{DialContext: dial.DialContext, DisableCompression: true, ResponseHeaderTimeout: 0,
		MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}
	var p2 http.Protocols
	p2.SetUnencryptedHTTP2(true)
	h2 := &http.Transport{DialContext: dial.DialContext, DisableCompression: true, Protocols: &p2}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			dst := hopOf(pr.In.Context())
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = dst.addr
			// The host the client signed (SigV4 signs it) and the
			// endpoint routes by.
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set(HeaderForwarded, p.node)
		},
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.ProtoMajor == 2 {
				return h2.RoundTrip(r)
			}
			return h1.RoundTrip(r)
		}),
		FlushInterval: -1,
		ModifyResponse: func(r *http.Response) error {
			if dst := hopOf(r.Request.Context()); dst.answerHeader != "" {
				r.Header.Set(dst.answerHeader, dst.node)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return
			}
			hopOf(r.Context()).unreachable(w, err)
		},
	}
	return p
}

// forward sends r to h and writes its answer to w.
func (p *hostProxy) forward(w http.ResponseWriter, r *http.Request, h hop) {
	p.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), hopKey{}, h)))
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
