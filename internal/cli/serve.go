package cli

import (
	"context"
	"fmt"
	"net/netip"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/vmboot"
)

func (c *CLI) serveCmd() *cobra.Command {
	var hf hostFlags
	var cf clusterFlags
	var listen string
	var keepWarm, keepPaused, keepSuspended time.Duration
	var maxConcurrency int
	var limits scheduler.Limits
	var maxSnapshotMB int64
	var snapStart bool
	var async server.AsyncOptions
	var dnsFlag []string
	var s3Listen, urlListen, urlTLSListen, urlDomain, tlsCert, tlsKey string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Hearth daemon: the Lambda API on --listen, functions in microVMs",
		Long: `Runs the daemon. Its data folder holds the SQLite store, the code packages,
the environments and the access keys: <data-dir>/credentials, in the AWS shared
credentials format, so that

  AWS_SHARED_CREDENTIALS_FILE=<data-dir>/credentials aws lambda list-functions --endpoint-url http://127.0.0.1:9000

works. SIGINT or SIGTERM shuts it down gracefully: warm environments are
suspended, and the next daemon resumes them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			data := c.dataDir(cmd)
			fc, err := c.config()
			if err != nil {
				return err
			}
			if fc.Listen != "" && !cmd.Flags().Changed("listen") {
				listen = fc.Listen
			}
			if keepPaused == 0 {
				keepPaused = -1 // the server's "no paused tier"
			}
			var prices meter.Prices
			if fc.Prices != nil {
				prices = *fc.Prices
			}
			limits.MaxSnapshotBytes = maxSnapshotMB << 20
			if maxSnapshotMB < 0 {
				limits.MaxSnapshotBytes = -1
			}
			var dns []netip.Addr // nil: the host's resolvers
			if cmd.Flags().Changed("dns") {
				if dns, err = network.ParseDNSFlag(dnsFlag); err != nil {
					return err
				}
			}
			clusterOpts, err := cf.options()
			if err != nil {
				return err
			}
			srv, err := server.New(ctx, server.Config{DNS: dns, Cluster: clusterOpts,
				DataDir: data, Listen: listen, MaxConcurrency: maxConcurrency, Limits: limits,
				KeepWarm: keepWarm, KeepSuspended: keepSuspended, KeepPaused: keepPaused, SnapStart: snapStart, Log: c.logger(cmd),
				S3Listen:  s3Listen,
				URLListen: urlListen, URLTLSListen: urlTLSListen, URLDomain: urlDomain, TLSCert: tlsCert, TLSKey: tlsKey, Prices: prices,
				NetworkPolicy: fc.NetworkPolicy, Async: async,
				Host: vmboot.Options{Kernel: hf.kernel, Agent: hf.agent, Accel: hf.accel, QEMU: c.Getenv("HEARTH_QEMU"), CacheDir: c.cacheDir(), VMMPool: hf.pool, TCGCacheMiB: hf.tcgCache},
			})
			if err != nil {
				return err
			}
			if err := srv.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintf(c.Stderr, "hearth: serving the Lambda API on http://%s (data %s; keys in %s)\n", srv.Addr(), data, server.CredentialsFile(data))
			if addrs := srv.URLAddrs(); len(addrs) > 0 {
				fmt.Fprintf(c.Stderr, "hearth: function URLs on %v\n", addrs)
			}
			select {
			case <-ctx.Done():
			case err := <-srv.Done():
				if err != nil {
					return err
				}
			}
			fmt.Fprintln(c.Stderr, "hearth: shutting down: suspending warm environments")
			sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		},
	}
	hf.register(cmd)
	cf.register(cmd)
	cmd.Flags().StringSliceVar(&dnsFlag, "dns", nil, "DNS resolvers the guests are given (IPv4, repeatable, or none); default: the host's /etc/resolv.conf nameservers that are not loopback")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9000", "the API's address")
	cmd.Flags().DurationVar(&keepWarm, "keep-warm", 60*time.Second, "how long an idle environment stays warm before it is paused")
	cmd.Flags().DurationVar(&keepPaused, "keep-paused", invoke.DefaultKeepPaused,
		"how long an idle environment stays paused (vCPUs stopped, guest memory out of host RAM, VMM kept) before it is suspended; 0: suspend straight from warm")
	cmd.Flags().DurationVar(&keepSuspended, "keep-suspended", 24*time.Hour, "how long a suspended environment is kept before it is deleted")
	cmd.Flags().IntVar(&maxConcurrency, "max-concurrency", 64, "invocations in flight on this host at most (429 past it)")
	cmd.Flags().IntVar(&limits.MaxEnvironments, "max-environments", 0,
		"environments on this host at most, booting, busy, warm or suspended (0: 1000; -1: no limit); past it the oldest suspended are deleted, then the least recently used warm")
	cmd.Flags().IntVar(&limits.MaxMemoryMB, "max-guest-memory-mb", 0,
		"guest memory committed to environments holding a VMM, in MB (0: 80% of the host's RAM less 1 GiB; -1: no limit); past it the least recently used warm environment is suspended")
	cmd.Flags().Int64Var(&maxSnapshotMB, "max-snapshot-disk-mb", 0,
		"disk held by suspended environments and templates, in MB (0: half the data folder's free space at start; -1: no limit); past it the oldest suspended are deleted, and an environment that cannot fit is ended rather than suspended")
	cmd.Flags().IntVar(&limits.MaxBootsInFlight, "max-boots", 0, "microVMs booting at once (0: the number of CPUs; -1: no limit); more wait their turn in order")
	cmd.Flags().DurationVar(&limits.BootQueueTimeout, "boot-queue-timeout", 0, "how long a boot waits for its turn before a 429 (0: 30s; negative: as long as its caller)")
	cmd.Flags().IntVar(&limits.BootRetries, "boot-retries", 0, "fresh microVMs a cold start gets when its machine fails before the function runs (0: 2; -1: none)")
	cmd.Flags().DurationSliceVar(&async.RetryDelays, "async-retry-delays", nil,
		"the waits before an asynchronous invocation's retries after a function error (default 1m,2m, as Lambda)")
	cmd.Flags().DurationVar(&async.BackoffMin, "async-backoff-min", 0, "the first wait after a throttle or a host error (default 1s)")
	cmd.Flags().DurationVar(&async.BackoffMax, "async-backoff-max", 0, "the longest wait after throttles or host errors (default 5m)")
	cmd.Flags().DurationVar(&async.AckWait, "async-ack-wait", 0, "how soon an event whose attempt a dead daemon left runs again (default 30s)")
	cmd.Flags().BoolVar(&snapStart, "snap-start", false, "snapshot each function after its first init and clone new environments from it")
	cmd.Flags().StringVar(&s3Listen, "s3-listen", "127.0.0.1:9002", "the S3 endpoint, path-style and <bucket>.s3.<url-domain> (empty: off; functions reach it from their guests either way)")
	cmd.Flags().StringVar(&urlListen, "url-listen", "127.0.0.1:9080", "function URLs over HTTP (empty: off)")
	cmd.Flags().StringVar(&urlTLSListen, "url-tls-listen", "127.0.0.1:9443", "function URLs over HTTPS and HTTP/2 (empty: off)")
	cmd.Flags().StringVar(&urlDomain, "url-domain", "localhost", "function URLs are <url-id>.lambda-url.<domain> (with a domain other than localhost: <url-id>.lambda-url.<region>.<domain>)")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "certificate for the HTTPS listener (default: a self-signed one kept in the data folder)")
	cmd.Flags().StringVar(&tlsKey, "tls-key", "", "its private key")
	return cmd
}
