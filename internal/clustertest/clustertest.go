// Package clustertest runs several `hearth serve` processes as one cluster,
// for tests: each host in a network namespace of its own with its own
// address, all joined by a bridge in a namespace of its own, and the test
// process linked to that bridge by one veth, so that traffic flows only
// among the hosts and the test. Data folders are in t.TempDir(). When the
// test ends every process is stopped (killed by its PID if it does not
// stop), every QEMU it left is killed by its PID, and every namespace and
// link the harness made is removed. It needs root and ip(8); tests that
// use it boot VMs, so they run under the VM lock.
package clustertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
)

// Ports every host listens on, each on its own address.
const (
	APIPort     = 9000
	URLPort     = 9080
	S3Port      = 9001
	ClusterPort = 6222
)

// Options say what cluster to run.
type Options struct {
	// Hosts is how many (3 when zero: JetStream's quorum wants three).
	Hosts int
	// Hearth is the binary; testvm.Hearth's when empty.
	Hearth string
	// Args are more `hearth serve` flags, for every host.
	Args []string
	// StartTimeout bounds the wait for every host to serve and see the
	// others up (3 min when zero: three daemons start on two cores).
	StartTimeout time.Duration
}

// Host is one `hearth serve` of the cluster.
type Host struct {
	Node  string
	Addr  netip.Addr
	Netns string
	Data  string
	// API and URL are the Lambda API's and the function URLs' base
	// (http://addr:port).
	API, URL string
	// S3 is the S3 endpoint's base URL.
	S3 string
	// Keys are the host's access keys (the same on every host).
	Keys server.Profile
	// LogPath is the daemon's stderr.
	LogPath string

	args []string
	// extra are flags added to args from the next Start on (SetArgs).
	extra []string
	hb    string // the binary
	link  string // its veth's end on the bridge

	mu  sync.Mutex
	cmd *exec.Cmd
	// vms are the QEMUs seen under the daemon, killed by PID if they
	// outlive it.
	vms map[int]bool
}

// Cluster is the hosts and what joins them.
type Cluster struct {
	Hosts []*Host
	// Prefix is the hosts' network; TestAddr the test process's address
	// on it.
	Prefix   netip.Prefix
	TestAddr netip.Addr

	id       string
	bridgeNS string
	testLink string
}

// Start makes the namespaces and links, starts every host and returns
// once each serves and sees every host up. Everything is undone when t
// ends.
func Start(t *testing.T, o Options) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("clustertest needs root (network namespaces)")
	}
	if o.Hosts == 0 {
		o.Hosts = 3
	}
	if o.Hosts > 26 {
		t.Fatalf("clustertest: at most 26 hosts")
	}
	if o.Hearth == "" {
		o.Hearth = testvm.Hearth(t)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 3 * time.Minute
	}
	c := &Cluster{id: randomHex(t, 3)}
	c.bridgeNS = "hearth-ct-" + c.id + "-br"
	c.testLink = "hct" + c.id + "t"
	var err error
	if c.Prefix, err = freePrefix(); err != nil {
		t.Fatal(err)
	}
	c.TestAddr = c.Prefix.Addr().Next()
	// The folders first: t.TempDir's removal then comes after the
	// teardown (cleanups run last first), once the daemons are gone.
	work := t.TempDir()
	datas := make([]string, o.Hosts)
	for i := range datas {
		datas[i] = t.TempDir()
	}
	t.Cleanup(func() { c.teardown(t) })
	if err := c.network(o.Hosts); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(work, "cluster-secret")
	if err := os.WriteFile(secret, []byte(randomHex(t, 16)), 0o600); err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, h := range c.Hosts {
		routes = append(routes, fmt.Sprintf("nats://%s:%d", h.Addr, ClusterPort))
	}
	logs := work
	// The same keys on every host, as an operator copies the credentials
	// file (each host publishes it to the cluster; one key for all keeps
	// the clients simple).
	keys := server.Profile{Name: "default", AccessKeyID: "AKIACLUSTERTEST" + strings.ToUpper(randomHex(t, 2))[:1], SecretAccessKey: randomHex(t, 20)}
	for i, h := range c.Hosts {
		h.Data = datas[i]
		creds := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", keys.AccessKeyID, keys.SecretAccessKey)
		if err := os.WriteFile(server.CredentialsFile(h.Data), []byte(creds), 0o600); err != nil {
			t.Fatal(err)
		}
		h.LogPath = filepath.Join(logs, h.Node+".log")
		h.hb = o.Hearth
		h.API = fmt.Sprintf("http://%s:%d", h.Addr, APIPort)
		h.URL = fmt.Sprintf("http://%s:%d", h.Addr, URLPort)
		h.S3 = fmt.Sprintf("http://%s:%d", h.Addr, S3Port)
		h.args = append([]string{"serve", "--data-dir", h.Data, "--accel", "tcg",
			"--listen", fmt.Sprintf("%s:%d", h.Addr, APIPort),
			"--url-listen", fmt.Sprintf("%s:%d", h.Addr, URLPort), "--url-tls-listen", "", "--s3-listen", fmt.Sprintf("%s:%d", h.Addr, S3Port),
			"--cluster-name", "ct" + c.id, "--node", h.Node, "--cluster-listen", fmt.Sprintf("%s:%d", h.Addr, ClusterPort),
			"--routes", strings.Join(routes, ","), "--cluster-secret-file", secret}, o.Args...)
	}
	// All at once: the first host waits for a quorum.
	for _, h := range c.Hosts {
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range c.Hosts {
				t.Logf("--- %s's log (last 40 lines; all of it in %s) ---\n%s", h.Node, c.keepLog(h), tail(h.LogPath, 40))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), o.StartTimeout)
	defer cancel()
	for _, h := range c.Hosts {
		if err := h.WaitServing(ctx); err != nil {
			t.Fatalf("host %s: %v", h.Node, err)
		}
		p, err := server.ReadCredentials(server.CredentialsFile(h.Data))
		if err != nil || len(p) == 0 {
			t.Fatalf("host %s: credentials: %v", h.Node, err)
		}
		h.Keys = p[0]
	}
	for _, h := range c.Hosts {
		if err := c.WaitUp(ctx, h, len(c.Hosts)); err != nil {
			t.Fatalf("host %s: %v", h.Node, err)
		}
	}
	return c
}

// network makes the bridge namespace, the test's veth to it, and each
// host's namespace with its veth.
func (c *Cluster) network(n int) error {
	br := c.bridgeNS
	steps := [][]string{
		{"netns", "add", br},
		{"-n", br, "link", "set", "lo", "up"},
		{"-n", br, "link", "add", "br0", "type", "bridge"},
		{"-n", br, "link", "set", "br0", "up"},
		{"link", "add", c.testLink, "type", "veth", "peer", "name", c.testLink + "p"},
		{"link", "set", c.testLink + "p", "netns", br},
		{"-n", br, "link", "set", c.testLink + "p", "master", "br0", "up"},
		{"addr", "add", netip.PrefixFrom(c.TestAddr, c.Prefix.Bits()).String(), "dev", c.testLink},
		{"link", "set", c.testLink, "up"},
	}
	if err := ipAll(steps); err != nil {
		return err
	}
	addr := c.TestAddr
	for i := range n {
		addr = addr.Next()
		node := string(rune('a' + i))
		h := &Host{Node: node, Addr: addr, Netns: "hearth-ct-" + c.id + "-" + node, link: "hct" + c.id + node, vms: map[int]bool{}}
		c.Hosts = append(c.Hosts, h)
		steps := [][]string{
			{"netns", "add", h.Netns},
			{"-n", h.Netns, "link", "set", "lo", "up"},
			{"link", "add", h.link, "type", "veth", "peer", "name", h.link + "p"},
			{"link", "set", h.link, "netns", br},
			{"-n", br, "link", "set", h.link, "master", "br0", "up"},
			{"link", "set", h.link + "p", "netns", h.Netns},
			{"-n", h.Netns, "link", "set", h.link + "p", "name", "eth0"},
			{"-n", h.Netns, "addr", "add", netip.PrefixFrom(addr, c.Prefix.Bits()).String(), "dev", "eth0"},
			{"-n", h.Netns, "link", "set", "eth0", "up"},
		}
		if err := ipAll(steps); err != nil {
			return err
		}
	}
	return nil
}

// Partition cuts h off the bridge (its link down): it reaches neither
// the other hosts nor the test; Heal joins it again.
func (c *Cluster) Partition(h *Host) error {
	return ip("-n", c.bridgeNS, "link", "set", h.link, "down")
}

// Heal undoes Partition.
func (c *Cluster) Heal(h *Host) error {
	return ip("-n", c.bridgeNS, "link", "set", h.link, "up")
}

// Start starts the host's daemon (again, after Kill or Stop), in its
// namespace; WaitServing waits until it answers.
func (h *Host) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		return fmt.Errorf("host %s already runs (pid %d)", h.Node, h.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	// nsenter enters the network namespace only (not a mount namespace,
	// as `ip netns exec` would), so the environments' namespaces the
	// daemon names stay visible to the test's cleanup; it execs the
	// daemon, so the PID is the daemon's.
	args := append(append([]string{"--net=/run/netns/" + h.Netns, "--", h.hb}, h.args...), h.extra...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %s: %w", h.Node, err)
	}
	h.cmd = cmd
	go h.watchVMs(cmd)
	return nil
}

// SetArgs sets flags added to the host's `hearth serve` from its next
// Start on (replacing those set before): a restart as another release.
func (h *Host) SetArgs(extra ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.extra = extra
}

// WaitExit waits up to d for a daemon that ends on its own (one refused at
// start) and returns its exit code; one still running after d is killed
// and reported as an error.
func (h *Host) WaitExit(d time.Duration) (int, error) {
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil {
		return 0, fmt.Errorf("host %s does not run", h.Node)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		h.mu.Lock()
		h.cmd = nil
		h.mu.Unlock()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), nil
		}
		return 0, err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		h.mu.Lock()
		h.cmd = nil
		h.mu.Unlock()
		return 0, fmt.Errorf("host %s still ran after %s: killed", h.Node, d)
	}
}

// PID is the daemon's process id (0 when it does not run).
func (h *Host) PID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// watchVMs notes the QEMUs the daemon starts, so that any it leaves
// behind is killed by its PID.
func (h *Host) watchVMs(cmd *exec.Cmd) {
	for {
		h.mu.Lock()
		if h.cmd != cmd {
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		for _, pid := range qemuChildren(cmd.Process.Pid) {
			h.mu.Lock()
			h.vms[pid] = true
			h.mu.Unlock()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitServing waits until the host's API answers /healthz.
func (h *Host) WaitServing(ctx context.Context) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.API+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if h.PID() == 0 || !testvm.Alive(h.PID()) {
			return fmt.Errorf("the daemon exited:\n%s", tail(h.LogPath, 20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not serving: %w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Kill kills the daemon with SIGKILL (by its PID) and waits for it.
func (h *Host) Kill() error { return h.end(syscall.SIGKILL, 0) }

// Stop stops the daemon with SIGINT (a clean stop: warm environments are
// suspended), killing it after 60 s.
func (h *Host) Stop() error { return h.end(syscall.SIGINT, time.Minute) }

func (h *Host) end(sig syscall.Signal, grace time.Duration) error {
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	for _, pid := range qemuChildren(cmd.Process.Pid) {
		h.mu.Lock()
		h.vms[pid] = true
		h.mu.Unlock()
	}
	_ = cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	if grace > 0 {
		select {
		case err = <-done:
		case <-time.After(grace):
			// Its goroutines into its log first, to show where it hangs.
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				err = <-done
			}
			err = fmt.Errorf("host %s did not stop in %s: killed (%v)", h.Node, grace, err)
		}
	} else {
		<-done
	}
	h.mu.Lock()
	h.cmd = nil
	vms := h.vms
	h.vms = map[int]bool{}
	h.mu.Unlock()
	// A QEMU dies with its daemon (a pipe it holds closes); give it a
	// moment, then kill what is left by PID.
	deadline := time.Now().Add(10 * time.Second)
	for pid := range vms {
		for testvm.Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if testvm.Alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			err = errors.Join(err, fmt.Errorf("host %s: QEMU %d outlived its daemon: killed", h.Node, pid))
		}
	}
	if sig == syscall.SIGINT {
		if _, ok := err.(*exec.ExitError); ok {
			err = nil // a signal's exit status
		}
	}
	return err
}

// Lambda is an aws-sdk-go-v2 Lambda client of h's API, with h's keys.
func (h *Host) Lambda() *lambda.Client {
	return lambda.New(lambda.Options{BaseEndpoint: aws.String(h.API), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(h.Keys.AccessKeyID, h.Keys.SecretAccessKey, "")})
}

// Status is the cluster as h sees it (GET /hearth/v1/cluster).
func (h *Host) Status(ctx context.Context) (api.ClusterStatus, error) {
	var st api.ClusterStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.API+"/hearth/v1/cluster", nil)
	if err != nil {
		return st, err
	}
	const emptySum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	req.Header.Set("X-Amz-Content-Sha256", emptySum)
	creds := aws.Credentials{AccessKeyID: h.Keys.AccessKeyID, SecretAccessKey: h.Keys.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, emptySum, "lambda", "local", time.Now()); err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("cluster status: %d %s", resp.StatusCode, b)
	}
	return st, json.Unmarshal(b, &st)
}

// WaitUp waits until h sees n hosts up, each with its API address (a
// host tells it once it listens).
func (c *Cluster) WaitUp(ctx context.Context, h *Host, n int) error {
	return c.WaitFor(ctx, h, fmt.Sprintf("%d hosts up", n), func(st api.ClusterStatus) bool {
		up := 0
		for _, hs := range st.Hosts {
			if hs.State == cluster.StateUp && hs.API != "" {
				up++
			}
		}
		return up >= n
	})
}

// WaitFor waits until the cluster as h sees it satisfies ok.
func (c *Cluster) WaitFor(ctx context.Context, h *Host, what string, ok func(api.ClusterStatus) bool) error {
	var last api.ClusterStatus
	var err error
	for {
		last, err = h.Status(ctx)
		if err == nil && ok(last) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s as %s sees it: %w (last status %+v, err %v)", what, h.Node, ctx.Err(), last.Hosts, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Host returns the host named node, or nil.
func (c *Cluster) Host(node string) *Host {
	for _, h := range c.Hosts {
		if h.Node == node {
			return h
		}
	}
	return nil
}

// teardown stops every host, kills what is left by PID, and removes the
// environments' namespaces, the hosts', the bridge's and the test's link.
func (c *Cluster) teardown(t *testing.T) {
	var wg sync.WaitGroup
	for _, h := range c.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.Stop(); err != nil {
				t.Logf("host %s's log: %s\n%s", h.Node, c.keepLog(h), tail(h.LogPath, 30))
				t.Errorf("stopping host %s: %v", h.Node, err)
			}
			if h.Data != "" {
				// The environments' namespaces a daemon keeps for the next
				// one (its suspended environments').
				_ = network.RemoveEnvNetworks(filepath.Join(h.Data, "envs"))
			}
		}()
	}
	wg.Wait()
	var errs []error
	for _, h := range c.Hosts {
		errs = append(errs, delNetns(h.Netns))
	}
	errs = append(errs, delNetns(c.bridgeNS))
	// The test's link went with its peer in the bridge namespace; make
	// sure.
	if exec.Command("ip", "link", "show", c.testLink).Run() == nil {
		errs = append(errs, ip("link", "del", c.testLink))
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("clustertest cleanup: %v", err)
	}
}

func delNetns(name string) error {
	if _, err := os.Stat("/run/netns/" + name); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return ip("netns", "del", name)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func ipAll(steps [][]string) error {
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// freePrefix picks a /24 in 10.213.0.0/16 that no address or route of
// this machine uses.
func freePrefix() (netip.Prefix, error) {
	out, err := exec.Command("sh", "-c", "ip -4 -o addr show; ip -4 route show table all").CombinedOutput()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("listing addresses and routes: %w: %s", err, out)
	}
	used := string(out)
	var b [1]byte
	for range 64 {
		if _, err := rand.Read(b[:]); err != nil {
			return netip.Prefix{}, err
		}
		p := netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", b[0]))
		if !strings.Contains(used, fmt.Sprintf("10.213.%d.", b[0])) && !strings.Contains(used, "10.213.0.0/16") {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("no free /24 in 10.213.0.0/16")
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// qemuChildren lists the QEMU processes (alive) whose parent is pid.
func qemuChildren(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "qemu") {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) > 1 && f[0] != "Z" && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// keepLog copies h's log out of the test's folder (removed at its end)
// into the temp folder, for a look after a failure, and says where.
func (c *Cluster) keepLog(h *Host) string {
	keep := filepath.Join(os.TempDir(), fmt.Sprintf("clustertest-%s-%s.log", c.id, h.Node))
	b, err := os.ReadFile(h.LogPath)
	if err == nil {
		err = os.WriteFile(keep, b, 0o600)
	}
	if err != nil {
		return err.Error()
	}
	return keep
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
