package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	mvc "github.com/hearthdev/hearth/client/microvm"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/ociimage"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/vmboot"
	"github.com/hearthdev/hearth/internal/vmm"
)

// benchMicroVMImage is the name of the image the bench builds in its daemon.
const benchMicroVMImage = "bench"

type benchMicroVMFlags struct {
	host      hostFlags
	image     string
	hookPort  int
	exec      []string
	runs      int
	suspended int
	memory    int
	json      bool
}

func (c *CLI) benchMicroVMCmd() *cobra.Command {
	var f benchMicroVMFlags
	cmd := &cobra.Command{
		Use:   "microvm",
		Short: "Measure MicroVMs: run, request after auto-resume vs cold boot, exec, and the host cost of suspended ones, in one run",
		Long: `Starts a daemon in this process (its own data folder, removed at the end),
builds a MicroVM image in it and measures, in one run on this machine:

  run        RunMicrovm through the API, to RUNNING (a clone of the image's
             template, its /run hook called), p50 and p90 over --runs
  request    GET / through the MicroVM's endpoint (token checked, proxied
             to port 8080) of a running MicroVM
  suspend    SuspendMicrovm through the API (its /suspend hook, snapshot)
  resume     GET / through the endpoint of a suspended MicroVM with
             autoResumeEnabled, to its answer: the endpoint resumes it
             (snapshot restore, /resume hook); its in-memory state is
             checked to be kept
             Both first (each MicroVM's first: a clone's memory is its
             template's, mapped privately, so its first suspend writes it
             out and its first resume gives it a memory file of its own)
             and again (a MicroVM suspended and resumed before)
  cold       a fresh VM of the same image booted directly (sandbox.Boot of
             the same root disk, memory, kernel, agent and network as the
             daemon gives MicroVMs) to the answer of its first GET / on
             port 8080: what a request would cost without snapshots
  exec       one exec round trip through the API (--exec; by default the
             test image's binary exiting 0) to its exit status
  suspended  --suspended MicroVMs run and suspended one after another: the
             QEMU processes of theirs left (expected 0), the daemon's RSS
             (this process's) before and after, the disk their folders
             use (du of data/microvms, per MicroVM) and the page cache of
             their memory files

The image is --image (an OCI reference the daemon pulls), or by default the
test image: internal/testmicrovm built statically with go build (so run it
from Hearth's source tree) and served from a registry in this process on
loopback.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.benchMicroVM(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.image, "image", "", "OCI reference of the image to measure (its app on port 8080); default: the test image, built here")
	cmd.Flags().IntVar(&f.hookPort, "hook-port", 9000, "the image's lifecycle hook port (0: no hooks)")
	cmd.Flags().StringSliceVar(&f.exec, "exec", []string{"/app/testmicrovm", "exit", "0"}, "the command exec'd to measure a round trip (argv, comma-separated)")
	cmd.Flags().IntVar(&f.runs, "runs", 10, "measurements of run, request, suspend, resume, cold boot and exec")
	cmd.Flags().IntVar(&f.suspended, "suspended", 100, "suspended MicroVMs whose host cost is measured (0 skips it)")
	cmd.Flags().IntVar(&f.memory, "memory", 256, "the image's memory in MiB")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}

// microVMBench is one run's measurements: latencies in milliseconds per
// sample.
type microVMBench struct {
	Image     string
	Accel     string
	Kernel    string
	MemoryMiB int
	Network   bool // MicroVMs and the cold boots have a network
	BuildMs   float64

	Run, Request, Cold, Exec []float64
	// A MicroVM's first suspend and resume, and later ones: a clone maps
	// its template's memory privately, so its first suspend writes its
	// memory out and its first resume makes it a memory file of its own.
	SuspendFirst, ResumeFirst, Suspend, Resume []float64

	Suspended suspendedCost
}

// suspendedCost is the host's cost of Count suspended MicroVMs.
type suspendedCost struct {
	Count int `json:"count"`
	// QEMUProcesses is how many of their QEMU processes are alive once
	// they are suspended.
	QEMUProcesses int `json:"qemu_processes"`
	// HostQEMUBefore and HostQEMUAfter count every qemu-system process of
	// this host before they were run and once they are suspended.
	HostQEMUBefore int `json:"host_qemu_processes_before"`
	HostQEMUAfter  int `json:"host_qemu_processes_after"`
	// The daemon's (this process's) resident memory, after a GC that
	// returns free memory to the OS.
	DaemonRSSBeforeKiB int64 `json:"daemon_rss_before_kib"`
	DaemonRSSAfterKiB  int64 `json:"daemon_rss_after_kib"`
	// DiskBytes is what data/microvms grew by (du: allocated blocks).
	DiskBytes    int64 `json:"disk_bytes"`
	PageCacheKiB int64 `json:"memory_page_cache_kib"`
	// TemplateDiskBytes is the image's template (and test VM) folders,
	// shared by every MicroVM of it.
	TemplateDiskBytes int64 `json:"template_disk_bytes"`
}

// benchRow is one measured latency of the table, in its order.
type benchRow struct {
	key, label string
	ms         []float64
}

func (b *microVMBench) rows() []benchRow {
	return []benchRow{
		{"run", "run (RunMicrovm, from the template)", b.Run},
		{"request", "request, running", b.Request},
		{"suspend_first", "suspend, first (SuspendMicrovm)", b.SuspendFirst},
		{"resume_request_first", "request after auto-resume, first", b.ResumeFirst},
		{"suspend_again", "suspend, again", b.Suspend},
		{"resume_request_again", "request after auto-resume, again", b.Resume},
		{"cold_boot", "cold boot to first response", b.Cold},
		{"exec", "exec round trip", b.Exec},
	}
}

// ratio is the p50 of a over the p50 of b, 0 when b has none.
func ratio(a, b []float64) float64 {
	if percentile(b, 50) == 0 {
		return 0
	}
	return round2(percentile(a, 50) / percentile(b, 50))
}

// perMicroVM divides a total by the count of MicroVMs, 0 when none.
func perMicroVM(total int64, n int) int64 {
	if n <= 0 {
		return 0
	}
	return total / int64(n)
}

// summary is the JSON object --json prints.
func (b *microVMBench) summary() map[string]any {
	out := map[string]any{"image": b.Image, "accel": b.Accel, "kernel": b.Kernel, "memory_mib": b.MemoryMiB,
		"network": b.Network, "runs": len(b.Run), "image_build_ms": round2(b.BuildMs),
		"resume_first_over_cold": ratio(b.ResumeFirst, b.Cold), "resume_again_over_cold": ratio(b.Resume, b.Cold)}
	for _, r := range b.rows() {
		out[r.key+"_p50_ms"] = round2(percentile(r.ms, 50))
		out[r.key+"_p90_ms"] = round2(percentile(r.ms, 90))
	}
	if s := b.Suspended; s.Count > 0 {
		out["suspended"] = map[string]any{
			"count": s.Count, "qemu_processes": s.QEMUProcesses,
			"host_qemu_processes_before": s.HostQEMUBefore, "host_qemu_processes_after": s.HostQEMUAfter,
			"daemon_rss_before_kib": s.DaemonRSSBeforeKiB, "daemon_rss_after_kib": s.DaemonRSSAfterKiB,
			"daemon_rss_per_microvm_kib": perMicroVM(s.DaemonRSSAfterKiB-s.DaemonRSSBeforeKiB, s.Count),
			"disk_bytes":                 s.DiskBytes, "disk_per_microvm_bytes": perMicroVM(s.DiskBytes, s.Count),
			"memory_page_cache_kib": s.PageCacheKiB, "template_disk_bytes": s.TemplateDiskBytes,
		}
	}
	return out
}

// writeTable prints b as the command's table.
func (b *microVMBench) writeTable(w io.Writer) error {
	nw := "no network"
	if b.Network {
		nw = "with a network"
	}
	fmt.Fprintf(w, "MicroVMs of %s: %d runs, accel %s, kernel %s, %d MiB, %s; image built in %.0f ms\n\n",
		b.Image, len(b.Run), b.Accel, b.Kernel, b.MemoryMiB, nw, b.BuildMs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tp50 ms\tp90 ms\t")
	for _, r := range b.rows() {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t\n", r.label, percentile(r.ms, 50), percentile(r.ms, 90))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "request after auto-resume / cold boot: first %.2fx, again %.2fx\n", ratio(b.ResumeFirst, b.Cold), ratio(b.Resume, b.Cold))
	if s := b.Suspended; s.Count > 0 {
		fmt.Fprintf(w, "\n%d suspended MicroVMs: %d QEMU processes of theirs (host: %d before, %d after)\n",
			s.Count, s.QEMUProcesses, s.HostQEMUBefore, s.HostQEMUAfter)
		fmt.Fprintf(w, "daemon RSS: %d KiB before, %d KiB after (%+d KiB per MicroVM)\n",
			s.DaemonRSSBeforeKiB, s.DaemonRSSAfterKiB, perMicroVM(s.DaemonRSSAfterKiB-s.DaemonRSSBeforeKiB, s.Count))
		fmt.Fprintf(w, "disk: %d bytes, %d per MicroVM (the template: %d bytes, shared); page cache of their memory files: %d KiB\n",
			s.DiskBytes, perMicroVM(s.DiskBytes, s.Count), s.TemplateDiskBytes, s.PageCacheKiB)
	}
	return nil
}

func (c *CLI) benchMicroVM(cmd *cobra.Command, f benchMicroVMFlags) error {
	ctx := cmd.Context()
	if f.runs < 1 {
		return &exitError{code: ExitBadInput, err: errors.New("--runs must be at least 1")}
	}
	if f.suspended < 0 {
		return &exitError{code: ExitBadInput, err: errors.New("--suspended must not be negative")}
	}
	if len(f.exec) == 0 {
		return &exitError{code: ExitBadInput, err: errors.New("--exec needs a command")}
	}
	logger := c.logger(cmd)
	work, err := os.MkdirTemp("", "hearth-bench-microvm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	ref := f.image
	if ref == "" {
		fmt.Fprintln(c.Stderr, "building the test image…")
		reg, stop, err := startLoopbackRegistry()
		if err != nil {
			return err
		}
		defer stop()
		if ref, err = pushTestMicroVMImage(ctx, work, reg); err != nil {
			return err
		}
	}

	data := filepath.Join(work, "data")
	srv, err := server.New(ctx, server.Config{DataDir: data, Listen: "127.0.0.1:0", URLListen: "127.0.0.1:0", Log: logger,
		Host: vmboot.Options{Kernel: f.host.kernel, Agent: f.host.agent, Accel: f.host.accel,
			QEMU: c.Getenv("HEARTH_QEMU"), CacheDir: c.cacheDir()}})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	defer func() {
		_ = srv.Shutdown(context.Background())
		_ = network.RemoveEnvNetworks(filepath.Join(data, "envs"))
		_ = network.RemoveEnvNetworks(filepath.Join(data, "microvms"))
	}()
	profiles, err := server.ReadCredentials(server.CredentialsFile(data))
	if err != nil {
		return err
	}
	cl, err := mvc.New("http://"+srv.Addr(), mvc.Credentials{AccessKeyID: profiles[0].AccessKeyID, SecretAccessKey: profiles[0].SecretAccessKey})
	if err != nil {
		return err
	}
	// Every MicroVM run is terminated at the end, whatever happens.
	var live []string
	defer func() {
		for _, id := range live {
			tctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := cl.Terminate(tctx, id); err != nil {
				logger.Warn("terminating a bench MicroVM", "microvm", id, "err", err)
			}
			cancel()
		}
	}()
	terminate := func(id string) error {
		if err := cl.Terminate(ctx, id); err != nil {
			return fmt.Errorf("terminating %s: %w", id, err)
		}
		live = slices.DeleteFunc(live, func(s string) bool { return s == id })
		return nil
	}

	h, err := c.openHost(f.host, logger)
	if err != nil {
		return err
	}
	b := &microVMBench{Image: ref, Kernel: h.Kernel.Version + " (" + h.Kernel.Source + ")", MemoryMiB: f.memory}

	fmt.Fprintln(c.Stderr, "building the MicroVM image…")
	in := mvc.ImageInput{Name: benchMicroVMImage, ImageURI: ref, Resources: []mvc.Resources{{MinimumMemoryInMiB: f.memory}}}
	if f.hookPort != 0 {
		on := mvc.HookEnabled
		in.Hooks = &mvc.Hooks{Port: f.hookPort, MicrovmImageHooks: &mvc.ImageHooks{Ready: on, Validate: on},
			MicrovmHooks: &mvc.MicroVMHooks{Run: on, Resume: on, Suspend: on, Terminate: on}}
	}
	t0 := time.Now()
	img, err := cl.CreateImage(ctx, in)
	if err != nil {
		return vmError(err)
	}
	if _, err := cl.WaitImage(ctx, benchMicroVMImage, img.ImageVersion); err != nil {
		return vmError(err)
	}
	b.BuildMs = msf(time.Since(t0))

	// Run: --runs MicroVMs. Each is requested, suspended and requested
	// again (its first suspend and resume); the first stays for the rest.
	fmt.Fprintln(c.Stderr, "measuring run, and each MicroVM's first suspend and auto-resume…")
	policy := &mvc.IdlePolicy{MaxIdleDurationSeconds: 3600, SuspendedDurationSeconds: 86400, AutoResumeEnabled: true}
	type target struct {
		vm   *mvc.MicroVM
		tok  string
		last appReply // its last answer
	}
	get := func(t *target) (appReply, error) { return endpointGet(ctx, t.vm.Endpoint, t.tok) }
	// cycle suspends t and requests it (the endpoint resumes it).
	cycle := func(t *target, suspend, resume *[]float64) error {
		t0 := time.Now()
		if err := cl.Suspend(ctx, t.vm.MicrovmID); err != nil {
			return vmError(err)
		}
		*suspend = append(*suspend, msf(time.Since(t0)))
		t0 = time.Now()
		a, err := get(t)
		if err != nil {
			return fmt.Errorf("request to a suspended MicroVM: %w", err)
		}
		*resume = append(*resume, msf(time.Since(t0)))
		if err := t.last.sameProcess(a); err != nil {
			return fmt.Errorf("after auto-resume: %w", err)
		}
		t.last = a
		return nil
	}
	var first *target
	for i := 0; i < f.runs; i++ {
		t0 := time.Now()
		vm, err := cl.Run(ctx, mvc.RunInput{ImageIdentifier: benchMicroVMImage, IdlePolicy: policy})
		if err != nil {
			return vmError(err)
		}
		b.Run = append(b.Run, msf(time.Since(t0)))
		live = append(live, vm.MicrovmID)
		if vm.State != mvc.StateRunning {
			return fmt.Errorf("run %d: MicroVM %s is %s: %s", i+1, vm.MicrovmID, vm.State, vm.StateReason)
		}
		t := &target{vm: vm}
		if t.tok, err = cl.AuthToken(ctx, vm.MicrovmID, time.Hour, mvc.Port(8080)); err != nil {
			return vmError(err)
		}
		// The first request opens the app's connections: a warm-up.
		if t.last, err = get(t); err != nil {
			return fmt.Errorf("request to a running MicroVM: %w", err)
		}
		if first == nil {
			first = t
			continue
		}
		if err := cycle(t, &b.SuspendFirst, &b.ResumeFirst); err != nil {
			return err
		}
		if err := terminate(vm.MicrovmID); err != nil {
			return err
		}
	}

	fmt.Fprintln(c.Stderr, "measuring requests, exec, and suspend and auto-resume again…")
	for i := 0; i < f.runs; i++ {
		t0 := time.Now()
		a, err := get(first)
		if err != nil {
			return fmt.Errorf("request to a running MicroVM: %w", err)
		}
		b.Request = append(b.Request, msf(time.Since(t0)))
		first.last = a
	}
	for i := 0; i < f.runs; i++ {
		t0 := time.Now()
		st, err := cl.ExecAll(ctx, first.vm.MicrovmID, mvc.ExecRequest{Argv: f.exec}, nil, nil, nil)
		if err != nil {
			return vmError(err)
		}
		if st.Code != 0 || st.Error != "" {
			return fmt.Errorf("exec %s: exit %d %s", strings.Join(f.exec, " "), st.Code, st.Error)
		}
		b.Exec = append(b.Exec, msf(time.Since(t0)))
	}
	if err := cycle(first, &b.SuspendFirst, &b.ResumeFirst); err != nil {
		return err
	}
	for i := 0; i < f.runs; i++ {
		if err := cycle(first, &b.Suspend, &b.Resume); err != nil {
			return err
		}
	}
	if err := terminate(first.vm.MicrovmID); err != nil {
		return err
	}

	fmt.Fprintln(c.Stderr, "measuring cold boots…")
	if b.Cold, b.Network, err = c.coldBoots(ctx, h, ref, f.memory, filepath.Join(work, "cold"), f.runs, logger); err != nil {
		return fmt.Errorf("cold boot: %w", err)
	}
	b.Accel = string(h.Accel) // resolved by the cold boots

	if f.suspended > 0 {
		fmt.Fprintf(c.Stderr, "running and suspending %d MicroVMs…\n", f.suspended)
		b.Suspended, err = c.suspendedCost(ctx, srv, cl, data, f.suspended, &live)
		if err != nil {
			return err
		}
	}

	if f.json {
		out, _ := json.MarshalIndent(b.summary(), "", "  ")
		fmt.Fprintln(c.Stdout, string(out))
		return nil
	}
	return b.writeTable(c.Stdout)
}

// suspendedCost runs n MicroVMs one after another, suspending each at
// once (so that one at most runs), and measures what they cost the host
// once all are suspended; then terminates them.
func (c *CLI) suspendedCost(ctx context.Context, srv *server.Server, cl *mvc.Client, data string, n int, live *[]string) (suspendedCost, error) {
	s := suspendedCost{Count: n}
	dir := filepath.Join(data, "microvms")
	tplDir := filepath.Join(dir, "templates")
	diskBefore := duBytes(dir) - duBytes(tplDir)
	s.TemplateDiskBytes = duBytes(tplDir)
	s.HostQEMUBefore = len(qemuProcesses())
	debug.FreeOSMemory()
	s.DaemonRSSBeforeKiB = vmm.ProcessRSSKiB(os.Getpid())
	var ids []string
	var pids []int
	for i := 0; i < n; i++ {
		vm, err := cl.Run(ctx, mvc.RunInput{ImageIdentifier: benchMicroVMImage})
		if err != nil {
			return s, vmError(err)
		}
		*live = append(*live, vm.MicrovmID)
		ids = append(ids, vm.MicrovmID)
		// The QEMU process, to look for once suspended.
		env, release, err := srv.MicroVMs().Hold(ctx, vm.MicrovmID)
		if err != nil {
			return s, err
		}
		pids = append(pids, env.PID())
		release()
		if err := cl.Suspend(ctx, vm.MicrovmID); err != nil {
			return s, vmError(err)
		}
		if (i+1)%10 == 0 {
			fmt.Fprintf(c.Stderr, "  %d suspended\n", i+1)
		}
	}
	debug.FreeOSMemory()
	s.DaemonRSSAfterKiB = vmm.ProcessRSSKiB(os.Getpid())
	s.HostQEMUAfter = len(qemuProcesses())
	for _, p := range pids {
		if p > 0 && processAlive(p) && !zombie(p) {
			s.QEMUProcesses++
		}
	}
	s.DiskBytes = duBytes(dir) - duBytes(tplDir) - diskBefore
	s.PageCacheKiB = memoryPageCacheKiB(dir, tplDir)
	for _, id := range ids {
		if err := cl.Terminate(ctx, id); err != nil {
			return s, vmError(err)
		}
		*live = slices.DeleteFunc(*live, func(x string) bool { return x == id })
	}
	return s, nil
}

// coldBoots boots n fresh VMs of the image at ref, as the daemon runs a
// MicroVM of it (its root disk, command, env and memory, the agent-only
// image, a network when this host gives them), each to the answer of its
// first GET / on port 8080.
func (c *CLI) coldBoots(ctx context.Context, h *host, ref string, memory int, dir string, n int, log *slog.Logger) ([]float64, bool, error) {
	roots, err := rootfs.New(filepath.Join(dir, "rootfs"), rootfs.Options{Logger: log})
	if err != nil {
		return nil, false, err
	}
	root, err := roots.Pull(ctx, ref)
	if err != nil {
		return nil, false, err
	}
	imgDir := filepath.Join(dir, "agent-only")
	if err := os.MkdirAll(imgDir, 0o700); err != nil {
		return nil, false, err
	}
	img, err := h.Image(imgDir, nil)
	if err != nil {
		return nil, false, err
	}
	if err := h.ResolveAccel(ctx, img); err != nil {
		return nil, false, err
	}
	cfg := h.SandboxConfig(filepath.Join(dir, "envs"), nil)
	// The daemon gives MicroVMs networks when it can (as root); so do
	// these, from a manager of their own (slots are claimed host-wide).
	nets, err := network.New(ctx, network.Config{DNS: []netip.Addr{}, Log: log})
	if err == nil {
		defer nets.Close(context.Background())
		cfg.Net = nets
	}
	wd := root.Config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	env := map[string]string{}
	for _, kv := range root.Config.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	fn := sandbox.Function{Name: "cold", Version: "1", MemoryMB: memory, Timeout: time.Hour, Service: true, Env: env,
		Root: &sandbox.Root{Disk: root.Path, Digest: root.Digest, Size: root.Size,
			Command: append(slices.Clip(root.Config.EntryPoint), root.Config.Cmd...), WorkingDir: wd}}
	var out []float64
	for i := 0; i < n; i++ {
		t0 := time.Now()
		e, err := sandbox.Boot(ctx, cfg, fn, img)
		if err != nil {
			return nil, false, err
		}
		_, err = firstGet(ctx, e, 8080, 2*time.Minute)
		d := time.Since(t0)
		if cerr := e.Close(context.Background()); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, false, err
		}
		out = append(out, msf(d))
	}
	return out, cfg.Net != nil, nil
}

// firstGet sends GET / to port in the guest once something listens there,
// within limit.
func firstGet(ctx context.Context, e *sandbox.Env, port int, limit time.Duration) (appReply, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		conn, err := e.DialGuest(ctx, port)
		if errors.Is(err, sandbox.ErrNothingListening) {
			select {
			case <-ctx.Done():
				return appReply{}, fmt.Errorf("nothing listens on guest port %d: %w", port, ctx.Err())
			case <-time.After(5 * time.Millisecond):
				continue
			}
		}
		if err != nil {
			return appReply{}, err
		}
		defer conn.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: guest\r\nConnection: close\r\n\r\n"); err != nil {
			return appReply{}, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return appReply{}, err
		}
		defer resp.Body.Close()
		return readAppReply(resp)
	}
}

// appReply is what the test image's GET / answers; an other image's
// answer leaves it empty.
type appReply struct {
	Hits     int64  `json:"hits"`
	Instance string `json:"instance"`
}

// sameProcess says whether next comes from the process that answered r,
// its memory kept: the test image's instance id the same, its hit counter
// further. Other images' answers are not checked.
func (r appReply) sameProcess(next appReply) error {
	if r.Instance == "" {
		return nil
	}
	if next.Instance != r.Instance || next.Hits <= r.Hits {
		return fmt.Errorf("the app's memory was not kept: instance %s hits %d, then instance %s hits %d",
			r.Instance, r.Hits, next.Instance, next.Hits)
	}
	return nil
}

func readAppReply(resp *http.Response) (appReply, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return appReply{}, err
	}
	if resp.StatusCode >= 300 {
		return appReply{}, fmt.Errorf("GET /: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var a appReply
	_ = json.Unmarshal(body, &a)
	return a, nil
}

// endpointGet sends GET / to a MicroVM's endpoint with tok, on a new
// connection (as a new caller would), to loopback whatever the name.
func endpointGet(ctx context.Context, endpoint, tok string) (appReply, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := mvc.Request(ctx, http.MethodGet, endpoint, "/", tok, 0, nil)
	if err != nil {
		return appReply{}, err
	}
	var d net.Dialer
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, mvc.LoopbackAddr(addr))
		}}}
	resp, err := hc.Do(req)
	if err != nil {
		return appReply{}, err
	}
	defer resp.Body.Close()
	return readAppReply(resp)
}

// startLoopbackRegistry serves an OCI registry from this process on
// loopback; it returns its host:port.
func startLoopbackRegistry() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: time.Minute}
	go func() { _ = hs.Serve(ln) }()
	return ln.Addr().String(), func() { _ = hs.Close() }, nil
}

// pushTestMicroVMImage builds internal/testmicrovm statically (from the
// source tree in the current folder) into the test MicroVM image and
// pushes it to the registry at reg; it returns its reference.
func pushTestMicroVMImage(ctx context.Context, work, reg string) (string, error) {
	bin := filepath.Join(work, "testmicrovm")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./internal/testmicrovm")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the test image's server (run from Hearth's source tree, or give --image): %w\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	img, err := appImage("testmicrovm", data)
	if err != nil {
		return "", err
	}
	ref := reg + "/testmicrovm:bench"
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("pushing the test image: %w", err)
	}
	return ref, nil
}

// appImage is a linux/amd64 image of one layer: the static program bin at
// /app/<name>, its ENTRYPOINT, WORKDIR /app, port 8080 exposed, and the
// folders the guest mounts on (as internal/testvm's MicroVMImage).
func appImage(name string, bin []byte) (v1.Image, error) {
	return ociimage.Program(name, bin, v1.Config{ExposedPorts: map[string]struct{}{"8080/tcp": {}}})
}

// duBytes is the disk space allocated to the files under dir, as du
// counts it (a file linked twice counted once).
func duBytes(dir string) int64 {
	var n int64
	seen := map[uint64]bool{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if ino, ok := inode(fi); ok {
			if seen[ino] {
				return nil
			}
			seen[ino] = true
		}
		n += blocksBytes(fi)
		return nil
	})
	return n
}

// memoryPageCacheKiB is the page cache held by the snapshot memory files
// under dir, outside skip.
func memoryPageCacheKiB(dir, skip string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && p == skip {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && d.Name() == "memory" {
			b, _ := vmm.CachedBytes(p)
			n += b
		}
		return nil
	})
	return n / 1024
}

// qemuProcesses are the PIDs of this host's qemu-system processes.
func qemuProcesses() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.HasPrefix(string(comm), "qemu-system") && !zombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// inode is fi's inode number, when the system gives it.
func inode(fi fs.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}

// blocksBytes is the disk space allocated to fi (a sparse file's holes
// take none).
func blocksBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
