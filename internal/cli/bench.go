package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/sandbox"
)

func (c *CLI) benchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure Hearth on this machine"}
	cmd.AddCommand(c.benchBucketsCmd(), c.benchClusterCmd(), c.benchColdCmd(), c.benchDensityCmd(), c.benchEventsCmd(), c.benchKindsCmd(), c.benchLifecycleCmd(), c.benchLoadCmd(), c.benchMicroVMCmd(), c.benchNetCmd(), c.benchURLCmd())
	return cmd
}

type benchColdFlags struct {
	host   hostFlags
	zip    string
	n      int
	memory int
	json   bool
}

func (c *CLI) benchColdCmd() *cobra.Command {
	var f benchColdFlags
	cmd := &cobra.Command{
		Use:   "cold",
		Short: "Boot N fresh microVMs of a function and report each cold-start phase",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.benchCold(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "examples/hello/hello.zip", "the function to boot")
	cmd.Flags().IntVarP(&f.n, "count", "n", 5, "number of cold starts")
	cmd.Flags().IntVar(&f.memory, "memory", 128, "memory in MB")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}

// phase is one measured part of a cold start, in milliseconds per run.
type phase struct {
	name string
	ms   []float64
}

func (c *CLI) benchCold(cmd *cobra.Command, f benchColdFlags) error {
	ctx := cmd.Context()
	if f.n < 1 {
		return fmt.Errorf("--count must be at least 1")
	}
	// The image is built once, as a deploy would; each run is a boot.
	h, img, work, cleanup, err := c.scratchImage(cmd, f.host, f.zip, c.logger(cmd))
	if err != nil {
		return err
	}
	defer cleanup()
	phases := []*phase{{name: "vmm_start"}, {name: "kernel_boot"}, {name: "guest_kernel"}, {name: "guest_agent"},
		{name: "runtime_init"}, {name: "first_invoke"}, {name: "cold_total"}}
	fn := sandbox.Function{Name: "bench", MemoryMB: f.memory, Timeout: 30 * time.Second}
	for i := 0; i < f.n; i++ {
		start := time.Now()
		env, err := sandbox.Boot(ctx, h.SandboxConfig(work, nil), fn, img)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		res, err := env.Invoke(ctx, sandbox.Request{Payload: []byte(`{"name":"bench"}`)})
		total := time.Since(start)
		_ = env.Close(ctx)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		if res.Error != nil {
			return fmt.Errorf("run %d: function error %s: %s", i+1, res.Error.ErrorType, res.Error.ErrorMessage)
		}
		t := env.Timings()
		for j, d := range []time.Duration{t.VMMStart, t.KernelBoot, t.GuestKernel, t.GuestAgent, t.RuntimeInit, res.Duration, total} {
			phases[j].ms = append(phases[j].ms, msf(d))
		}
	}
	if f.json {
		out := map[string]any{"runs": f.n, "accel": h.Accel, "kernel": h.Kernel.Source, "memory_mb": f.memory}
		for _, p := range phases {
			out[p.name+"_p50_ms"] = round2(percentile(p.ms, 50))
			out[p.name+"_p90_ms"] = round2(percentile(p.ms, 90))
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(c.Stdout, string(b))
		return nil
	}
	fmt.Fprintf(c.Stdout, "cold starts: %d runs, accel %s, kernel %s (%s), %d MB\n\n", f.n, h.Accel, h.Kernel.Version, h.Kernel.Source, f.memory)
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tp50 ms\tp90 ms\t")
	for _, p := range phases {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t\n", p.name, percentile(p.ms, 50), percentile(p.ms, 90))
	}
	return tw.Flush()
}

// percentile is the nearest-rank percentile of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
