package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
)

// envCmd holds the commands that drive one execution environment by hand:
// start it, invoke it, suspend it, resume it, template and clone it. Each is
// its own process; the environments outlive them, in the data folder.
func (c *CLI) envCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Drive execution environments by hand: start, invoke, suspend, resume, template, clone",
	}
	cmd.AddCommand(c.envStartCmd(), c.envInvokeCmd(), c.envSuspendCmd(), c.envResumeCmd(),
		c.envTemplateCmd(), c.envCloneCmd(), c.envListCmd(), c.envStopCmd(), c.envPortForwardCmd(), c.envExecCmd())
	return cmd
}

// envSession is what every env command needs.
type envSession struct {
	h    *host
	data string
	cfg  sandbox.Config
}

func (c *CLI) envSession(cmd *cobra.Command, hf hostFlags) (*envSession, error) {
	h, err := c.openHost(hf, c.logger(cmd))
	if err != nil {
		return nil, err
	}
	data := c.dataDir(cmd)
	cfg := h.SandboxConfig(filepath.Join(data, "envs"), c.Stderr)
	// Environments started here run on after this command exits.
	cfg.Detached = true
	cfg.Net = c.envNetworks(cmd)
	return &envSession{h: h, data: data, cfg: cfg}, nil
}

// envNetworks gives environments networks as the daemon does (its DNS:
// the host's resolvers), where this host can: nil when not (not root, no
// nft), and they have no network card. A network lives as long as its
// environment, across commands: its lease is in the manifest, adopted by
// each command that opens the environment and removed by env rm.
func (c *CLI) envNetworks(cmd *cobra.Command) sandbox.Networks {
	log := c.logger(cmd)
	var dns []netip.Addr
	if f, err := os.Open("/etc/resolv.conf"); err == nil {
		dns, _, _ = network.ParseDNS(f)
		f.Close()
	}
	m, err := network.New(cmd.Context(), network.Config{DNS: dns, Log: log})
	if err != nil {
		log.Debug("environments get no network", "err", err)
		return nil
	}
	return m
}

// envDir finds an environment's folder by id.
func (s *envSession) envDir(id string) (string, error) {
	dir := filepath.Join(s.data, "envs", id)
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		return "", lambdaerr.ResourceNotFound("no environment %s in %s", id, filepath.Dir(dir))
	}
	return dir, nil
}

type functionFlags struct {
	zip     string
	name    string
	handler string
	memory  int
	timeout int
	env     []string
}

func (f *functionFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.zip, "zip", "", "the function's code: a zip with an executable bootstrap at its root")
	cmd.Flags().StringVar(&f.name, "name", "", "function name (default: the zip's base name)")
	cmd.Flags().StringVar(&f.handler, "handler", "bootstrap", "handler, passed as _HANDLER")
	cmd.Flags().IntVar(&f.memory, "memory", 128, "memory in MB (128–10240)")
	cmd.Flags().IntVar(&f.timeout, "timeout", 3, "timeout in seconds (1–900)")
	cmd.Flags().StringArrayVar(&f.env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	_ = cmd.MarkFlagRequired("zip")
}

// function validates the flags and the code package and returns the
// function with its image, before any VM starts.
func (c *CLI) function(cmd *cobra.Command, f functionFlags, s *envSession) (sandbox.Function, sandbox.Image, error) {
	vars, err := validateFunction(f.memory, f.timeout, f.env)
	if err != nil {
		return sandbox.Function{}, sandbox.Image{}, err
	}
	code, err := guestimage.ReadZipFile(f.zip)
	if err != nil {
		return sandbox.Function{}, sandbox.Image{}, err
	}
	img, err := s.h.StoredImage(filepath.Join(s.data, "images"), code)
	if err != nil {
		return sandbox.Function{}, sandbox.Image{}, err
	}
	if err := s.h.ResolveAccel(cmd.Context(), img); err != nil {
		return sandbox.Function{}, sandbox.Image{}, err
	}
	s.cfg.Accel = s.h.Accel
	name := f.name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(f.zip), filepath.Ext(f.zip))
	}
	return sandbox.Function{Name: name, MemoryMB: f.memory, Timeout: time.Duration(f.timeout) * time.Second,
		Handler: f.handler, Env: vars}, img, nil
}

func (c *CLI) printJSON(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(c.Stdout, string(b))
}

func (c *CLI) envStartCmd() *cobra.Command {
	var hf hostFlags
	var ff functionFlags
	var output string
	cmd := &cobra.Command{
		Use:   "start --zip FILE",
		Short: "Boot an environment for a function and leave it running; prints its id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := c.envSession(cmd, hf)
			if err != nil {
				return err
			}
			fn, img, err := c.function(cmd, ff, s)
			if err != nil {
				return err
			}
			env, err := sandbox.Boot(cmd.Context(), s.cfg, fn, img)
			var initErr *sandbox.InitError
			if errors.As(err, &initErr) {
				c.printError(output, initErr.Object)
				return &exitError{code: ExitFunctionError, err: err}
			}
			if err != nil {
				return err
			}
			t := env.Timings()
			if output == "json" {
				c.printJSON(map[string]any{"id": env.ID(), "pid": env.PID(), "coldStartMs": msf(t.Total())})
			} else {
				fmt.Fprintln(c.Stdout, env.ID())
				fmt.Fprintf(c.Stderr, "started %s (QEMU pid %d) in %.0f ms: VMM %.0f ms, kernel %.0f ms, runtime init %.0f ms\n",
					env.ID(), env.PID(), msf(t.Total()), msf(t.VMMStart), msf(t.KernelBoot), msf(t.RuntimeInit))
			}
			return env.Detach()
		},
	}
	hf.register(cmd)
	ff.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// openEnv opens an environment by id for one command.
func (c *CLI) openEnv(cmd *cobra.Command, hf hostFlags, id string) (*envSession, *sandbox.Env, error) {
	s, err := c.envSession(cmd, hf)
	if err != nil {
		return nil, nil, err
	}
	dir, err := s.envDir(id)
	if err != nil {
		return nil, nil, err
	}
	env, err := sandbox.Open(cmd.Context(), s.cfg, dir)
	if err != nil {
		return nil, nil, err
	}
	return s, env, nil
}

func (c *CLI) envInvokeCmd() *cobra.Command {
	var hf hostFlags
	var output, payload string
	cmd := &cobra.Command{
		Use:   "invoke ENV [--payload JSON|file://PATH|fileb://PATH|-]",
		Short: "Invoke an environment; a suspended one is resumed first",
		Long: `Invokes an environment with the event --payload gives. The event may also
follow the environment's id, as a second argument (the older form).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			arg := payload
			if len(args) == 2 {
				if cmd.Flags().Changed("payload") {
					return lambdaerr.InvalidParameter("give the payload once: --payload or the second argument, not both")
				}
				arg = args[1]
			}
			event, err := readPayload(arg, c.Stdin)
			if err != nil {
				return err
			}
			_, env, err := c.openEnv(cmd, hf, args[0])
			if err != nil {
				return err
			}
			res, err := env.Invoke(cmd.Context(), sandbox.Request{Payload: event})
			if err != nil {
				return err
			}
			// Detach saves the manifest: the next start is warm now.
			if env.State() != sandbox.StateDead {
				if err := env.Detach(); err != nil {
					return err
				}
			}
			return c.printResult(output, res, env.Function())
		},
	}
	hf.register(cmd)
	registerPayload(cmd, &payload)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func (c *CLI) envSuspendCmd() *cobra.Command {
	var hf hostFlags
	var output string
	cmd := &cobra.Command{
		Use:   "suspend ENV",
		Short: "Save an idle environment to disk and end its VMM",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, env, err := c.openEnv(cmd, hf, args[0])
			if err != nil {
				return err
			}
			pid := env.PID()
			info, err := env.Suspend(cmd.Context())
			if err != nil {
				return err
			}
			cached, _ := vmm.CachedBytes(filepath.Join(env.Dir(), "memory"))
			if output == "json" {
				c.printJSON(map[string]any{"id": env.ID(), "suspendMs": msf(info.Duration), "stateBytes": info.StateBytes,
					"memoryDiskBytes": info.MemoryDiskBytes, "pageCacheBytes": cached, "qemuPid": pid})
				return nil
			}
			fmt.Fprintf(c.Stdout, "suspended %s in %.1f ms: device state %d bytes written, memory file %.1f MiB on disk (%d KiB in page cache); QEMU %d exited\n",
				env.ID(), msf(info.Duration), info.StateBytes, float64(info.MemoryDiskBytes)/(1<<20), cached/1024, pid)
			return nil
		},
	}
	hf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func (c *CLI) envResumeCmd() *cobra.Command {
	var hf hostFlags
	cmd := &cobra.Command{
		Use:   "resume ENV",
		Short: "Resume a suspended environment now, without invoking it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, env, err := c.openEnv(cmd, hf, args[0])
			if err != nil {
				return err
			}
			start := time.Now()
			if err := env.Resume(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(c.Stdout, "resumed %s in %.1f ms (QEMU pid %d)\n", env.ID(), msf(time.Since(start)), env.PID())
			return env.Detach()
		},
	}
	hf.register(cmd)
	return cmd
}

func (c *CLI) envTemplateCmd() *cobra.Command {
	var hf hostFlags
	var ff functionFlags
	cmd := &cobra.Command{
		Use:   "template --zip FILE",
		Short: "Boot a function, snapshot it right after its init, and keep that as a template; prints its id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := c.envSession(cmd, hf)
			if err != nil {
				return err
			}
			fn, img, err := c.function(cmd, ff, s)
			if err != nil {
				return err
			}
			cfg := s.cfg
			cfg.Dir = filepath.Join(s.data, "templates")
			tpl, err := sandbox.NewTemplate(cmd.Context(), cfg, fn, img)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.Stdout, tpl.ID)
			fmt.Fprintf(c.Stderr, "template %s: booted and initialised in %.0f ms, snapshot in %.1f ms (%d bytes of device state)\n",
				tpl.ID, msf(tpl.Timings.Total()), msf(tpl.Info.Duration), tpl.Info.StateBytes)
			return nil
		},
	}
	hf.register(cmd)
	ff.register(cmd)
	return cmd
}

func (c *CLI) envCloneCmd() *cobra.Command {
	var hf hostFlags
	cmd := &cobra.Command{
		Use:   "clone TEMPLATE",
		Short: "Make a new environment from a template, copy-on-write; prints its id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := c.envSession(cmd, hf)
			if err != nil {
				return err
			}
			dir := filepath.Join(s.data, "templates", args[0])
			if _, err := os.Stat(dir); err != nil {
				return lambdaerr.ResourceNotFound("no template %s in %s", args[0], filepath.Dir(dir))
			}
			start := time.Now()
			env, err := sandbox.Clone(cmd.Context(), s.cfg, dir)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.Stdout, env.ID())
			fmt.Fprintf(c.Stderr, "cloned %s from %s in %.1f ms (QEMU pid %d)\n", env.ID(), args[0], msf(time.Since(start)), env.PID())
			return env.Detach()
		},
	}
	hf.register(cmd)
	return cmd
}

func (c *CLI) envListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List environments and templates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data := c.dataDir(cmd)
			type row struct {
				ID       string `json:"id"`
				Kind     string `json:"kind"`
				State    string `json:"state"`
				PID      int    `json:"pid,omitempty"`
				Function string `json:"function"`
				MemoryMB int    `json:"memoryMB"`
			}
			var rows []row
			for _, kind := range []string{"envs", "templates"} {
				entries, _ := os.ReadDir(filepath.Join(data, kind))
				for _, e := range entries {
					b, err := os.ReadFile(filepath.Join(data, kind, e.Name(), "manifest.json"))
					if err != nil {
						continue
					}
					var m struct {
						ID       string           `json:"id"`
						Kind     string           `json:"kind"`
						State    string           `json:"state"`
						PID      int              `json:"pid"`
						Function sandbox.Function `json:"function"`
					}
					if json.Unmarshal(b, &m) != nil {
						continue
					}
					if m.Kind == "env" && m.State != "suspended" && (m.PID == 0 || !processAlive(m.PID)) {
						m.State = "dead"
					}
					rows = append(rows, row{m.ID, m.Kind, m.State, m.PID, m.Function.Name, m.Function.MemoryMB})
				}
			}
			if output == "json" {
				c.printJSON(rows)
				return nil
			}
			tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSTATE\tPID\tFUNCTION\tMEMORY")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d MB\n", r.ID, r.Kind, r.State, r.PID, r.Function, r.MemoryMB)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func (c *CLI) envStopCmd() *cobra.Command {
	var hf hostFlags
	cmd := &cobra.Command{
		Use:   "rm ID",
		Short: "Stop an environment (or delete a template) and remove its files",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := c.envSession(cmd, hf)
			if err != nil {
				return err
			}
			tpl := filepath.Join(s.data, "templates", args[0])
			if _, err := os.Stat(tpl); err == nil {
				return os.RemoveAll(tpl)
			}
			dir, err := s.envDir(args[0])
			if err != nil {
				return err
			}
			env, err := sandbox.Open(cmd.Context(), s.cfg, dir)
			if err != nil {
				// Its VMM is already gone (a reboot, a kill): only files remain.
				c.logger(cmd).Warn("environment not running; removing its files", "err", err)
				return errors.Join(network.RemoveNetns(network.NetnsPrefix+args[0]), os.RemoveAll(dir))
			}
			return env.Close(cmd.Context())
		},
	}
	hf.register(cmd)
	return cmd
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}
