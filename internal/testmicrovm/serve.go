package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// listeners are the three ports, bound before anything is served so that
// a port in use is an error at start, not a silent missing server.
type listeners struct {
	app, grpc, hook net.Listener
}

func listen(cfg config) (listeners, error) {
	var ls listeners
	var err error
	for _, p := range []struct {
		port int
		dst  *net.Listener
	}{{cfg.appPort, &ls.app}, {cfg.grpcPort, &ls.grpc}, {cfg.hookPort, &ls.hook}} {
		// 0.0.0.0, not loopback: the host reaches the guest's ports through
		// the agent, and a user image would listen on every address too.
		*p.dst, err = net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(p.port)))
		if err != nil {
			ls.close()
			return listeners{}, fmt.Errorf("listen on %d: %w", p.port, err)
		}
	}
	return ls, nil
}

func (ls listeners) close() {
	for _, l := range []net.Listener{ls.app, ls.grpc, ls.hook} {
		if l != nil {
			l.Close()
		}
	}
}

// newHTTPServer serves h over HTTP/1.1 and over h2c with prior knowledge,
// which is how the endpoint forwards HTTP/2 and gRPC.
func newHTTPServer(h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: &p, ReadHeaderTimeout: 30 * time.Second}
}

func newGRPCServer() *grpc.Server {
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, health.NewServer()) // service "" is SERVING
	return g
}

// serve runs the servers until ctx ends or one fails.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	a, err := newApp(cfg.sseDelay)
	if err != nil {
		return err
	}
	ls, err := listen(cfg)
	if err != nil {
		return err
	}
	appSrv := newHTTPServer(a.handler())
	hookSrv := newHTTPServer(newHooks(cfg, log).handler())
	g := newGRPCServer()
	errc := make(chan error, 3)
	go func() { errc <- appSrv.Serve(ls.app) }()
	go func() { errc <- hookSrv.Serve(ls.hook) }()
	go func() { errc <- g.Serve(ls.grpc) }()
	octx, ostop := context.WithCancel(ctx)
	defer ostop()
	if cfg.outboundTo != "" {
		go outbound(octx, cfg.outboundTo, cfg.outboundEvery)
	}
	log.Info("testmicrovm: serving", "instance", a.instance, "app", cfg.appPort, "grpc", cfg.grpcPort, "hooks", cfg.hookPort)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = appSrv.Shutdown(sctx)
	_ = hookSrv.Shutdown(sctx)
	g.Stop()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
