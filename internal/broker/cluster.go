package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is how the embedded server joins the other hosts' (NATS routes;
// JetStream then runs its own Raft groups across them).
type Cluster struct {
	// Name is the cluster's, the same on every host.
	Name string
	// Node is this host's name, unique in the cluster (the NATS server
	// name, and the host's name in Hearth's membership).
	Node string
	// Listen is the routes' address (host:port) this host accepts the
	// other hosts' routes on.
	Listen string
	// Routes are the other hosts' route URLs (nats://host:port); this
	// host's own may be among them (the same list on every host), and is
	// then skipped. JetStream needs at least one other host.
	Routes []string
	// Secret, when set, is a shared secret every route authenticates with
	// (the same on every host): without it anyone who reaches Listen may
	// join the cluster and read its streams.
	Secret string
}

// MaxReplicas is the most copies Hearth asks for: three survive the loss
// of one host (a quorum of two remains); more would only slow writes.
const MaxReplicas = 3

// clusterReadyTimeout bounds the wait for a JetStream quorum when ReadyTimeout
// is not set: the first host started waits for another.
const clusterReadyTimeout = 2 * time.Minute

// routeUser is the user name routes authenticate as when a Secret is set.
const routeUser = "hearth"

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// ValidNode reports whether name can name a host: it is a NATS server name
// and a key in the membership bucket.
func ValidNode(name string) bool { return nodeName.MatchString(name) }

// routes checks c and returns its routes (this host's own left out) and
// the listen address's host and port.
func (c *Cluster) routes() ([]*url.URL, string, int, error) {
	if c.Name == "" || !ValidNode(c.Name) {
		return nil, "", 0, fmt.Errorf("broker: cluster name %q: letters, digits, - and _ only", c.Name)
	}
	if !ValidNode(c.Node) {
		return nil, "", 0, fmt.Errorf("broker: node name %q: letters, digits, - and _ only (at most 63)", c.Node)
	}
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, "", 0, fmt.Errorf("broker: cluster listen address %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, "", 0, fmt.Errorf("broker: cluster listen address %q: a port is needed", c.Listen)
	}
	var out []*url.URL
	seen := map[string]bool{}
	for _, r := range c.Routes {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats" || u.Port() == "" {
			return nil, "", 0, fmt.Errorf("broker: route %q: want nats://host:port", r)
		}
		if sameAddr(u.Host, c.Listen) || seen[u.Host] {
			continue
		}
		seen[u.Host] = true
		if c.Secret != "" && u.User == nil {
			u.User = url.UserPassword(routeUser, c.Secret)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		// A server with a cluster port and no route refuses JetStream
		// ("requires configured routes"); with only itself it waits
		// forever for routing. Say so before starting.
		return nil, "", 0, errors.New("broker: cluster mode needs --routes to at least one other host (a one-host cluster is standalone mode)")
	}
	return out, host, port, nil
}

// sameAddr reports whether two host:port name the same address (literally,
// or both unspecified/loopback with the same port).
func sameAddr(a, b string) bool {
	if a == b {
		return true
	}
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	norm := func(h string) string {
		if ip := net.ParseIP(h); ip != nil && (ip.IsUnspecified() || ip.IsLoopback()) {
			return "local"
		}
		if h == "localhost" {
			return "local"
		}
		return h
	}
	return norm(ah) == norm(bh)
}

// startClustered starts the embedded server in cfg.Cluster's cluster and
// waits for JetStream's quorum.
func startClustered(ctx context.Context, cfg Config) (*Broker, error) {
	c := cfg.Cluster
	routes, host, port, err := c.routes()
	if err != nil {
		return nil, err
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = clusterReadyTimeout
	}
	if err := setAsideStandalone(cfg.Dir, cfg.Log); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	// NATS starts routing only once its client listener is open, so the
	// cluster mode has one: on loopback, a random port, and a token only
	// this process knows (the daemon still connects in-process).
	token, err := randomToken()
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	opts := &server.Options{
		ServerName:    c.Node,
		Host:          "127.0.0.1",
		Port:          server.RANDOM_PORT,
		Authorization: token,
		JetStream:     true,
		StoreDir:      cfg.Dir,
		NoSigs:        true,
		SyncAlways:    cfg.SyncAlways,
		SyncInterval:  cfg.SyncInterval,
		Cluster: server.ClusterOpts{
			Name: c.Name, Host: host, Port: port,
			// The client listener is this process's: never tell
			// clients elsewhere about it.
			NoAdvertise: true,
		},
		Routes: routes,
	}
	if c.Secret != "" {
		opts.Cluster.Username, opts.Cluster.Password = routeUser, c.Secret
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	ns.SetLoggerV2(logger{cfg.Log.With("part", "broker", "node", c.Node)}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("broker: cluster listener %s: not ready", c.Listen)
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Token(token), nats.Name("hearth"), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("broker: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := waitJetStream(ctx, js, cfg.ReadyTimeout); err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, fmt.Errorf("broker: cluster %s: no JetStream quorum (are the other hosts up? routes %v): %w", c.Name, c.Routes, err)
	}
	replicas := cfg.Replicas
	if replicas <= 0 {
		replicas = min(MaxReplicas, len(routes)+1)
	}
	if err := importPending(ctx, cfg.Dir, js, replicas, cfg.Log); err != nil {
		nc.Close()
		ns.Shutdown()
		return nil, err
	}
	cfg.Log.Info("broker joined the cluster", "cluster", c.Name, "node", c.Node, "routes", len(routes), "replicas", replicas)
	return &Broker{ns: ns, nc: nc, js: js, replicas: replicas, shared: true, log: cfg.Log}, nil
}

// connectExternal uses an existing NATS with JetStream.
func connectExternal(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = clusterReadyTimeout
	}
	nc, err := nats.Connect(cfg.URL, nats.Name("hearth"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false))
	if err != nil {
		return nil, fmt.Errorf("broker: %s: %w", redact(cfg.URL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := waitJetStream(ctx, js, cfg.ReadyTimeout); err != nil {
		nc.Close()
		return nil, fmt.Errorf("broker: %s: JetStream: %w", redact(cfg.URL), err)
	}
	replicas := cfg.Replicas
	if replicas <= 0 {
		// The servers the client knows (the URL's and those the
		// cluster told it of).
		replicas = min(MaxReplicas, max(1, len(nc.Servers())))
	}
	// A data folder that held a standalone store: its streams go to
	// the external NATS too (nothing uses the folder any more).
	if cfg.Dir != "" {
		if err := setAsideStandalone(cfg.Dir, cfg.Log); err != nil {
			nc.Close()
			return nil, err
		}
		if err := importPending(ctx, cfg.Dir, js, replicas, cfg.Log); err != nil {
			nc.Close()
			return nil, err
		}
	}
	cfg.Log.Info("broker uses an external NATS", "url", redact(cfg.URL), "replicas", replicas)
	return &Broker{nc: nc, js: js, replicas: replicas, shared: true, log: cfg.Log}, nil
}

// waitJetStream polls until JetStream answers (a cluster's meta leader is
// elected), or timeout.
func waitJetStream(ctx context.Context, js jetstream.JetStream, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// redact drops a URL's password for logs and errors.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
