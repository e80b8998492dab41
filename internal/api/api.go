// Package api serves the AWS Lambda control-plane REST API, so that the AWS
// SDKs and the aws CLI work against Hearth with an endpoint override. Every
// request but /healthz is authenticated with AWS Signature Version 4. One
// file per group of operations; the routes are listed in router.go.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/spans"
	"github.com/hearthdev/hearth/internal/store"
)

// MaxRequestBytes bounds an API request's body.
const MaxRequestBytes = 70 << 20

// Invoker is the invocation path; invoke.Service is it.
type Invoker interface {
	Invoke(ctx context.Context, req invoke.Request) (*invoke.Result, error)
	// Retire ends the environments of a function whose code or
	// configuration changed, or that was deleted.
	Retire(ctx context.Context, function string)
	// Published readies a newly published version (its SnapStart
	// template).
	Published(ctx context.Context, function, version string) error
}

// Logs reads functions' logs.
type Logs interface {
	Tail(function string, lines int) ([]byte, int64, error)
	ReadFrom(function string, off int64) ([]byte, int64, error)
}

// Config is what the API needs.
type Config struct {
	Store   *store.Store
	Invoker Invoker
	Keys    Keys
	// Region appears in ARNs.
	Region string
	// ValidateCode checks a zip package before it is stored (a managed
	// runtime's, which has no bootstrap, by guestimage.ValidatePackageZip).
	ValidateCode func(zip []byte) error
	// RuntimeRoot checks that a managed runtime's root is on this host;
	// nil does not check.
	RuntimeRoot func(runtime string) error
	// IdlePolicy is given to new functions.
	IdlePolicy store.IdlePolicy
	// DefaultKeepPaused is how long this daemon keeps an environment paused
	// for a policy that does not say (0: no paused tier); GET idle-policy
	// reports it.
	DefaultKeepPaused time.Duration
	// NetworkPolicy is given to new functions; nil gives
	// network.DefaultPolicy.
	NetworkPolicy *network.Policy
	// Logs are the functions' logs, for `hearth logs`.
	Logs Logs
	// URLBase makes a function URL from its id; nil when the daemon serves
	// no function URLs.
	URLBase func(id string) string
	// Prices price usage for GET /hearth/v1/cost.
	Prices meter.Prices
	// Pools reports environments for GET /hearth/v1/status; nil reports
	// none.
	Pools Pools
	// MaxConcurrency is the host's bound on invocations in flight (the
	// daemon's --max-concurrency; 0 for the scheduler's default), and
	// MaxZipBytes and MaxUnzippedBytes the code size limits ValidateCode
	// enforces: GetAccountSettings reports them.
	MaxConcurrency   int
	MaxZipBytes      int64
	MaxUnzippedBytes int64
	// Images builds container images' roots; nil refuses PackageType Image.
	Images ImageBuilder
	// MicroVMs runs Lambda MicroVMs (microvm.Manager); nil answers their
	// operations that the daemon runs none.
	MicroVMs MicroVMs
	// Queues are the daemon's queues, which destinations and dead-letter
	// queues may name; nil refuses every queue.
	Queues Queues
	// EventSources runs event source mappings (esm.Manager); nil refuses
	// creating or updating them (the daemon runs no queues).
	EventSources EventSources
	// HostShares, when set, observes the host's share of every synchronous
	// invocation that reached a guest (the daemon's /metrics).
	HostShares HostShares
	// Buckets lists the S3 endpoint's buckets for GET /hearth/v1/buckets;
	// nil lists none.
	Buckets Buckets
	// Cluster is this host's membership; nil when it runs standalone.
	Cluster Cluster
	// Sync, in a cluster, catches this host up with the configuration the
	// hosts share: a function a read does not find is looked for again
	// after it (made through another host a moment ago). Nil standalone.
	Sync ConfigSync
	Log  *slog.Logger
}

// ConfigSync waits until this host has applied the shared configuration,
// as of now.
type ConfigSync interface {
	CatchUp(ctx context.Context) error
}

// HostShares observes the host's share of invocations.
type HostShares interface {
	HostShare(d time.Duration)
}

// defaultMaxConcurrency is the scheduler's bound when the daemon sets none.
const defaultMaxConcurrency = 64

// API is the Lambda API's HTTP handler.
type API struct {
	cfg    Config
	verify *Verifier
	mux    *http.ServeMux
}

// New returns the API.
func New(cfg Config) *API {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Region == "" {
		cfg.Region = sandbox.DefaultRegion
	}
	if cfg.IdlePolicy.KeepWarmSeconds == 0 {
		cfg.IdlePolicy.KeepWarmSeconds = 60
	}
	if cfg.IdlePolicy.KeepSuspendedHours == 0 {
		cfg.IdlePolicy.KeepSuspendedHours = 24
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = defaultMaxConcurrency
	}
	a := &API{cfg: cfg, verify: NewVerifier(cfg.Keys).InRegion(cfg.Region), mux: http.NewServeMux()}
	a.routes()
	return a
}

// ServeHTTP authenticates the request and routes it; a request for an
// operation Hearth does not serve is answered in Lambda's error shape, and
// only once it is signed, so that the API tells nothing to a stranger.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	// The host's share of an invocation is measured from here (see
	// package spans).
	rec := spans.New(nil)
	rec.Mark(spans.Received)
	r = r.WithContext(spans.With(r.Context(), rec))
	// The largest request is a 50 MB zip, base64 in JSON: refuse more
	// before reading it into memory. An upload into a MicroVM is streamed
	// instead, its payload unsigned.
	verify := a.verify.Verify
	if streamsBody(r) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxUploadBytes)
		verify = a.verify.VerifyUnsignedPayload
	} else {
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
	}
	if err := verify(r); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			err = lambdaerr.RequestTooLarge("Request must be smaller than %d bytes", MaxRequestBytes)
		}
		a.writeError(w, err)
		return
	}
	rec.Mark(spans.Verified)
	a.route(w, r)
}
