package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/server"
)

// The bench's failure half: how long the others take to report a host
// killed -9 down, and how long a drain takes to move N suspended
// environments.

// deadHostResult is `hearth bench cluster --json`'s dead_host.
type deadHostResult struct {
	Rounds int `json:"rounds"`
	// AllDown is, per round, the seconds from the kill until every other
	// host reports the killed one down; FirstDown until the first does.
	AllDown   []float64 `json:"all_down_s"`
	FirstDown []float64 `json:"first_down_s"`
	P50       float64   `json:"all_down_p50_s"`
	Max       float64   `json:"all_down_max_s"`
	FirstP50  float64   `json:"first_down_p50_s"`
}

// drainResult is `hearth bench cluster --json`'s drain.
type drainResult struct {
	Envs    int `json:"envs"`
	Moved   int `json:"moved"`
	Dropped int `json:"dropped"`
	// Total is the seconds from the drain request until the drained
	// host reports every environment moved or dropped.
	Total float64 `json:"total_s"`
	// PerEnv are the moves as the drained host timed them (offer,
	// upload, adoption).
	PerEnv    []cluster.DrainMove `json:"per_env"`
	PerEnvP50 float64             `json:"per_env_p50_s"`
	PerEnvMax float64             `json:"per_env_max_s"`
	MB        float64             `json:"shipped_mb"`
	// Then is one call after the drain: where it ran and how it started
	// (resume: the moved environment, memory and all).
	ThenRanOn string `json:"then_ran_on"`
	ThenStart string `json:"then_start_type"`
}

// hearthCall sends a signed request to h's /hearth/v1 API and decodes
// the answer into out (when not nil).
func hearthCall(ctx context.Context, h clusterHost, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, h.endpoint+"/hearth/v1"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hash)
	req.Header.Set("Content-Type", "application/json")
	if err := v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: h.id, SecretAccessKey: h.secret}, req, hash, "lambda", "local", time.Now()); err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

func clusterStatusOf(ctx context.Context, h clusterHost) (api.ClusterStatus, error) {
	var st api.ClusterStatus
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := hearthCall(cctx, h, http.MethodGet, "/cluster", nil, &st)
	return st, err
}

func hostIn(st api.ClusterStatus, node string) (cluster.HostStatus, bool) {
	for _, h := range st.Hosts {
		if h.Node == node {
			return h, true
		}
	}
	return cluster.HostStatus{}, false
}

// waitStatus polls every observer until ok holds for node in each one's
// view, and returns when it first held in each (by observer).
func waitStatus(ctx context.Context, observers []clusterHost, node string, within time.Duration, ok func(cluster.HostStatus) bool) ([]time.Time, error) {
	at := make([]time.Time, len(observers))
	deadline := time.Now().Add(within)
	for {
		left := 0
		for i, o := range observers {
			if !at[i].IsZero() {
				continue
			}
			st, err := clusterStatusOf(ctx, o)
			if err == nil {
				if h, found := hostIn(st, node); found && ok(h) {
					at[i] = time.Now()
					continue
				}
			}
			left++
		}
		if left == 0 {
			return at, nil
		}
		if time.Now().After(deadline) {
			return at, fmt.Errorf("after %s, %d of %d hosts still do not see %s so", within, left, len(observers), node)
		}
		select {
		case <-ctx.Done():
			return at, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// victim is one more host, run as its own `hearth serve` process so that
// its death is a real kill -9 (no clean stop, no last heartbeat).
type victim struct {
	bin  string
	args []string
	dir  string
	log  string
	cmd  *exec.Cmd
}

func (v *victim) start() error {
	logf, err := os.OpenFile(v.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(v.bin, v.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the victim host: %w", err)
	}
	v.cmd = cmd
	return nil
}

func (v *victim) kill() {
	if v.cmd == nil {
		return
	}
	_ = v.cmd.Process.Kill()
	_ = v.cmd.Wait()
	v.cmd = nil
}

// benchDeadHost starts one more host (node "v") as a process routed to the
// loopback cluster, and for each round waits until every host sees it up,
// kills it -9 and times until they report it down; it starts again (on
// the same data folder, as a host restarted after a crash) for the next.
func (c *CLI) benchDeadHost(ctx context.Context, lc *loopbackCluster, f benchClusterFlags) (*deadHostResult, error) {
	bin := f.hearth
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("--hearth: %w", err)
		}
		bin = exe
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "hearth-bench-victim-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	key, err := os.ReadFile(server.CredentialsFile(lc.dirs[0]))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(server.CredentialsFile(dir), key, 0o600); err != nil {
		return nil, err
	}
	const node = "v"
	routes := append(slices.Clone(lc.routes), fmt.Sprintf("nats://127.0.0.1:%d", port))
	args := []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--url-listen", "", "--url-tls-listen", "", "--s3-listen", "",
		"--cluster-name", lc.name, "--node", node, "--cluster-listen", fmt.Sprintf("127.0.0.1:%d", port), "--routes", joinComma(routes)}
	if f.host.kernel != "" {
		args = append(args, "--kernel", f.host.kernel)
	}
	if f.host.agent != "" {
		args = append(args, "--agent", f.host.agent)
	}
	if f.host.accel != "" {
		args = append(args, "--accel", f.host.accel)
	}
	v := &victim{bin: bin, args: args, dir: dir, log: filepath.Join(dir, "serve.log")}
	defer v.kill()
	res := &deadHostResult{Rounds: f.deadRounds}
	for round := range f.deadRounds {
		if err := v.start(); err != nil {
			return nil, err
		}
		if _, err := waitStatus(ctx, lc.hosts, node, 2*time.Minute, func(h cluster.HostStatus) bool { return h.State == cluster.StateUp }); err != nil {
			log, _ := os.ReadFile(v.log)
			return nil, fmt.Errorf("round %d: the victim host never came up: %w\n%s", round+1, err, tail(log, 2000))
		}
		// A few heartbeats in the steady state.
		time.Sleep(3 * time.Second)
		killed := time.Now()
		v.kill()
		at, err := waitStatus(ctx, lc.hosts, node, time.Minute, func(h cluster.HostStatus) bool { return h.State == cluster.StateDown })
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", round+1, err)
		}
		first, all := at[0], at[0]
		for _, t := range at {
			first, all = minTime(first, t), maxTime(all, t)
		}
		res.FirstDown = append(res.FirstDown, round2(first.Sub(killed).Seconds()))
		res.AllDown = append(res.AllDown, round2(all.Sub(killed).Seconds()))
	}
	res.P50, res.Max, res.FirstP50 = round2(percentile(res.AllDown, 50)), round2(slices.Max(res.AllDown)), round2(percentile(res.FirstDown, 50))
	return res, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func joinComma(ss []string) string {
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
	}
	return b.String()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// setDrain drains node (or undoes it) through h, and waits until every
// host sees the host obey.
func setDrain(ctx context.Context, hosts []clusterHost, via clusterHost, node string, on bool) error {
	body, _ := json.Marshal(api.DrainRequest{Draining: &on})
	if err := hearthCall(ctx, via, http.MethodPost, "/cluster/hosts/"+node+"/drain", body, nil); err != nil {
		return err
	}
	_, err := waitStatus(ctx, hosts, node, 30*time.Second, func(h cluster.HostStatus) bool { return h.Draining == on })
	return err
}

// benchDrain puts N suspended environments of a function on the first
// host and drains it: the time until all are moved, and each move's.
func (c *CLI) benchDrain(ctx context.Context, hosts []clusterHost, zip []byte, n int) (*drainResult, error) {
	const fn = "hearth-bench-drain"
	a := hosts[0]
	_, _ = a.client.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(fn)})
	if _, err := a.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(fn), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(60)}); err != nil {
		return nil, apiError(err)
	}
	defer func() {
		_, _ = a.client.DeleteFunction(context.WithoutCancel(ctx), &lambda.DeleteFunctionInput{FunctionName: aws.String(fn)})
	}()
	if err := noNetwork(ctx, a, fn); err != nil {
		return nil, err
	}
	// Every cold start on the first host: the others drained meanwhile
	// (a drained host starts no environment).
	for _, h := range hosts[1:] {
		if err := setDrain(ctx, hosts, a, h.node, true); err != nil {
			return nil, err
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ran, _, err := benchInvoke(ctx, a.client, fn)
			if err == nil && ran != a.node {
				err = fmt.Errorf("ran on %s, not %s", ran, a.node)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("the %d cold starts: %w", n, err)
	}
	for _, h := range hosts[1:] {
		if err := setDrain(ctx, hosts, a, h.node, false); err != nil {
			return nil, err
		}
	}
	// They suspend once idle (the loopback hosts keep them warm a few
	// seconds, then suspend them).
	if _, err := waitStatus(ctx, hosts[:1], a.node, 3*time.Minute, func(h cluster.HostStatus) bool {
		return h.Load.Functions[fn].Suspended == n
	}); err != nil {
		return nil, fmt.Errorf("waiting for %d suspended environments: %w", n, err)
	}
	res := &drainResult{Envs: n}
	start := time.Now()
	body, _ := json.Marshal(api.DrainRequest{})
	if err := hearthCall(ctx, hosts[1], http.MethodPost, "/cluster/hosts/"+a.node+"/drain", body, nil); err != nil {
		return nil, err
	}
	var prog *cluster.DrainProgress
	deadline := time.Now().Add(10 * time.Minute)
	for {
		// The drained host's own view: its progress is current there.
		st, err := clusterStatusOf(ctx, a)
		if err == nil {
			if h, ok := hostIn(st, a.node); ok && h.Drain != nil && h.Drain.State == cluster.DrainDone && h.Drain.Moved+h.Drain.Dropped >= n {
				prog = h.Drain
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the drain of %s did not end within 10 min", a.node)
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.Total = round2(time.Since(start).Seconds())
	res.Moved, res.Dropped = prog.Moved, prog.Dropped
	var secs []float64
	var bytes int64
	for _, mv := range prog.Recent {
		if mv.Function != fn {
			continue
		}
		res.PerEnv = append(res.PerEnv, mv)
		secs = append(secs, mv.Seconds)
		bytes += mv.Bytes
	}
	if len(secs) > 0 {
		res.PerEnvP50, res.PerEnvMax = round2(percentile(secs, 50)), round2(slices.Max(secs))
	}
	res.MB = round2(float64(bytes) / (1 << 20))
	// The first host takes work again; a call now resumes a moved
	// environment where it went.
	if err := setDrain(ctx, hosts, hosts[1], a.node, false); err != nil {
		return nil, err
	}
	ran, startType, err := benchInvoke(ctx, hosts[1].client, fn)
	if err != nil {
		return nil, fmt.Errorf("the call after the drain: %w", err)
	}
	res.ThenRanOn, res.ThenStart = ran, startType
	return res, nil
}
