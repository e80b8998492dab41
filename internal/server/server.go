// Package server is the Hearth daemon as a library: New, Start, Ready,
// Shutdown. It holds the store, the VM host, the scheduler and the Lambda
// API; `hearth serve` runs it, and tests start it in-process.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/configlog"
	"github.com/hearthdev/hearth/internal/console"
	"github.com/hearthdev/hearth/internal/esm"
	"github.com/hearthdev/hearth/internal/fnlog"
	"github.com/hearthdev/hearth/internal/funcurl"
	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/meterlog"
	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/queue"
	"github.com/hearthdev/hearth/internal/recovery"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/runtimes"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/sqsapi"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/vmboot"
	"github.com/hearthdev/hearth/internal/vmproxy"
	"github.com/nats-io/nats.go/jetstream"
)

// Config is the daemon's configuration.
type Config struct {
	DataDir string
	// ConfigLog shares the configuration with the other hosts of a
	// cluster (configlog.go); off by default.
	ConfigLog ConfigLog
	// Listen is the API's address; default 127.0.0.1:9000. Port 0 picks one.
	Listen string
	Host   vmboot.Options
	Region string
	// MaxConcurrency bounds the invocations in flight on this host.
	MaxConcurrency int
	// Limits bound the environments, guest memory and snapshot disk of this
	// host, and its boots in flight. A zero field takes the host's default
	// (scheduler.HostLimits: memory and disk derived from this host's RAM
	// and the data folder's free space); a negative one is no bound.
	Limits scheduler.Limits
	// KeepWarm is how long a new function's idle environments stay warm
	// before they are suspended; KeepSuspended how long they are kept then.
	KeepWarm      time.Duration
	KeepSuspended time.Duration
	// KeepPaused is how long an idle environment stays paused between
	// warm and suspended, for functions whose policy does not say (0: the
	// default; negative: no paused tier).
	KeepPaused time.Duration
	// SnapStart makes a template of each function revision after its
	// first cold boot, and clones further environments from it.
	SnapStart bool
	// URLListen and URLTLSListen serve function URLs (HTTP, and HTTPS with
	// HTTP/2); empty turns one off. URLDomain names them:
	// <url-id>.lambda-url.<domain> ("localhost" by default, which
	// browsers and curl send to loopback), or with another domain
	// <url-id>.lambda-url.<region>.<domain>.
	URLListen    string
	URLTLSListen string
	URLDomain    string
	// TLSCert and TLSKey are the HTTPS certificate; empty makes and keeps a
	// self-signed one.
	TLSCert, TLSKey string
	// Prices price usage in `hearth cost`; zero is Lambda's public prices.
	Prices meter.Prices
	// DNS are the resolvers guests are given; nil takes the host's
	// /etc/resolv.conf's that are not loopback, empty gives none.
	DNS []netip.Addr
	// NetworkPolicy is new functions' egress policy; nil is
	// network.DefaultPolicy.
	NetworkPolicy *network.Policy
	// Async paces asynchronous invocations (Lambda's delays when zero).
	Async AsyncOptions
	// S3Listen serves the S3 endpoint (buckets.go); empty: only guests
	// reach it.
	S3Listen string
	// Cluster makes the daemon one host of several (cluster.go); zero is
	// standalone.
	Cluster ClusterOptions
	// CodeGrace is how long a zip no function names is kept
	// (retention.go); store.DefaultCodeGrace when zero. ImagesUnusedFor
	// is how long a stored initramfs may go unused before it is removed;
	// DefaultImagesUnusedFor when zero.
	CodeGrace       time.Duration
	ImagesUnusedFor time.Duration
	Log             *slog.Logger
}

// Server is a running daemon.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  *store.Store
	host   *vmboot.Host
	sched  *scheduler.Scheduler
	invoke *invoke.Service
	usage  storeMeter
	api    *api.API
	http   *http.Server
	ln     net.Listener
	ready  chan struct{}
	done   chan error

	metrics  *metrics
	nets     *network.Manager // nil when environments get no network
	verifier *api.Verifier
	urls     []*http.Server
	urlAddrs []string // the function-URL listeners' addresses, http first
	microvms *microvm.Manager

	// Events (events.go, async.go): the embedded JetStream, the queues and
	// the SQS API on it, and the asynchronous invocations.
	broker  *broker.Broker
	queues  *queue.Service
	sqs     *sqsapi.Handler
	async   *async.Queue
	buckets *buckets
	esm     *esm.Manager // nil when the daemon runs no queues

	// Several hosts (cluster.go): nil standalone.
	member *cluster.Member
	slots  *cluster.Slots // cluster-wide concurrency (slots.go)
	drain  *drainGate
	load   *hostLoad
	// router forwards invocations to the host best placed (route.go);
	// configLog is the configuration the hosts share.
	router    *router
	configLog *configlog.Log
	sync      *configSync
	moves     *mover        // drain.go
	roots     *clusterRoots // roots_cluster.go
	retention *retention    // retention.go

	// meterLog carries the meter across the hosts (meterlog.go); nil
	// standalone.
	meterLog *meterlog.Log

	// The cluster's keys (keys_cluster.go) and MicroVM owners
	// (microvm_route.go).
	keysKV      jetstream.KeyValue
	clusterKeys *clusterKeys
	mvmOwners   *microVMOwners
	mvmForward  *microVMForwarder
}

// CredentialsFile is where the daemon's access keys are, in dataDir.
func CredentialsFile(dataDir string) string { return filepath.Join(dataDir, "credentials") }

// ImageCacheDir is where container images' root disks are built and kept,
// in dataDir; `hearth image import` builds into it too.
func ImageCacheDir(dataDir string) string { return filepath.Join(dataDir, "rootfs") }

// New opens the daemon's parts; Start serves.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:9000"
	}
	if cfg.NetworkPolicy != nil {
		if err := cfg.NetworkPolicy.Validate(); err != nil {
			return nil, fmt.Errorf("server: the default network policy: %w", err)
		}
	}
	if cfg.DataDir == "" {
		return nil, errors.New("server: no data folder")
	}
	if p := cfg.Prices; p.PerGBSecond == 0 && p.PerMillionRequests == 0 && p.PerGBHourSuspended == 0 {
		// No prices given (a config may set only billPlatformInit): Lambda's.
		bill := p.BillPlatformInit
		cfg.Prices = meter.LambdaPrices
		cfg.Prices.BillPlatformInit = bill
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	creds, err := loadCredentials(CredentialsFile(cfg.DataDir))
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	cfg.Host.Log = cfg.Log
	if cfg.Host.VMMPool > 0 && cfg.Host.PoolDir == "" {
		// Beside the environments: a pre-started VMM's sockets are moved
		// and its files linked, within one file system.
		cfg.Host.PoolDir = filepath.Join(cfg.DataDir, "vmm-pool")
	}
	host, err := vmboot.Open(cfg.Host)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, store: st, host: host, ready: make(chan struct{}), done: make(chan error, 1)}
	if err := s.resolveAccel(ctx); err != nil {
		st.Close()
		return nil, err
	}
	logs, err := fnlog.New(filepath.Join(cfg.DataDir, "logs"))
	if err != nil {
		st.Close()
		return nil, err
	}
	s.metrics = newMetrics()
	if cfg.URLDomain == "" {
		cfg.URLDomain = "localhost"
		s.cfg.URLDomain = "localhost"
	}
	if s.buckets, err = openBuckets(cfg, creds, st, notifyTargets{s}); err != nil {
		st.Close()
		return nil, err
	}
	sbx := host.SandboxConfig(filepath.Join(cfg.DataDir, "envs"), nil)
	sbx.GuestServices = s.buckets
	if s.nets = openNetworks(ctx, cfg, s.metrics); s.nets != nil {
		sbx.Net = s.nets
	}
	usage := storeMeter{st: st, m: s.metrics, log: cfg.Log, prices: cfg.Prices}
	s.usage = usage
	hostLimits, err := scheduler.HostLimits(cfg.DataDir)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("host limits: %w", err)
	}
	limits := cfg.Limits.Or(hostLimits)
	cfg.Log.Info("host limits", "environments", limits.MaxEnvironments, "guestMemoryMB", limits.MaxMemoryMB,
		"snapshotMB", limits.MaxSnapshotBytes>>20, "bootsInFlight", limits.MaxBootsInFlight,
		"bootQueueTimeout", limits.BootQueueTimeout, "bootRetries", limits.BootRetries)
	schedCfg := scheduler.Config{Sandbox: sbx, Images: s, Records: st, Logs: logs, MaxConcurrency: cfg.MaxConcurrency, Log: cfg.Log,
		Meter: usage, TemplatesDir: templatesDir(cfg.DataDir), Limits: limits}
	s.sched = scheduler.New(schedCfg)
	s.verifier = api.NewVerifier(creds)
	// The broker and the queues first: asynchronous invocations deliver
	// to queues, and the invocation path queues into them.
	if err := s.openEvents(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("events: %w", err)
	}
	if err := s.openClusterKeys(ctx, creds); err != nil {
		s.closeBroker(ctx)
		st.Close()
		return nil, err
	}
	if err := s.openAsync(ctx); err != nil {
		s.closeBroker(ctx)
		st.Close()
		return nil, err
	}
	s.openRouter()
	s.invoke = invoke.New(invoke.Config{Functions: st, Scheduler: s.invokeScheduler(), Meter: usage, Observer: s.metrics, Logs: logs, Async: s.async,
		Region: cfg.Region, SnapStart: cfg.SnapStart, KeepPaused: cfg.KeepPaused, CacheDir: cfg.Host.CacheDir, Services: s.buckets,
		Forwarder: s.forwarder(), Sync: s.configSync(), Node: s.cfg.Cluster.Node, Log: cfg.Log,
		Slots: s.invokeSlots(), AccountConcurrency: cfg.MaxConcurrency})
	idle := store.IdlePolicy{KeepWarmSeconds: int(cfg.KeepWarm.Seconds()), KeepSuspendedHours: int(cfg.KeepSuspended.Hours())}
	s.metrics.watch(s.sched)
	if cfg.URLDomain == "" {
		cfg.URLDomain = "localhost"
		s.cfg.URLDomain = "localhost"
	}
	roots, err := rootfs.New(ImageCacheDir(cfg.DataDir), rootfs.Options{Logger: cfg.Log})
	if err != nil {
		s.closeBroker(ctx)
		st.Close()
		return nil, err
	}
	if err := s.openMicroVMs(ctx, roots); err != nil {
		s.closeBroker(ctx)
		st.Close()
		return nil, err
	}
	if err := s.openMicroVMRoutes(ctx); err != nil {
		s.closeBroker(ctx)
		st.Close()
		return nil, err
	}
	if err := s.openBucketRoutes(ctx); err != nil {
		s.closeBroker(ctx)
		st.Close()
		return nil, err
	}
	s.openEventSources(s.esmQueues())
	s.api = api.New(api.Config{DefaultKeepPaused: s.invoke.DefaultKeepPaused(), Cluster: s.clusterAPI(), HostShares: s.metrics, Buckets: s.buckets, MicroVMs: s.microVMsAPI(), EventSources: s.eventSources(), Queues: s.asyncQueues(), Store: st, Images: s.openRoots(roots), Invoker: s.invoke, URLBase: s.urlBase, Keys: creds, Region: cfg.Region, Log: cfg.Log, IdlePolicy: idle, Logs: logs, Sync: s.configSync(),
		NetworkPolicy: cfg.NetworkPolicy,
		Prices:        cfg.Prices, Pools: pools{s.sched, s.metrics, s.microvms, s}, ValidateCode: guestimage.ValidateZip, RuntimeRoot: func(name string) error {
			_, err := runtimes.RootPath(cfg.Host.CacheDir, name)
			return err
		}, MaxConcurrency: cfg.MaxConcurrency, MaxZipBytes: guestimage.MaxZipBytes, MaxUnzippedBytes: guestimage.MaxUnzippedBytes})
	if err := s.api.ResumeImageBuilds(ctx); err != nil {
		s.closeBroker(ctx)
		st.Close()
		return nil, fmt.Errorf("image builds: %w", err)
	}
	return s, nil
}

// egressCollectEvery is how often the guests' refusal counters are read
// into /metrics (and once more as each environment's network goes).
const egressCollectEvery = 5 * time.Second

// openNetworks gives environments their networks, when this host can:
// without (not root, no nft), environments have no network card, and a
// function that asks for one fails with a clear error.
func openNetworks(ctx context.Context, cfg Config, denied network.DeniedCounter) *network.Manager {
	dns := cfg.DNS
	if dns == nil {
		f, err := os.Open("/etc/resolv.conf")
		if err == nil {
			var skipped []string
			dns, skipped, err = network.ParseDNS(f)
			f.Close()
			if len(skipped) > 0 {
				cfg.Log.Info("guests do not get the host's loopback or IPv6 resolvers", "skipped", skipped)
			}
		}
		if err != nil {
			cfg.Log.Warn("reading the host's resolvers", "err", err)
		}
		if len(dns) == 0 {
			cfg.Log.Warn("guests get no DNS resolver: the host has none they can reach; give one with --dns")
		}
	}
	m, err := network.New(ctx, network.Config{DNS: dns, Denied: denied, CollectEvery: egressCollectEvery, Log: cfg.Log})
	if err != nil {
		cfg.Log.Warn("environments get no network", "err", err)
		return nil
	}
	cfg.Log.Info("environments get networks", "pool", network.DefaultPool, "dns", dns)
	return m
}

// resolveAccel settles --accel auto once, with an agent-only image.
func (s *Server) resolveAccel(ctx context.Context) error {
	dir := filepath.Join(s.cfg.DataDir, "images", "agent-only")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	img, err := s.host.Image(dir, nil)
	if err != nil {
		return err
	}
	return s.host.ResolveAccel(ctx, img)
}

// Image is the image of the code with this digest and the layers with
// these, in order; it implements scheduler.Images.
func (s *Server) Image(ctx context.Context, digest string, layerDigests []string) (sandbox.Image, error) {
	// Fetched from the other hosts when this one lacks them (the
	// configuration log's zips; standalone, the paths as they are).
	layers := make([]vmboot.LayerZip, len(layerDigests))
	for i, d := range layerDigests {
		p, err := s.store.FetchLayer(ctx, d)
		if err != nil {
			return sandbox.Image{}, err
		}
		layers[i] = vmboot.LayerZip{Digest: d, Path: p}
	}
	code, err := s.store.FetchCode(ctx, digest)
	if err != nil {
		return sandbox.Image{}, err
	}
	img, err := s.host.CodeImage(ctx, filepath.Join(s.cfg.DataDir, "images"), digest, code, layers...)
	if err == nil {
		s.readySet().UsedCode(cluster.CodeKey(digest, layerDigests)) // for placement
	}
	return img, err
}

// urlBase is a function URL's address, on the plain HTTP listener (or the
// TLS one when that is the only one).
func (s *Server) urlBase(id string) string {
	if len(s.urlAddrs) == 0 {
		return ""
	}
	host := id + ".lambda-url." + s.cfg.URLDomain
	if s.cfg.URLDomain != "localhost" {
		region := s.cfg.Region
		if region == "" {
			region = sandbox.DefaultRegion
		}
		host = id + ".lambda-url." + region + "." + s.cfg.URLDomain
	}
	_, port, _ := net.SplitHostPort(s.urlAddrs[0])
	scheme := "http"
	if s.cfg.URLListen == "" {
		scheme = "https"
	}
	return scheme + "://" + host + ":" + port + "/"
}

// URLAddrs are the function-URL listeners' addresses.
func (s *Server) URLAddrs() []string { return s.urlAddrs }

// startURLs opens the function-URL listeners.
func (s *Server) startURLs() error {
	// Function URLs are signed for service lambda in the daemon's region,
	// as AWS signs them.
	fe := funcurl.New(funcurl.Config{URLs: urlConfigs{st: s.store, sync: s.configSync(), log: s.log}, Invoker: s.invoke, Verifier: s.verifier.InRegion(s.cfg.Region), Log: s.log})
	// A MicroVM's endpoint shares the listeners: its host name (or the
	// /microvm/<id>/ path) picks it.
	h := s.routeMicroVMEndpoint(vmproxy.New(vmproxy.Config{Backends: s.microvms, Domain: s.cfg.URLDomain, Log: s.log}), fe)
	limits := defaultHTTPLimits()
	if s.cfg.URLListen != "" {
		ln, err := net.Listen("tcp", s.cfg.URLListen)
		if err != nil {
			return fmt.Errorf("function URLs: %w", err)
		}
		srv := limits.server(h)
		// HTTP/2 without TLS (h2c, with prior knowledge) too: gRPC to a
		// MicroVM comes that way.
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		s.urls, s.urlAddrs = append(s.urls, srv), append(s.urlAddrs, ln.Addr().String())
		go func() { _ = srv.Serve(limits.listen(ln)) }()
	}
	if s.cfg.URLTLSListen != "" {
		cert, err := localCertificate(s.cfg.DataDir, s.cfg.TLSCert, s.cfg.TLSKey, s.cfg.URLDomain)
		if err != nil {
			return fmt.Errorf("function URLs: certificate: %w", err)
		}
		ln, err := net.Listen("tcp", s.cfg.URLTLSListen)
		if err != nil {
			return fmt.Errorf("function URLs: %w", err)
		}
		// HTTP/2 comes with TLS in net/http; it keeps the limits (and
		// bounds the streams of one connection to 250).
		srv := limits.server(h)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
		s.urls, s.urlAddrs = append(s.urls, srv), append(s.urlAddrs, ln.Addr().String())
		go func() { _ = srv.ServeTLS(limits.listen(ln), "", "") }()
	}
	return nil
}

// Start listens, adopts what a previous daemon left, and serves.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	s.ln = ln
	if err := s.startURLs(); err != nil {
		ln.Close()
		return err
	}
	if err := s.buckets.start(ctx, s.cfg.S3Listen); err != nil {
		ln.Close()
		return err
	}
	if err := s.startRouter(); err != nil {
		ln.Close()
		return err
	}
	s.announce()
	s.adopt(ctx)
	s.startRoots(ctx)
	s.startRetention(ctx)
	if err := s.startMoves(ctx); err != nil {
		ln.Close()
		return err
	}
	s.microvms.Start(ctx)
	// Workers live until Shutdown stops them, whatever ctx does.
	s.startAsync(context.WithoutCancel(ctx))
	s.startEventSources(ctx)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.handler()) // unsigned, like /healthz
	// The web console's page, unsigned: it holds no data, and signs every
	// call it makes for data with the keys its user gives it.
	mux.Handle("GET "+console.Path, console.Handler())
	mux.Handle("GET /console", console.Handler())
	mux.Handle("/", s.withSQS(s.routeMicroVMAPI(s.api)))
	limits := defaultHTTPLimits()
	s.http = limits.server(mux)
	go func() {
		err := s.http.Serve(limits.listen(ln))
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	close(s.ready)
	s.log.Info("hearth serving", "addr", ln.Addr().String(), "data", s.cfg.DataDir, "accel", s.host.Accel)
	return nil
}

// adopt takes over the environments a previous daemon suspended, ends
// the others, and sweeps what it left that no record points to.
func (s *Server) adopt(ctx context.Context) {
	data := s.cfg.DataDir
	rep, err := recovery.Run(ctx, recovery.Config{Records: s.store, Adopter: s.invoke,
		EnvsDir: filepath.Join(data, "envs"), TemplatesDir: templatesDir(data),
		TempDirs: []string{data, filepath.Join(data, "code"), filepath.Join(data, "layers")}, ImagesDir: filepath.Join(data, "images"), Log: s.log})
	if err != nil {
		s.log.Warn("recovering what a previous daemon left", "err", err)
	}
	// The environments a previous daemon left and this one ended: their
	// lives end now in the meter's records too.
	for _, id := range rep.Ended {
		s.usage.EnvEnded(id)
	}
}

// templatesDir holds the daemon's SnapStart templates.
func templatesDir(dataDir string) string { return filepath.Join(dataDir, "snapstart") }

// Ready is closed once the daemon serves.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the API's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Done delivers the HTTP server's end.
func (s *Server) Done() <-chan error { return s.done }

// Scheduler is the daemon's scheduler, for status and tests.
func (s *Server) Scheduler() *scheduler.Scheduler { return s.sched }

// Shutdown stops serving, lets invocations in flight finish (until ctx
// ends), suspends the warm environments so the next daemon resumes them,
// and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	t0 := time.Now()
	phases := shutdownPhases{last: t0}
	s.stopping(ctx)
	s.stopRouter()
	for _, u := range s.urls {
		_ = u.Shutdown(ctx)
	}
	if s.http != nil {
		err = s.http.Shutdown(ctx)
	}
	phases.mark("requests")
	s.buckets.shutdown(ctx)
	// The pollers stop before the queues and the environments they use.
	s.stopEventSources(ctx)
	// Running MicroVMs are suspended (the next daemon resumes them) while
	// the networks and the store they need are still there.
	if merr := s.microvms.Shutdown(ctx); merr != nil {
		s.log.Warn("suspending the MicroVMs", "err", merr)
	}
	phases.mark("microvms")
	// Attempts running end (or are left to the next daemon) before the
	// environments and the broker go.
	s.stopAsync(ctx)
	phases.mark("async")
	s.stopMoves()
	s.stopRoots()
	s.stopRetention()
	s.sched.Shutdown(ctx)
	phases.mark("environments")
	s.closeBroker(ctx)
	if s.nets != nil {
		s.nets.Close(ctx)
	}
	s.host.Close()
	if cerr := s.store.Close(); err == nil {
		err = cerr
	}
	phases.mark("broker")
	// A stop that takes long is worth a line at the default level: an
	// operator upgrading host by host waits on it.
	level := slog.LevelInfo
	if time.Since(t0) > 10*time.Second {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "stopped", append([]any{"took", time.Since(t0).Round(time.Millisecond)}, phases.attrs()...)...)
	return err
}

// shutdownPhases times the steps of a shutdown, each from the end of the
// one before.
type shutdownPhases struct {
	last  time.Time
	names []string
	took  []time.Duration
}

func (p *shutdownPhases) mark(name string) {
	now := time.Now()
	p.names = append(p.names, name)
	p.took = append(p.took, now.Sub(p.last))
	p.last = now
}

func (p *shutdownPhases) attrs() []any {
	var out []any
	for i, n := range p.names {
		out = append(out, n, p.took[i].Round(time.Millisecond))
	}
	return out
}

// Records returns every meter record, for tests and tools.
func (s *Server) Records(ctx context.Context) ([]meter.Record, error) {
	return s.store.Records(ctx, "", time.Unix(0, 0), time.Now().Add(time.Hour))
}
