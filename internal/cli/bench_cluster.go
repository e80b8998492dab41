package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/vmboot"
)

type benchClusterFlags struct {
	host      hostFlags
	zip       string
	n         int
	endpoints []string
	json      bool
	// deadRounds and drain are the failure half (bench_cluster_failover.go).
	deadRounds int
	drain      int
	hearth     string
}

func (c *CLI) benchClusterCmd() *cobra.Command {
	var f benchClusterFlags
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "An invocation forwarded vs served locally (p50/p99); time to report a dead host down; time to drain N suspended envs",
		Long: `Creates a function through the first host, warms one environment of it
there, then invokes it N times through that host (served locally) and N times
through each other host (forwarded to the first over NATS), alternating, and
reports each path's latency. Without --endpoints it starts three hosts as one
cluster on loopback in this process; with --endpoints it uses an existing
cluster (the same access keys on every host: profile default of
AWS_SHARED_CREDENTIALS_FILE or the data folder's).

Then, on the loopback cluster only: --dead-rounds times, one more host
(a ` + "`hearth serve`" + ` process) joins, is killed -9, and the time until every
other host reports it down is taken; and with --drain N, N environments of
a function cold-started on the first host suspend once idle, the host is
drained, and the time until all are moved (and each move's) is taken. The
drain boots microVMs: on a shared machine, hold the VM lock.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.benchCluster(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "examples/hello/hello.zip", "the function")
	cmd.Flags().IntVarP(&f.n, "count", "n", 200, "invocations per path")
	cmd.Flags().StringSliceVar(&f.endpoints, "endpoints", nil, "the API endpoints of an existing cluster's hosts (http://host:9000, comma-separated; at least two)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	cmd.Flags().IntVar(&f.deadRounds, "dead-rounds", 3, "rounds of killing a host -9 and timing until the others report it down (loopback cluster only; 0: none)")
	cmd.Flags().IntVar(&f.drain, "drain", 0, "suspended environments to drain from the first host, timed (loopback cluster only; 0: none)")
	cmd.Flags().StringVar(&f.hearth, "hearth", "", "the hearth binary the killed host runs (default: this one)")
	return cmd
}

// clusterPath is one way an invocation takes, measured.
type clusterPath struct {
	Path  string `json:"path"`
	Via   string `json:"via"`    // the host it was sent to
	RanOn string `json:"ran_on"` // the host that ran it (the last call's)
	N     int    `json:"requests"`
	// Misrouted counts calls that ran elsewhere than this path's host.
	Misrouted int     `json:"misrouted"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Mean      float64 `json:"mean_ms"`
}

// benchClusterResult is `hearth bench cluster --json`.
type benchClusterResult struct {
	Hosts     int         `json:"hosts"`
	Local     clusterPath `json:"local"`
	Forwarded clusterPath `json:"forwarded"`
	// OverheadP50 is forwarded's p50 less local's: the hop's cost.
	OverheadP50 float64 `json:"forward_overhead_p50_ms"`
	OverheadP99 float64 `json:"forward_overhead_p99_ms"`
	// DeadHost and Drain are the failure half, when asked for.
	DeadHost *deadHostResult `json:"dead_host,omitempty"`
	Drain    *drainResult    `json:"drain,omitempty"`
}

// clusterHost is one host as the bench calls it.
type clusterHost struct {
	node     string
	endpoint string
	id       string
	secret   string
	client   *lambda.Client
}

// noNetwork turns the function's network off (PUT
// /hearth/v1/functions/{name}/network-policy).
func noNetwork(ctx context.Context, h clusterHost, fn string) error {
	if err := hearthCall(ctx, h, http.MethodPut, "/functions/"+fn+"/network-policy", []byte(`{"Enabled":false}`), nil); err != nil {
		return fmt.Errorf("turning the function's network off: %w", err)
	}
	return nil
}

func (c *CLI) benchCluster(cmd *cobra.Command, f benchClusterFlags) error {
	ctx := cmd.Context()
	if f.n < 1 {
		return &exitError{code: ExitBadInput, err: errors.New("--count must be at least 1")}
	}
	zip, err := os.ReadFile(f.zip)
	if err != nil {
		return &exitError{code: ExitBadInput, err: err}
	}
	if f.deadRounds < 0 || f.drain < 0 {
		return &exitError{code: ExitBadInput, err: errors.New("--dead-rounds and --drain: 0 or more")}
	}
	var hosts []clusterHost
	var lc *loopbackCluster
	if len(f.endpoints) > 0 {
		if f.drain > 0 || cmd.Flags().Changed("dead-rounds") && f.deadRounds > 0 {
			return &exitError{code: ExitBadInput, err: errors.New("--dead-rounds and --drain kill and drain hosts: the loopback cluster only, not --endpoints")}
		}
		f.deadRounds = 0
		if len(f.endpoints) < 2 {
			return &exitError{code: ExitBadInput, err: errors.New("--endpoints: at least two hosts")}
		}
		id, secret, err := c.keys(cmd)
		if err != nil {
			return err
		}
		for _, e := range f.endpoints {
			e = strings.TrimRight(e, "/")
			hosts = append(hosts, clusterHost{endpoint: e, id: id, secret: secret, client: benchLambda(e, id, secret)})
		}
	} else {
		// The drain's environments suspend once idle a few seconds
		// (the forwarded one is never idle that long meanwhile).
		keepWarm := time.Hour
		if f.drain > 0 {
			keepWarm = 5 * time.Second
		}
		lc, err = c.startLoopbackCluster(cmd, f.host, 3, keepWarm)
		if err != nil {
			return err
		}
		defer lc.close()
		hosts = lc.hosts
	}
	const fn = "hearth-bench-cluster"
	first := hosts[0].client
	_, _ = first.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(fn)})
	if _, err := first.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(fn), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(60)}); err != nil {
		return apiError(err)
	}
	defer func() {
		_, _ = first.DeleteFunction(context.WithoutCancel(ctx), &lambda.DeleteFunctionInput{FunctionName: aws.String(fn)})
	}()
	// The function needs no network: its environments get none (and the
	// loopback hosts, which share this machine's, make none).
	if err := noNetwork(ctx, hosts[0], fn); err != nil {
		return err
	}
	// One environment, on the first host: every later call there is warm,
	// and every call through another host is forwarded to it.
	node, _, err := benchInvoke(ctx, first, fn)
	if err != nil {
		return fmt.Errorf("the first (cold) call: %w", err)
	}
	hosts[0].node = node
	// The others learn of the warm environment from its heartbeats (one a
	// second): before that, a call through them would start one there.
	time.Sleep(3 * time.Second)
	if err := waitForwarded(ctx, hosts, fn, node); err != nil {
		return err
	}
	res := benchClusterResult{Hosts: len(hosts),
		Local:     clusterPath{Path: "local", Via: node},
		Forwarded: clusterPath{Path: "forwarded", Via: "others"}}
	var local, fwd []float64
	for i := range f.n {
		for _, p := range []struct {
			h    clusterHost
			path *clusterPath
			lat  *[]float64
		}{{hosts[0], &res.Local, &local}, {hosts[1+i%(len(hosts)-1)], &res.Forwarded, &fwd}} {
			t0 := time.Now()
			ran, _, err := benchInvoke(ctx, p.h.client, fn)
			ms := msf(time.Since(t0))
			if err != nil {
				return fmt.Errorf("%s call %d: %w", p.path.Path, i+1, err)
			}
			p.path.RanOn = ran
			if ran != node {
				p.path.Misrouted++
			}
			*p.lat = append(*p.lat, ms)
		}
	}
	for _, p := range []struct {
		path *clusterPath
		lat  []float64
	}{{&res.Local, local}, {&res.Forwarded, fwd}} {
		var sum float64
		for _, x := range p.lat {
			sum += x
		}
		p.path.N, p.path.P50, p.path.P99, p.path.Mean = len(p.lat), round2(percentile(p.lat, 50)), round2(percentile(p.lat, 99)), round2(sum/float64(len(p.lat)))
	}
	res.OverheadP50 = round2(res.Forwarded.P50 - res.Local.P50)
	res.OverheadP99 = round2(res.Forwarded.P99 - res.Local.P99)
	// Its environment goes before the failure half (a drain would move
	// it too, once suspended).
	if _, err := first.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(fn)}); err != nil {
		return apiError(err)
	}
	if f.deadRounds > 0 {
		if res.DeadHost, err = c.benchDeadHost(ctx, lc, f); err != nil {
			return fmt.Errorf("dead host: %w", err)
		}
	}
	if f.drain > 0 {
		if res.Drain, err = c.benchDrain(ctx, hosts, zip, f.drain); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
	}
	if f.json {
		return json.NewEncoder(c.Stdout).Encode(res)
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PATH\tRAN ON\tREQUESTS\tMISROUTED\tP50 MS\tP99 MS\tMEAN MS\n")
	for _, p := range []clusterPath{res.Local, res.Forwarded} {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.2f\n", p.Path, p.RanOn, p.N, p.Misrouted, p.P50, p.P99, p.Mean)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "forwarding adds %.2f ms at p50, %.2f ms at p99 (%d hosts)\n", res.OverheadP50, res.OverheadP99, res.Hosts)
	if d := res.DeadHost; d != nil {
		fmt.Fprintf(c.Stdout, "a host killed -9 is reported down by every other in %.2f s at p50, %.2f s at most (first: %.2f s at p50; %d rounds: %v s)\n",
			d.P50, d.Max, d.FirstP50, d.Rounds, d.AllDown)
	}
	if d := res.Drain; d != nil {
		fmt.Fprintf(c.Stdout, "drain of %d suspended environments: %d moved, %d dropped, %.2f s from the request to the last; each move %.2f s at p50, %.2f s at most; %.1f MB shipped; the next call ran on %s (%s)\n",
			d.Envs, d.Moved, d.Dropped, d.Total, d.PerEnvP50, d.PerEnvMax, d.MB, d.ThenRanOn, d.ThenStart)
	}
	return nil
}

// benchInvoke is one call; it returns the host that ran it and the start
// type.
func benchInvoke(ctx context.Context, cl *lambda.Client, fn string) (node, start string, err error) {
	out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: []byte(`{"name":"cluster"}`)})
	if err != nil {
		return "", "", apiError(err)
	}
	if out.FunctionError != nil {
		return "", "", fmt.Errorf("function error: %s", out.Payload)
	}
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		node, start = raw.Header.Get(api.NodeHeader), raw.Header.Get("X-Hearth-Start-Type")
	}
	if node == "" {
		return "", "", errors.New("the host did not say where the call ran (a standalone daemon, or one without routing)")
	}
	return node, start, nil
}

// waitForwarded waits until a call through each other host runs on node
// (their view of its warm environment comes with its heartbeats).
func waitForwarded(ctx context.Context, hosts []clusterHost, fn, node string) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, h := range hosts[1:] {
		for {
			ran, _, err := benchInvoke(ctx, h.client, fn)
			if err != nil {
				return err
			}
			if ran == node {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("calls through another host still run on %s, not forwarded to %s", ran, node)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func benchLambda(endpoint, id, secret string) *lambda.Client {
	return lambda.New(lambda.Options{BaseEndpoint: aws.String(endpoint), Region: "local", RetryMaxAttempts: 1,
		HTTPClient:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, "")})
}

// loopbackCluster is hosts started in this process as one cluster on
// loopback, for the bench.
type loopbackCluster struct {
	srvs   []*server.Server
	dirs   []string
	hosts  []clusterHost
	name   string
	routes []string
}

func (l *loopbackCluster) close() {
	var wg sync.WaitGroup
	for i, s := range l.srvs {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Shutdown(context.Background())
			_ = network.RemoveEnvNetworks(filepath.Join(l.dirs[i], "envs"))
		}()
	}
	wg.Wait()
	for _, d := range l.dirs {
		_ = os.RemoveAll(d)
	}
}

// startLoopbackCluster starts n hosts (a, b, …) in this process, routed
// to each other on loopback ports, with the same keys.
func (c *CLI) startLoopbackCluster(cmd *cobra.Command, hf hostFlags, n int, keepWarm time.Duration) (*loopbackCluster, error) {
	ctx := cmd.Context()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		ln.Close() // free again for the host's routes

	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	l := &loopbackCluster{srvs: make([]*server.Server, n), name: "bench", routes: routes}
	for range n {
		d, err := os.MkdirTemp("", "hearth-bench-cluster-")
		if err != nil {
			l.close()
			return nil, err
		}
		l.dirs = append(l.dirs, d)
	}
	// One key for every host, as an operator copies the credentials file.
	secret := make([]byte, 20)
	if _, err := rand.Read(secret); err != nil {
		l.close()
		return nil, err
	}
	key := fmt.Sprintf("[default]\naws_access_key_id = AKIABENCHCLUSTER%04d\naws_secret_access_key = %s\n", os.Getpid()%10000, hex.EncodeToString(secret))
	for _, d := range l.dirs {
		if err := os.WriteFile(server.CredentialsFile(d), []byte(key), 0o600); err != nil {
			l.close()
			return nil, err
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := string(rune('a' + i))
			srv, err := server.New(ctx, server.Config{DataDir: l.dirs[i], Listen: "127.0.0.1:0", KeepWarm: keepWarm, KeepPaused: -1, Log: c.logger(cmd),
				Host:    vmboot.Options{Kernel: hf.kernel, Agent: hf.agent, Accel: hf.accel, QEMU: c.Getenv("HEARTH_QEMU"), CacheDir: c.cacheDir()},
				Cluster: server.ClusterOptions{Name: l.name, Node: node, Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes}})
			if err != nil {
				errs[i] = fmt.Errorf("host %s: %w", node, err)
				return
			}
			l.srvs[i] = srv
			if err := srv.Start(ctx); err != nil {
				errs[i] = fmt.Errorf("host %s: %w", node, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		l.close()
		return nil, err
	}
	profiles, err := server.ReadCredentials(server.CredentialsFile(l.dirs[0]))
	if err != nil || len(profiles) == 0 {
		l.close()
		return nil, fmt.Errorf("the bench's keys: %v", err)
	}
	for i, s := range l.srvs {
		p := profiles[0]
		l.hosts = append(l.hosts, clusterHost{node: string(rune('a' + i)), endpoint: "http://" + s.Addr(), id: p.AccessKeyID, secret: p.SecretAccessKey,
			client: benchLambda("http://"+s.Addr(), p.AccessKeyID, p.SecretAccessKey)})
	}
	return l, nil
}
