package vmproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/microvm"
)

// Backends are the MicroVMs behind the endpoint; the core's Manager is
// one.
type Backends interface {
	// Dial opens a connection to a TCP port in MicroVM id. Like a
	// net.Dialer, ctx bounds the dial only, not the connection. Errors
	// wrap microvm.ErrNotFound (no such MicroVM), microvm.ErrConflict (it
	// cannot be reached in its state: suspended without auto-resume,
	// terminated) or sandbox.ErrNothingListening / syscall.ECONNREFUSED.
	Dial(ctx context.Context, id string, port int) (net.Conn, error)
	// VerifyToken checks an X-aws-proxy-auth token for MicroVM id's port.
	VerifyToken(token, id string, port int) error
}

// Config is what the endpoint needs.
type Config struct {
	Backends Backends
	// Domain is the name MicroVMs' hosts end with:
	// <id>.lambda-microvm.<Domain>. Default "localhost".
	Domain string
	Log    *slog.Logger
	// DialTimeout bounds reaching a guest's port, an auto-resume included.
	// Default 1 minute.
	DialTimeout time.Duration
	// StallTimeout bounds each write to a client: a client that reads
	// nothing for that long is dropped (and its guest connection closed).
	// A stream that keeps moving has no time limit. Default 1 minute.
	StallTimeout time.Duration
}

// The endpoint's request headers and WebSocket subprotocols, as AWS names
// them.
const (
	HeaderAuth    = "X-Aws-Proxy-Auth"
	HeaderPort    = "X-Aws-Proxy-Port"
	HeaderForceH2 = "X-Aws-Proxy-Force-H2"
	// reservedPrefix: every header with it is the endpoint's, never the
	// guest's.
	reservedPrefix = "X-Aws-Proxy-"

	// PathPrefix routes by path where wildcard host names do not resolve:
	// /microvm/<id>/<path>.
	PathPrefix = "/microvm/"
	// hostLabel comes between a MicroVM's id and the domain.
	hostLabel = ".lambda-microvm."
)

// Handler is the endpoint.
type Handler struct {
	cfg    Config
	suffix string // hostLabel + domain, lower case
	proxy  *httputil.ReverseProxy
}

// New returns the endpoint.
func New(cfg Config) *Handler {
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Minute
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = time.Minute
	}
	h := &Handler{cfg: cfg, suffix: hostLabel + strings.ToLower(strings.TrimSuffix(cfg.Domain, "."))}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      newTransport(cfg.Backends, cfg.DialTimeout),
		FlushInterval:  -1, // SSE and other streams, event by event
		ModifyResponse: fixSubprotocol,
		ErrorHandler:   h.proxyError,
		ErrorLog:       slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	return h
}

// EndpointHost is MicroVM id's host name on domain (without a port).
func EndpointHost(id, domain string) string {
	if domain == "" {
		domain = "localhost"
	}
	return strings.ToLower(id) + hostLabel + domain
}

// Match reports whether r is for a MicroVM: its host is
// <id>.lambda-microvm.<domain>, or it is not a function URL's and its path
// starts with /microvm/.
func (h *Handler) Match(r *http.Request) bool {
	_, _, ok := h.route(r)
	return ok
}

// MicroVMID is the MicroVM r is for, when it is for one (see Match); the
// id is not checked (ServeHTTP does).
func (h *Handler) MicroVMID(r *http.Request) (string, bool) {
	id, _, ok := h.route(r)
	return id, ok
}

// Route sends MicroVMs' requests to h and the others to next.
func (h *Handler) Route(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.Match(r) {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// route finds the MicroVM's id and the path the guest is to see; path is
// "" when the request's own path is forwarded as it is.
func (h *Handler) route(r *http.Request) (id, path string, ok bool) {
	host := r.Host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		host = hn
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if rest, found := strings.CutSuffix(host, h.suffix); found {
		return rest, "", true
	}
	if strings.Contains(host, ".lambda-url.") {
		return "", "", false // a function URL's, whatever its path
	}
	rest, found := strings.CutPrefix(r.URL.EscapedPath(), PathPrefix)
	if !found {
		return "", "", false
	}
	id, tail, _ := strings.Cut(rest, "/")
	return id, "/" + tail, true
}

// target is where a request goes; it rides in the request's context to
// the transport's dial, which records its error for proxyError.
type target struct {
	id   string
	port int
	h2   bool
	path string // "" keeps the request's own
	// offeredMarker: the client's WebSocket handshake offered the bare
	// lambda-microvms subprotocol.
	offeredMarker bool
	// client is the client's request context: net/http dials apart from
	// it (to pool what it dials), but a connection here serves one
	// request, so its dial (an auto-resume, maybe) ends with the client.
	client context.Context

	mu      sync.Mutex
	dialErr error // the dial's, for proxyError
}

func (t *target) setDialErr(err error) {
	t.mu.Lock()
	t.dialErr = err
	t.mu.Unlock()
}

func (t *target) lastDialErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dialErr
}

type targetKey struct{}

func targetOf(ctx context.Context) *target {
	t, _ := ctx.Value(targetKey{}).(*target)
	return t
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, path, ok := h.route(r)
	if !ok {
		reply(w, http.StatusNotFound, "Not Found: use http://<microvm-id>"+h.suffix+"/ or "+PathPrefix+"<microvm-id>/")
		return
	}
	if !ValidID(id) {
		reply(w, http.StatusNotFound, "Not Found: not a MicroVM id")
		return
	}
	var offer wsOffer
	upgrade := isWebSocket(r)
	if upgrade {
		offer = parseOffer(r.Header)
	}
	port, err := requestPort(r, offer)
	if err != nil {
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	token := r.Header.Get(HeaderAuth)
	if token == "" {
		token = offer.token
	}
	if token == "" {
		reply(w, http.StatusForbidden, "Forbidden: missing the "+HeaderAuth+" header (for a WebSocket, or the lambda-microvms.authentication.<token> subprotocol); mint a token with CreateMicrovmAuthToken")
		return
	}
	if err := h.cfg.Backends.VerifyToken(token, id, port); err != nil {
		if errors.Is(err, microvm.ErrNotFound) {
			reply(w, http.StatusNotFound, err.Error())
			return
		}
		reply(w, http.StatusForbidden, fmt.Sprintf("Forbidden: port %d of MicroVM %s: %v", port, id, err))
		return
	}

	// An authenticated request may last as long as its MicroVM: lift the
	// server's whole-request limits (its headers were read under them),
	// and drop only a client that stalls (stallWriter).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})

	tg := &target{id: id, port: port, path: path, h2: !upgrade && wantsH2(r), offeredMarker: offer.marker, client: r.Context()}
	ctx := context.WithValue(r.Context(), targetKey{}, tg)
	h.proxy.ServeHTTP(newStallWriter(w, h.cfg.StallTimeout), r.WithContext(ctx))
}

// requestPort is X-aws-proxy-port, else the WebSocket's
// lambda-microvms.port.<N>, else 8080 (AWS's order).
func requestPort(r *http.Request, offer wsOffer) (int, error) {
	s, from := r.Header.Get(HeaderPort), HeaderPort
	if s == "" && offer.port != "" {
		s, from = offer.port, "the lambda-microvms.port subprotocol"
	}
	if s == "" {
		return microvm.DefaultPort, nil
	}
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("Bad Request: %s: %.20q is not a port (1 to 65535)", from, s)
	}
	return p, nil
}

// wantsH2 is a request the guest gets over h2c: asked for, or gRPC (which
// needs HTTP/2) arriving over HTTP/2.
func wantsH2(r *http.Request) bool {
	if strings.EqualFold(strings.TrimSpace(r.Header.Get(HeaderForceH2)), "true") {
		return true
	}
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// rewrite makes the guest's request. ReverseProxy has already removed the
// hop-by-hop headers and any client-sent Forwarded / X-Forwarded-*.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	tg := targetOf(pr.In.Context())
	pr.Out.URL.Scheme = "http"
	// The transport dials by the target in the context, not by this
	// name; it only keeps connections to different ports apart.
	pr.Out.URL.Host = net.JoinHostPort(tg.id+".microvm.invalid", strconv.Itoa(tg.port))
	pr.Out.Host = pr.In.Host // the guest sees the host the client asked for
	pr.SetXForwarded()
	// The path form's prefix, for an app that builds its own links; never
	// the client's.
	pr.Out.Header.Del("X-Forwarded-Prefix")
	if tg.path != "" {
		pr.Out.URL.RawPath = tg.path
		pr.Out.URL.Path = unescapePath(tg.path)
		pr.Out.Header.Set("X-Forwarded-Prefix", PathPrefix+tg.id)
	}
	for name := range pr.Out.Header {
		if strings.HasPrefix(http.CanonicalHeaderKey(name), reservedPrefix) {
			delete(pr.Out.Header, name)
		}
	}
	for name := range pr.Out.Trailer {
		if strings.HasPrefix(http.CanonicalHeaderKey(name), reservedPrefix) {
			delete(pr.Out.Trailer, name)
		}
	}
	if isWebSocket(pr.Out) {
		stripOffer(pr.Out.Header)
	}
}

// proxyError answers a request the guest could not answer.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	tg := targetOf(r.Context())
	if r.Context().Err() != nil {
		// The client went away; nobody reads an answer.
		h.cfg.Log.Debug("microvm endpoint: client gone", "microvm", tg.id, "port", tg.port, "err", err)
		return
	}
	if dialErr := tg.lastDialErr(); dialErr != nil {
		err = dialErr
	}
	status, msg := dialStatus(tg, err)
	if status == 0 {
		status, msg = http.StatusBadGateway, fmt.Sprintf("Bad Gateway: port %d of MicroVM %s: %v", tg.port, tg.id, err)
	}
	h.cfg.Log.Debug("microvm endpoint: request failed", "microvm", tg.id, "port", tg.port, "status", status, "err", err)
	reply(w, status, msg)
}

// errorTypes are AWS's names of the endpoint's errors.
var errorTypes = map[int]string{
	http.StatusBadRequest: "ValidationException",
	http.StatusForbidden:  "AccessDeniedException",
	http.StatusNotFound:   "ResourceNotFoundException",
	http.StatusConflict:   "ConflictException",
}

// reply answers with {"message": msg}, as the API's errors are.
func reply(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if t, ok := errorTypes[status]; ok {
		w.Header().Set("X-Amzn-ErrorType", t)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}
