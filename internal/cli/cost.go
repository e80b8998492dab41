package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/meter"
)

func (c *CLI) costCmd() *cobra.Command {
	var since, output, by string
	cmd := &cobra.Command{
		Use:   "cost [FUNCTION]",
		Short: "Requests, GB-seconds and cost per function, beside what the same load would cost always-on and without suspend",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if since != "" {
				q.Set("since", since)
			}
			if len(args) == 1 {
				q.Set("function", args[0])
			}
			switch by {
			case "function":
			case "host":
				q.Set("by", "host")
			default:
				return fmt.Errorf("--by is function or host, not %q", by)
			}
			resp, err := c.hearthRequest(cmd, "GET", "/cost?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if output == "json" {
				fmt.Fprint(c.Stdout, string(b))
				return nil
			}
			if by == "host" {
				var hc api.HostCosts
				if err := json.Unmarshal(b, &hc); err != nil {
					return err
				}
				return writeHostCosts(c.Stdout, hc)
			}
			var rep meter.Report
			if err := json.Unmarshal(b, &rep); err != nil {
				return err
			}
			return writeCost(c.Stdout, rep)
		},
	}
	cmd.Flags().StringVar(&by, "by", "function", "function, or host: each host of a cluster's share apart (its always-on column is that host's)")
	cmd.Flags().StringVar(&since, "since", "", "the period: a duration back from now (1h, 24h) or an RFC 3339 time (default: everything)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// writeCost prints a cost report as a table, the platform init beside the
// billed time.
func writeCost(w io.Writer, rep meter.Report) error {
	fmt.Fprintf(w, "from %s to %s; prices: %s\n", rep.Since.Format(time.RFC3339), rep.Until.Format(time.RFC3339), rep.Prices.Label)
	// Platform init is the VMM start and kernel boot of cold starts,
	// outside Lambda's Init Duration.
	billing := "not billed, as Lambda does not bill making its sandbox"
	if rep.Prices.BillPlatformInit {
		billing = "billed (prices: billPlatformInit)"
	}
	fmt.Fprintf(w, "platform init (VMM start, kernel boot): %s\n\n", billing)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "function\tmemory\trequests\terrors\tbilled s\tplatform init s\tGB-s\tsnapshot GB-h\tcost $\talways-on $\twithout suspend $\t")
	row := func(f meter.FunctionCost, mem string) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.4f\t%.6f\t%.6f\t%.6f\t\n", f.Name, mem, f.Requests, f.Errors,
			f.BilledSeconds, f.PlatformInitSeconds, f.GBSeconds, f.SnapshotGBHours, f.Cost, f.AlwaysOnCost, f.NoSuspendCost)
	}
	for _, f := range rep.Functions {
		row(f, fmt.Sprintf("%d MB", f.MemoryMB))
	}
	row(rep.Total, "")
	return tw.Flush()
}

// writeHostCosts prints one cost table per host.
func writeHostCosts(w io.Writer, hc api.HostCosts) error {
	for i, h := range hc.Hosts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "host %s\n", h.Host)
		if err := writeCost(w, meter.Report{Since: hc.Since, Until: hc.Until, Prices: hc.Prices, Functions: h.Functions, Total: h.Total}); err != nil {
			return err
		}
	}
	if len(hc.Hosts) == 0 {
		fmt.Fprintln(w, "nothing metered")
	}
	return nil
}

type statusView struct {
	Functions []struct {
		Name                          string
		Busy, Warm, Paused, Suspended int
	} `json:"functions"`
	Queues []struct {
		Name                       string
		Visible, InFlight, Delayed int
		OldestAgeSeconds           float64
	} `json:"queues"`
	Invocations map[string]int `json:"invocations"`
	Time        time.Time      `json:"time"`
}

func (c *CLI) topCmd() *cobra.Command {
	var once bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live: environments per function by state, invocations per second, start types",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var last *statusView
			for {
				resp, err := c.hearthRequest(cmd, "GET", "/status", nil)
				if err != nil {
					return err
				}
				var st statusView
				err = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				if err != nil {
					return err
				}
				if !once {
					fmt.Fprint(c.Stdout, "\033[H\033[2J") // clear the terminal
				}
				c.printStatus(&st, last)
				last = &st
				if once {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "print one view and exit")
	cmd.Flags().DurationVar(&every, "every", time.Second, "refresh period")
	return cmd
}

func (c *CLI) printStatus(st, last *statusView) {
	total, prev := 0, 0
	for _, n := range st.Invocations {
		total += n
	}
	rate := 0.0
	if last != nil {
		for _, n := range last.Invocations {
			prev += n
		}
		if d := st.Time.Sub(last.Time).Seconds(); d > 0 {
			rate = float64(total-prev) / d
		}
	}
	fmt.Fprintf(c.Stdout, "hearth top — %s — %.1f invocations/s\n\n", st.Time.Local().Format("15:04:05"), rate)
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tBUSY\tWARM\tPAUSED\tSUSPENDED")
	for _, f := range st.Functions {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", f.Name, f.Busy, f.Warm, f.Paused, f.Suspended)
	}
	_ = tw.Flush()
	if len(st.Queues) > 0 {
		fmt.Fprintln(c.Stdout)
		tw = tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "QUEUE\tVISIBLE\tIN FLIGHT\tDELAYED\tOLDEST")
		for _, q := range st.Queues {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", q.Name, q.Visible, q.InFlight, q.Delayed, (time.Duration(q.OldestAgeSeconds) * time.Second).String())
		}
		_ = tw.Flush()
	}
	var kinds []string
	for k := range st.Invocations {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprint(c.Stdout, "\ninvocations by start type:")
	for _, k := range kinds {
		fmt.Fprintf(c.Stdout, "  %s %d", k, st.Invocations[k])
	}
	fmt.Fprintln(c.Stdout)
}
