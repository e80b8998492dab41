package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/server"
)

// clusterFlags are `hearth serve`'s flags for several hosts.
type clusterFlags struct {
	name, node, listen, nats, secretFile string
	routes                               []string
	ahead                                int
}

func (f *clusterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "cluster-name", "", "join a cluster of Hearth hosts of this name (embedded NATS JetStream, clustered); empty: standalone")
	fl.StringVar(&f.node, "node", "", "this host's name in the cluster, unique (default: the host name)")
	fl.StringVar(&f.listen, "cluster-listen", "", "the address the other hosts' routes reach this one on (host:port, e.g. 10.0.0.1:6222)")
	fl.StringSliceVar(&f.routes, "routes", nil, "the other hosts' route URLs (nats://host:port, comma-separated; this host's own may be listed)")
	fl.StringVar(&f.secretFile, "cluster-secret-file", "", "a file holding a secret every host's routes authenticate with (the same on every host)")
	fl.StringVar(&f.nats, "nats", "", "use this existing NATS (with JetStream) instead of an embedded one (nats://…); implies cluster mode")
	// Hidden: it lets a test run one binary as the next release (and as
	// one two versions apart, which the cluster must refuse).
	fl.IntVar(&f.ahead, "test-protocol-ahead", 0, "TESTING AID, never in production: act as a release this many cluster protocol versions newer (speak protocol+N, read protocol+N-1, version suffixed +aheadN)")
	_ = fl.MarkHidden("test-protocol-ahead")
}

// options turns the flags into the server's, checking what they need.
func (f *clusterFlags) options() (server.ClusterOptions, error) {
	o := server.ClusterOptions{Name: f.name, Node: f.node, Listen: f.listen, Routes: f.routes, NATS: f.nats, ProtocolAhead: f.ahead}
	if f.name == "" && f.nats == "" {
		if f.listen != "" || len(f.routes) > 0 || f.node != "" || f.secretFile != "" || f.ahead != 0 {
			return o, &exitError{code: ExitBadInput, err: fmt.Errorf("--node, --cluster-listen, --routes and --cluster-secret-file need --cluster-name (or --nats)")}
		}
		return o, nil
	}
	if f.name != "" && f.nats != "" {
		return o, &exitError{code: ExitBadInput, err: fmt.Errorf("--cluster-name runs an embedded NATS cluster, --nats uses an existing one: not both")}
	}
	if f.name != "" && (f.listen == "" || len(f.routes) == 0) {
		return o, &exitError{code: ExitBadInput, err: fmt.Errorf("--cluster-name needs --cluster-listen and --routes (at least one other host)")}
	}
	if o.Node == "" {
		h, err := os.Hostname()
		if err != nil {
			return o, err
		}
		o.Node = strings.Split(h, ".")[0]
	}
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return o, &exitError{code: ExitBadInput, err: fmt.Errorf("--cluster-secret-file: %w", err)}
		}
		o.Secret = strings.TrimSpace(string(b))
		if len(o.Secret) < 16 {
			return o, &exitError{code: ExitBadInput, err: fmt.Errorf("--cluster-secret-file: the secret is shorter than 16 characters")}
		}
	}
	return o, nil
}

func (c *CLI) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "See and drain the hosts of a Hearth cluster",
	}
	cmd.AddCommand(c.clusterStatusCmd(), c.clusterDrainCmd())
	return cmd
}

func (c *CLI) clusterStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "The cluster's hosts: up or down, their load, versions, drains",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, raw, err := c.clusterGet(cmd, http.MethodGet, "/cluster", nil)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := c.Stdout.Write(raw)
				return err
			}
			c.printCluster(st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func (c *CLI) clusterDrainCmd() *cobra.Command {
	var (
		undo    bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "drain NODE [--undo] [--wait]",
		Short: "Make a host take no new work and move its suspended environments (--undo: take work again)",
		Long: `Sets the host's drain flag in the cluster; the host obeys it within a
heartbeat: it starts no new environment (new work goes to the other hosts)
and serves only from the environments it has. Its suspended environments
move to the other live hosts whose QEMU version, machine type, CPU model,
kernel and agent match the snapshot's; one no host can take is dropped —
it stays on the drained host, and is lost when that host is removed. Idle
environments that suspend later move too, while the drain holds.
--wait follows the moves until none is left to try.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			node := args[0]
			body, _ := json.Marshal(api.DrainRequest{Draining: &[]bool{!undo}[0]})
			st, _, err := c.clusterGet(cmd, http.MethodPost, "/cluster/hosts/"+url.PathEscape(node)+"/drain", body)
			if err != nil {
				return err
			}
			if undo {
				fmt.Fprintf(c.Stdout, "%s: drain cleared; it takes new work again\n", node)
				c.printCluster(st)
				return nil
			}
			fmt.Fprintf(c.Stdout, "%s: drained; it takes no new work once it sees the flag (DRAIN shows obeyed), and moves its suspended environments to the other hosts\n", node)
			if !wait {
				c.printCluster(st)
				return nil
			}
			return c.waitDrain(cmd, node, st.Time, timeout)
		},
	}
	cmd.Flags().BoolVar(&undo, "undo", false, "clear the drain")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the moves of the host's suspended environments until none is left to try")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait, how long to follow")
	return cmd
}

// waitDrain follows a drained host's moves until it has looked for
// environments to move after since (the drain's request, by the cluster's
// clock) and found none left to try; then it prints what moved and what
// was dropped.
func (c *CLI) waitDrain(cmd *cobra.Command, node string, since time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		st, _, err := c.clusterGet(cmd, http.MethodGet, "/cluster", nil)
		if err != nil {
			return err
		}
		var h *cluster.HostStatus
		for i := range st.Hosts {
			if st.Hosts[i].Node == node {
				h = &st.Hosts[i]
			}
		}
		switch {
		case h == nil:
			return &exitError{code: ExitHostError, err: fmt.Errorf("%s is no longer in the cluster's status", node)}
		case h.State != cluster.StateUp:
			return &exitError{code: ExitHostError, err: fmt.Errorf("%s is %s: its suspended environments stay on it, and are lost if it does not come back", node, h.State)}
		case h.Drain != nil:
			p := h.Drain
			if line := drainLine(p); line != last {
				fmt.Fprintf(c.Stdout, "%s: %s\n", node, line)
				last = line
			}
			if p.State == cluster.DrainDone && p.Checked.After(since) {
				c.printMoves(p)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return &exitError{code: ExitHostError, err: fmt.Errorf("%s: the moves did not end within %s (hearth cluster status shows them)", node, timeout)}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// drainLine is a drain's progress in a line.
func drainLine(p *cluster.DrainProgress) string {
	line := fmt.Sprintf("%s: %d moved, %d dropped, %d left", p.State, p.Moved, p.Dropped, p.Pending)
	if p.Failed > 0 {
		line += fmt.Sprintf(", %d failed attempts (last: %s)", p.Failed, p.LastError)
	} else if p.State == cluster.DrainWaiting && p.LastError != "" {
		line += " (" + p.LastError + ")"
	}
	return line
}

// printMoves lists a drain's recent moves and drops.
func (c *CLI) printMoves(p *cluster.DrainProgress) {
	for _, m := range p.Recent {
		if m.To != "" {
			fmt.Fprintf(c.Stdout, "  moved   %s (%s) to %s as %s in %.1fs, %d MB shipped\n", m.Env, m.Function, m.To, m.NewEnv, m.Seconds, m.Bytes>>20)
		} else {
			fmt.Fprintf(c.Stdout, "  dropped %s (%s): %s\n", m.Env, m.Function, m.Reason)
		}
	}
}

// clusterGet calls the cluster API and decodes its status.
func (c *CLI) clusterGet(cmd *cobra.Command, method, path string, body []byte) (api.ClusterStatus, []byte, error) {
	var st api.ClusterStatus
	resp, err := c.hearthRequest(cmd, method, path, body)
	if err != nil {
		return st, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return st, nil, &exitError{code: ExitHostError, err: err}
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, &exitError{code: ExitHostError, err: fmt.Errorf("the daemon's answer: %w", err)}
	}
	return st, raw, nil
}

func (c *CLI) printCluster(st api.ClusterStatus) {
	if st.Standalone {
		fmt.Fprintln(c.Stdout, "standalone: this daemon is in no cluster (hearth serve --cluster-name … or --nats …)")
		return
	}
	fmt.Fprintf(c.Stdout, "cluster %s, seen from %s (protocol %d, %d replicas)\n", st.Cluster, st.Node, st.Protocol, st.Replicas)
	w := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tSTATE\tDRAIN\tBUSY\tWARM\tPAUSED\tSUSPENDED\tMEMORY MB\tCPU\tCODE/ROOTS\tMICROVMS\tVERSION\tPROTOCOL\tAPI\tLAST SEEN")
	for _, h := range st.Hosts {
		drain := "-"
		switch {
		case h.DrainRequested && h.Draining:
			drain = "obeyed"
		case h.DrainRequested:
			drain = "requested"
		case h.Draining:
			drain = "clearing"
		}
		state := h.State
		if !h.Compatible {
			state += " (incompatible)"
		}
		mem := fmt.Sprintf("%d", h.Load.MemoryMB)
		if h.Load.MemoryLimitMB > 0 {
			mem += fmt.Sprintf("/%d", h.Load.MemoryLimitMB)
		}
		proto := fmt.Sprintf("%d", h.Protocol)
		if h.MinProtocol != h.Protocol {
			proto = fmt.Sprintf("%d..%d", h.MinProtocol, h.Protocol)
		}
		cpu := "-" // not measured (yet)
		if h.Load.CPU > 0 {
			cpu = fmt.Sprintf("%.0f%%", h.Load.CPU*100)
		}
		// What is ready here for a cold start: code images built, image
		// roots cached (placement prefers such a host).
		ready := "0/0"
		if r := h.Load.Ready; r != nil {
			ready = fmt.Sprintf("%d/%d", len(r.Code), len(r.Roots))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.1fs ago\n", h.Node, state, drain,
			h.Load.Busy, h.Load.Warm, h.Load.Paused, h.Load.Suspended, mem, cpu, ready, h.Load.MicroVMs, h.Version, proto, orDash(h.API), h.LastSeenSeconds)
	}
	w.Flush()
	var down []string
	for _, h := range st.Hosts {
		if h.State == cluster.StateDown {
			down = append(down, h.Node)
		}
	}
	if len(down) > 0 {
		fmt.Fprintf(c.Stdout, "down: %s (no heartbeat; their suspended environments are lost unless they come back)\n", strings.Join(down, ", "))
	}
	for _, h := range st.Hosts {
		if h.Drain != nil {
			fmt.Fprintf(c.Stdout, "%s drained: %s\n", h.Node, drainLine(h.Drain))
			c.printMoves(h.Drain)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
