package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
)

type benchLifecycleFlags struct {
	host     hostFlags
	zip      string
	largeZip string
	largeMB  int
	n        int
	json     bool
}

func (c *CLI) benchLifecycleCmd() *cobra.Command {
	var f benchLifecycleFlags
	cmd := &cobra.Command{
		Use:   "lifecycle",
		Short: "Measure cold start, warm invoke, suspend, resume and clone, in one run",
		Long: `For the hello function and for a function that loads a large piece of data at
init, measures in one run on this machine: cold start, warm invoke, suspend,
resume and clone latencies (p50, p90), the snapshot's bytes on disk, the host
memory of a running and of a suspended environment, and the ratios
cold/resume and cold/clone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.benchLifecycle(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "examples/hello/hello.zip", "the small function")
	cmd.Flags().StringVar(&f.largeZip, "large-zip", "examples/loaded/loaded.zip", "the function that loads LOAD_MB at init")
	cmd.Flags().IntVar(&f.largeMB, "large-mb", 200, "megabytes the large function loads at init (0 skips it)")
	cmd.Flags().IntVarP(&f.n, "count", "n", 5, "measurements of each kind")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}

// lifecycle is one function's measurements, in milliseconds per run.
type lifecycle struct {
	name                        string
	cold, warm, suspend, resume []float64
	clone                       []float64
	paused                      []float64 // unpause and a call
	// A resume's two parts: the restore (VMM spawned, state loaded, the
	// agent's answer) and the first invocation's time in the guest.
	resumeHost, resumeGuest []float64
	pausedRSSKiB            int64
	// pausedWorkingSetKiB is the guest memory the last pause found mapped
	// and the unpause read back ahead.
	pausedWorkingSetKiB            int64
	runningRSSKiB, suspendedRSSKiB int64
	suspendedProcesses             int
	pageCacheKiB                   int64
	snapshotDiskBytes, stateBytes  int64
}

func (l *lifecycle) summary() map[string]any {
	p50 := func(xs []float64) float64 { return round2(percentile(xs, 50)) }
	p90 := func(xs []float64) float64 { return round2(percentile(xs, 90)) }
	ratio := func(a, b []float64) float64 {
		if percentile(b, 50) == 0 {
			return 0
		}
		return round2(percentile(a, 50) / percentile(b, 50))
	}
	return map[string]any{
		"cold_p50_ms": p50(l.cold), "cold_p90_ms": p90(l.cold),
		"warm_p50_ms": p50(l.warm), "warm_p90_ms": p90(l.warm),
		"suspend_p50_ms": p50(l.suspend), "suspend_p90_ms": p90(l.suspend),
		"resume_p50_ms": p50(l.resume), "resume_p90_ms": p90(l.resume),
		"clone_p50_ms": p50(l.clone), "clone_p90_ms": p90(l.clone),
		"paused_p50_ms": p50(l.paused), "paused_p90_ms": p90(l.paused),
		"resume_host_ms_p50": p50(l.resumeHost), "resume_guest_ms_p50": p50(l.resumeGuest),
		"cold_over_resume": ratio(l.cold, l.resume), "cold_over_clone": ratio(l.cold, l.clone),
		"cold_over_paused":         ratio(l.cold, l.paused),
		"paused_host_rss_kib":      l.pausedRSSKiB,
		"paused_working_set_kib":   l.pausedWorkingSetKiB,
		"suspended_processes":      l.suspendedProcesses,
		"suspended_host_rss_kib":   l.suspendedRSSKiB,
		"suspended_page_cache_kib": l.pageCacheKiB,
		"running_host_rss_kib":     l.runningRSSKiB,
		"snapshot_disk_bytes":      l.snapshotDiskBytes,
		"snapshot_state_bytes":     l.stateBytes,
	}
}

func (c *CLI) benchLifecycle(cmd *cobra.Command, f benchLifecycleFlags) error {
	ctx := cmd.Context()
	if f.n < 1 {
		return fmt.Errorf("--count must be at least 1")
	}
	h, err := c.openHost(f.host, c.logger(cmd))
	if err != nil {
		return err
	}
	defer h.Close()
	work, err := os.MkdirTemp("", "hearth-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	type benchCase struct {
		name, zip string
		fn        sandbox.Function
	}
	cases := []benchCase{{"hello", f.zip, sandbox.Function{Name: "hello", MemoryMB: 128, Timeout: time.Minute}}}
	if f.largeMB > 0 {
		cases = append(cases, benchCase{fmt.Sprintf("loaded-%dmb", f.largeMB), f.largeZip, sandbox.Function{
			Name: "loaded", MemoryMB: max(512, f.largeMB*2+128), Timeout: time.Minute,
			Env: map[string]string{"LOAD_MB": strconv.Itoa(f.largeMB)}}})
	}
	var results []*lifecycle
	for _, bc := range cases {
		code, err := guestimage.ReadZipFile(bc.zip)
		if err != nil {
			return err
		}
		dir := filepath.Join(work, bc.name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		img, err := h.Image(dir, code)
		if err != nil {
			return err
		}
		if err := h.ResolveAccel(ctx, img); err != nil {
			return err
		}
		cfg := h.SandboxConfig(dir, nil)
		cfg.InitTimeout = 2 * time.Minute
		fmt.Fprintf(c.Stderr, "measuring %s…\n", bc.name)
		l, err := measureLifecycle(ctx, cfg, bc.fn, img, f.n)
		if err != nil {
			return fmt.Errorf("%s: %w", bc.name, err)
		}
		l.name = bc.name
		results = append(results, l)
	}
	if f.json {
		out := results[0].summary()
		out["function"], out["runs"], out["accel"], out["kernel"] = results[0].name, f.n, h.Accel, h.Kernel.Source
		if len(results) > 1 {
			large := results[1].summary()
			large["function"] = results[1].name
			out["large"] = large
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(c.Stdout, string(b))
		return nil
	}
	fmt.Fprintf(c.Stdout, "lifecycle: %d runs of each, accel %s, kernel %s (%s)\n", f.n, h.Accel, h.Kernel.Version, h.Kernel.Source)
	for _, l := range results {
		s := l.summary()
		fmt.Fprintf(c.Stdout, "\n%s\n", l.name)
		tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tp50 ms\tp90 ms\t")
		for _, k := range []string{"cold", "resume", "clone", "paused", "warm", "suspend"} {
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t\n", k, s[k+"_p50_ms"], s[k+"_p90_ms"])
		}
		_ = tw.Flush()
		fmt.Fprintf(c.Stdout, "resume: restore %.1f ms (VMM start, state load, the agent's answer) + first call in the guest %.1f ms (p50)\n",
			s["resume_host_ms_p50"], s["resume_guest_ms_p50"])
		fmt.Fprintf(c.Stdout, "cold/resume %.1fx, cold/clone %.1fx, cold/paused %.1fx\n", s["cold_over_resume"], s["cold_over_clone"], s["cold_over_paused"])
		fmt.Fprintf(c.Stdout, "paused: %d KiB of guest memory read back ahead at unpause\n", l.pausedWorkingSetKiB)
		fmt.Fprintf(c.Stdout, "host memory: running %d KiB; paused %d KiB RSS; suspended %d processes, %d KiB RSS, %d KiB page cache\n",
			l.runningRSSKiB, l.pausedRSSKiB, l.suspendedProcesses, l.suspendedRSSKiB, l.pageCacheKiB)
		fmt.Fprintf(c.Stdout, "snapshot on disk: %d bytes (device state %d bytes)\n", l.snapshotDiskBytes, l.stateBytes)
	}
	return nil
}

// measureLifecycle takes every measurement of one function.
func measureLifecycle(ctx context.Context, cfg sandbox.Config, fn sandbox.Function, img sandbox.Image, n int) (*lifecycle, error) {
	l := &lifecycle{}
	var last *sandbox.Result
	call := func(env *sandbox.Env) error {
		res, err := env.Invoke(ctx, sandbox.Request{Payload: []byte(`{"name":"bench","input":7}`)})
		if err != nil {
			return err
		}
		if res.Error != nil {
			return fmt.Errorf("function error %s: %s", res.Error.ErrorType, res.Error.ErrorMessage)
		}
		last = res
		return nil
	}
	// Cold: a fresh VM booted and invoked, n times; the last one stays.
	var env *sandbox.Env
	for i := 0; i < n; i++ {
		if env != nil {
			_ = env.Close(ctx)
		}
		t0 := time.Now()
		var err error
		if env, err = sandbox.Boot(ctx, cfg, fn, img); err != nil {
			return nil, err
		}
		if err := call(env); err != nil {
			env.Close(ctx)
			return nil, err
		}
		l.cold = append(l.cold, msf(time.Since(t0)))
	}
	defer env.Close(ctx)
	for i := 0; i < 2*n; i++ {
		t0 := time.Now()
		if err := call(env); err != nil {
			return nil, err
		}
		l.warm = append(l.warm, msf(time.Since(t0)))
	}
	l.runningRSSKiB = vmm.ProcessRSSKiB(env.PID())
	// Pause (vCPUs stopped, guest memory pushed out of host RAM), look at
	// the VMM's RSS, unpause with an invocation; n times.
	for i := 0; i < n; i++ {
		info, err := env.Pause(ctx)
		if err != nil {
			return nil, err
		}
		l.pausedWorkingSetKiB = info.WorkingSetBytes >> 10
		if i == 0 {
			l.pausedRSSKiB = vmm.ProcessRSSKiB(env.PID())
		}
		t0 := time.Now()
		if err := env.Unpause(ctx); err != nil {
			return nil, err
		}
		if err := call(env); err != nil {
			return nil, err
		}
		l.paused = append(l.paused, msf(time.Since(t0)))
	}
	// Suspend, look at what is left, resume with an invocation; n times.
	for i := 0; i < n; i++ {
		pid := env.PID()
		info, err := env.Suspend(ctx)
		if err != nil {
			return nil, err
		}
		l.suspend = append(l.suspend, msf(info.Duration))
		if i == 0 {
			if processAlive(pid) && !zombie(pid) {
				l.suspendedProcesses = 1
				l.suspendedRSSKiB = vmm.ProcessRSSKiB(pid)
			}
			mem := filepath.Join(env.Dir(), "memory")
			cached, _ := vmm.CachedBytes(mem)
			l.pageCacheKiB = cached / 1024
			l.stateBytes = info.StateBytes
			l.snapshotDiskBytes = info.StateBytes + vmm.DiskBytes(mem)
		}
		t0 := time.Now()
		if err := call(env); err != nil {
			return nil, err
		}
		l.resume = append(l.resume, msf(time.Since(t0)))
		l.resumeHost = append(l.resumeHost, msf(last.Restore))
		l.resumeGuest = append(l.resumeGuest, msf(last.Duration))
	}
	// Clone: one template, n clones each invoked once.
	tcfg := cfg
	tcfg.Dir = filepath.Join(cfg.Dir, "templates")
	tpl, err := sandbox.NewTemplate(ctx, tcfg, fn, img)
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		t0 := time.Now()
		clone, err := sandbox.Clone(ctx, cfg, tpl.Dir)
		if err != nil {
			return nil, err
		}
		err = call(clone)
		l.clone = append(l.clone, msf(time.Since(t0)))
		clone.Close(ctx)
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

// zombie reports whether pid has exited but not been reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] == 'Z'
		}
	}
	return false
}
