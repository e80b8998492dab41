package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/objects"
	"github.com/hearthdev/hearth/internal/queue"
	"github.com/hearthdev/hearth/internal/s3api"
	"github.com/hearthdev/hearth/internal/s3events"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// Buckets: the S3 endpoint serves the buckets of <data>/buckets on a
// listener of its own (Config.S3Listen), not on the API's: path-style S3
// addresses (/<bucket>/<key>) share their first segment with the Lambda
// API's routes (/2015-03-31/… is a valid bucket name), and a listener of
// its own keeps both routings whole. Functions reach it from their guests
// through the agent (sandbox/services.go), on GuestServicesPort of the
// guest's loopback, with keys of their own (s3api.FunctionKeys).

// GuestServicesPort is where a function reaches the S3 endpoint, on its
// guest's loopback; AWS_ENDPOINT_URL_S3 names it.
const GuestServicesPort = 9002

// BucketsTag is the function tag that scopes its keys: bucket names
// separated by spaces (tag values allow no comma), or "*". Without it a
// function may use every bucket.
const BucketsTag = "hearth:buckets"

// BucketsDir is where buckets are kept, in dataDir.
func BucketsDir(dataDir string) string { return filepath.Join(dataDir, "buckets") }

// buckets is the daemon's S3 endpoint.
type buckets struct {
	handler *s3api.Handler
	fnKeys  *s3api.FunctionKeys
	creds   *credentials
	store   *store.Store
	objs    *objects.Store
	backend *bucketBackend
	domain  string // virtual-host addresses' (s3api.Config.Domain)

	// In a cluster (bucket_route.go): the owners' record and the router
	// in front of handler.
	owners *bucketOwners
	router http.Handler

	srv   *http.Server // on Config.S3Listen, when set
	addr  string
	guest *http.Server // on the guests' streams
	conns *connListener
}

// ListBucketSummaries lists the buckets for the API's GET
// /hearth/v1/buckets (the web console's).
func (b *buckets) ListBucketSummaries(context.Context) ([]api.BucketSummary, error) {
	infos, err := b.backend.ListBuckets()
	if err != nil {
		return nil, err
	}
	out := make([]api.BucketSummary, 0, len(infos))
	for _, i := range infos {
		out = append(out, api.BucketSummary{Name: i.Name, CreationDate: i.CreationDate.Time})
	}
	return out, nil
}

// openBuckets opens the buckets and the endpoint's handler; their
// notifications go to targets.
func openBuckets(cfg Config, creds *credentials, st *store.Store, targets s3events.Targets) (*buckets, error) {
	objs, err := objects.Open(BucketsDir(cfg.DataDir))
	if err != nil {
		return nil, fmt.Errorf("buckets: %w", err)
	}
	region := cfg.Region
	if region == "" {
		region = sandbox.DefaultRegion
	}
	notifier := s3events.New(s3events.Config{Buckets: objs, Targets: targets, Region: region, Log: cfg.Log})
	// Every change's events are stored before its request is answered.
	objs.SetEvents(notifier)
	fk, err := s3api.OpenFunctionKeys(filepath.Join(cfg.DataDir, "function-keys"))
	if err != nil {
		return nil, fmt.Errorf("function keys: %w", err)
	}
	domain := cfg.URLDomain
	if domain == "" {
		domain = "localhost" // s3api's
	}
	b := &buckets{fnKeys: fk, creds: creds, store: st, objs: objs, backend: &bucketBackend{Store: objs}, domain: domain, conns: newConnListener()}
	b.handler = s3api.New(s3api.Config{Backend: b.backend, Verifier: api.NewS3Verifier(bucketKeys{creds, fk}, cfg.Region),
		Scopes: b, Domain: domain, Notifications: notifier, Log: cfg.Log})
	return b, nil
}

// notifyTargets are the functions and queues bucket notifications go to
// (s3events.Targets). It reads the invocation path and the queues when
// called: the buckets open before them, and serve only after.
type notifyTargets struct{ s *Server }

func (t notifyTargets) CheckFunction(ctx context.Context, function, qualifier string) error {
	_, err := t.s.store.Resolve(ctx, function, qualifier)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", s3events.ErrNoTarget, err)
	}
	return err
}

func (t notifyTargets) InvokeEvent(ctx context.Context, function, qualifier string, payload []byte) error {
	_, err := t.s.invoke.Invoke(ctx, invoke.Request{Function: function, Qualifier: qualifier, Type: invoke.Event, Payload: payload})
	if le, ok := lambdaerr.As(err); ok && le.Status == http.StatusNotFound {
		return fmt.Errorf("%w: %w", s3events.ErrNoTarget, err)
	}
	return err
}

func (t notifyTargets) QueueName(ctx context.Context, arn string) (string, error) {
	if t.s.queues == nil {
		return "", fmt.Errorf("%w: the daemon has no queues", s3events.ErrNoTarget)
	}
	name, err := t.s.queues.NameOf(arn)
	if errors.Is(err, queue.ErrNotFound) {
		return "", fmt.Errorf("%w: %w", s3events.ErrNoTarget, err)
	}
	return name, err
}

func (t notifyTargets) SendToQueue(ctx context.Context, name string, body []byte) error {
	_, err := t.s.queues.Send(ctx, name, queue.Message{Body: string(body)})
	if errors.Is(err, queue.ErrNotFound) {
		return fmt.Errorf("%w: %w", s3events.ErrNoTarget, err)
	}
	return err
}

// bucketKeys are the keys the S3 endpoint takes: the daemon's and the
// functions'.
type bucketKeys struct {
	creds *credentials
	fk    *s3api.FunctionKeys
}

func (k bucketKeys) Secret(id string) (string, bool) {
	if s, ok := k.creds.Secret(id); ok {
		return s, true
	}
	return k.fk.Secret(id)
}

// Scope says what a key may touch: the daemon's keys everything; a
// function's key (with its session token) the buckets its BucketsTag
// names, all without it, and nothing once the function is gone.
func (b *buckets) Scope(ctx context.Context, id, token string) (s3api.Scope, error) {
	if _, ok := b.creds.Secret(id); ok {
		return s3api.Scope{Admin: true}, nil
	}
	fn, ok := b.fnKeys.Function(id, token)
	if !ok {
		return s3api.Scope{}, errors.New("The provided token is malformed or otherwise invalid.")
	}
	if _, err := b.store.GetFunction(ctx, fn); err != nil {
		return s3api.Scope{}, errors.New("The provided token has expired.")
	}
	tags, err := b.store.Tags(ctx, fn)
	if err != nil {
		return s3api.Scope{}, err
	}
	v, ok := tags[BucketsTag]
	if !ok || strings.TrimSpace(v) == "*" {
		return s3api.Scope{Function: fn, All: true}, nil
	}
	return s3api.Scope{Function: fn, Buckets: strings.Fields(v)}, nil
}

// GuestServices gives a function its keys and the endpoint's address in
// its guest (invoke.GuestServices).
func (b *buckets) GuestServices(function string) (map[string]string, int) {
	c := b.fnKeys.For(function)
	return map[string]string{
		"AWS_ACCESS_KEY_ID":     c.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": c.SecretAccessKey,
		"AWS_SESSION_TOKEN":     c.SessionToken,
		"AWS_ENDPOINT_URL_S3":   "http://127.0.0.1:" + strconv.Itoa(GuestServicesPort),
	}, GuestServicesPort
}

// ServeGuestConn serves a connection a guest opened (sandbox.GuestServices).
func (b *buckets) ServeGuestConn(c net.Conn) {
	if !b.conns.put(c) {
		c.Close()
	}
}

// joinCluster makes the endpoint the cluster's (bucket_route.go): before
// it serves.
func (b *buckets) joinCluster(owners *bucketOwners, node string, hosts func(string) (cluster.HostStatus, bool)) {
	up := func(n string) bool {
		h, ok := hosts(n)
		return ok && h.State == cluster.StateUp
	}
	b.owners, b.backend.owners, b.backend.up = owners, owners, up
	b.router = &bucketRouter{node: node, domain: b.domain, owners: owners, hosts: hosts, proxy: newHostProxy(node), next: b.handler}
}

// serving is the endpoint's handler: the router in a cluster.
func (b *buckets) serving() http.Handler {
	if b.router != nil {
		return b.router
	}
	return b.handler
}

// start serves the endpoint: on listen (none when empty) and on the
// guests' connections; in a cluster it tells the others its address.
func (b *buckets) start(ctx context.Context, listen string) error {
	limits := defaultHTTPLimits()
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("s3: %w", err)
		}
		b.srv, b.addr = limits.server(b.serving()), ln.Addr().String()
		go func() { _ = b.srv.Serve(limits.listen(ln)) }()
		if b.owners != nil {
			if err := b.owners.setAddr(ctx, b.addr); err != nil {
				return fmt.Errorf("s3: telling the cluster this host's address: %w", err)
			}
		}
	}
	b.guest = limits.server(b.serving())
	go func() { _ = b.guest.Serve(b.conns) }()
	return nil
}

func (b *buckets) shutdown(ctx context.Context) {
	if b.srv != nil {
		_ = b.srv.Shutdown(ctx)
	}
	if b.guest != nil {
		_ = b.guest.Shutdown(ctx)
	}
	b.conns.Close()
	b.owners.stop()
}

// S3Addr is the S3 endpoint's address, empty when it has no listener.
func (s *Server) S3Addr() string { return s.buckets.addr }

// connListener is a net.Listener of the connections handed to it.
type connListener struct {
	ch        chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

// put hands c to Accept; false once the listener is closed.
func (l *connListener) put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return guestAddr{} }

type guestAddr struct{}

func (guestAddr) Network() string { return "guest" }
func (guestAddr) String() string  { return "guest" }
