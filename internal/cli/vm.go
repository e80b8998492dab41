package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/client/microvm"
)

// vmCmd is `hearth vm`: Lambda MicroVMs on the daemon, through the
// client package users import too.
func (c *CLI) vmCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "vm", Short: "Run long-lived MicroVMs on the daemon (the Lambda MicroVMs API) and work inside them"}
	cmd.PersistentFlags().StringP("output", "o", "text", "text or json")
	cmd.AddCommand(c.vmImageCmd(), c.vmRunCmd(), c.vmGetCmd(), c.vmListCmd(),
		c.vmStateCmd("suspend", "Suspend a running MicroVM (its memory kept on disk)", (*microvm.Client).Suspend),
		c.vmStateCmd("resume", "Resume a suspended MicroVM", (*microvm.Client).Resume),
		c.vmStateCmd("terminate", "Terminate a MicroVM (terminating a terminated one succeeds)", (*microvm.Client).Terminate),
		c.vmTokenCmd(), c.vmExecCmd(), c.vmShellCmd(), c.vmCpCmd(), c.vmLsCmd(), c.vmRmCmd())
	return cmd
}

// vmClient is the MicroVMs client for the daemon the CLI talks to.
func (c *CLI) vmClient(cmd *cobra.Command) (*microvm.Client, error) {
	id, secret, err := c.keys(cmd)
	if err != nil {
		return nil, err
	}
	return microvm.New(c.endpoint(cmd), microvm.Credentials{AccessKeyID: id, SecretAccessKey: secret, Region: "local"})
}

// vmError turns a client error into the CLI's exit codes.
func vmError(err error) error {
	var ae *microvm.APIError
	if errors.As(err, &ae) {
		code := ExitBadInput
		if ae.StatusCode >= 500 {
			code = ExitHostError
		}
		return &exitError{code: code, err: ae}
	}
	return &exitError{code: ExitHostError, err: err}
}

func (c *CLI) vmImageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage MicroVM images (built from OCI images)"}
	cmd.AddCommand(c.vmImageCreateCmd(), c.vmImageListCmd(), c.vmImageGetCmd(), c.vmImageDeleteCmd())
	return cmd
}

func (c *CLI) vmImageCreateCmd() *cobra.Command {
	var ref, desc string
	var memory, hookPort int
	var env []string
	var wait bool
	cmd := &cobra.Command{
		Use:   "create NAME --image REF",
		Short: "Build a MicroVM image from an OCI image: boot it, call its /ready hook, snapshot it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := microvm.ImageInput{Name: args[0], ImageURI: ref, Description: desc}
			if memory > 0 {
				in.Resources = []microvm.Resources{{MinimumMemoryInMiB: memory}}
			}
			if len(env) > 0 {
				in.EnvironmentVariables = map[string]string{}
				for _, kv := range env {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return &exitError{code: ExitBadInput, err: fmt.Errorf("--env %q is not KEY=VALUE", kv)}
					}
					in.EnvironmentVariables[k] = v
				}
			}
			if hookPort != 0 {
				on := microvm.HookEnabled
				in.Hooks = &microvm.Hooks{Port: hookPort,
					MicrovmImageHooks: &microvm.ImageHooks{Ready: on, Validate: on},
					MicrovmHooks:      &microvm.MicroVMHooks{Run: on, Resume: on, Suspend: on, Terminate: on}}
			}
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			img, err := cl.CreateImage(cmd.Context(), in)
			if err != nil {
				return vmError(err)
			}
			var ver *microvm.ImageVersion
			if wait {
				if ver, err = cl.WaitImage(cmd.Context(), args[0], img.ImageVersion); err != nil {
					return vmError(err)
				}
				if got, err := cl.GetImage(cmd.Context(), args[0]); err == nil {
					img.State, img.LatestActiveImageVersion = got.State, got.LatestActiveImageVersion
				}
			}
			c.output(cmd, img, func() {
				fmt.Fprintf(c.Stdout, "%s version %s: %s\n", img.ImageARN, img.ImageVersion, img.State)
				if ver != nil && ver.ImageDigest != "" {
					fmt.Fprintf(c.Stdout, "from %s\n", ver.ImageDigest)
				}
			})
			return nil
		},
	}
	cmd.Flags().StringVar(&ref, "image", "", "the OCI image to build from (registry reference)")
	cmd.Flags().IntVar(&memory, "memory", 0, "memory in MB (default: the daemon's)")
	cmd.Flags().IntVar(&hookPort, "hook-port", 0, "the port of the image's lifecycle hook server; every hook enabled (none when 0)")
	cmd.Flags().StringArrayVar(&env, "env", nil, "KEY=VALUE in the MicroVM's environment (repeatable)")
	cmd.Flags().StringVar(&desc, "description", "", "a description")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the image is built")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}

func (c *CLI) vmImageListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List MicroVM images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			var all []microvm.ImageSummary
			next := ""
			for {
				page, err := cl.ListImages(cmd.Context(), 0, next)
				if err != nil {
					return vmError(err)
				}
				all = append(all, page.Items...)
				if next = page.NextToken; next == "" {
					break
				}
			}
			c.output(cmd, microvm.ListImagesOutput{Items: all}, func() {
				tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSTATE\tACTIVE VERSION\tCREATED")
				for _, i := range all {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Name, i.State, dash(i.LatestActiveImageVersion), when(i.CreatedAt))
				}
				_ = tw.Flush()
			})
			return nil
		},
	}
}

func (c *CLI) vmImageGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME [VERSION]",
		Short: "Show a MicroVM image, or one of its versions",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			if len(args) == 2 {
				v, err := cl.GetImageVersion(cmd.Context(), args[0], args[1])
				if err != nil {
					return vmError(err)
				}
				c.output(cmd, v, func() {
					fmt.Fprintf(c.Stdout, "%s version %s: %s (%s)\n", v.ImageARN, v.ImageVersion, v.State, v.Status)
					if v.StateReason != "" {
						fmt.Fprintf(c.Stdout, "reason: %s\n", v.StateReason)
					}
					fmt.Fprintf(c.Stdout, "image: %s %s\n", v.ImageURI, v.ImageDigest)
				})
				return nil
			}
			img, err := cl.GetImage(cmd.Context(), args[0])
			if err != nil {
				return vmError(err)
			}
			c.output(cmd, img, func() {
				fmt.Fprintf(c.Stdout, "%s: %s\n", img.ImageARN, img.State)
				if img.LatestActiveImageVersion != "" {
					fmt.Fprintf(c.Stdout, "active version: %s\n", img.LatestActiveImageVersion)
				}
				if img.LatestFailedImageVersion != "" {
					fmt.Fprintf(c.Stdout, "failed version: %s\n", img.LatestFailedImageVersion)
				}
			})
			return nil
		},
	}
}

func (c *CLI) vmImageDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a MicroVM image (refused while MicroVMs run from it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			if err := cl.DeleteImage(cmd.Context(), args[0]); err != nil {
				return vmError(err)
			}
			return nil
		},
	}
}

func (c *CLI) vmRunCmd() *cobra.Command {
	var version, payload, token string
	var idle, suspended, maxDur time.Duration
	var autoResume, wait bool
	cmd := &cobra.Command{
		Use:   "run IMAGE",
		Short: "Run a MicroVM from an image; prints its id and endpoint",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := microvm.RunInput{ImageIdentifier: args[0], ImageVersion: version, ClientToken: token}
			if cmd.Flags().Changed("idle") || cmd.Flags().Changed("suspended") || cmd.Flags().Changed("auto-resume") {
				in.IdlePolicy = &microvm.IdlePolicy{MaxIdleDurationSeconds: int(idle / time.Second),
					SuspendedDurationSeconds: int(suspended / time.Second), AutoResumeEnabled: autoResume}
			}
			if maxDur > 0 {
				in.MaximumDurationInSeconds = int(maxDur / time.Second)
			}
			if payload != "" {
				b, err := readRunPayload(payload)
				if err != nil {
					return &exitError{code: ExitBadInput, err: err}
				}
				in.RunHookPayload = string(b)
			}
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			vm, err := cl.Run(cmd.Context(), in)
			if err != nil {
				return vmError(err)
			}
			if wait && vm.State != microvm.StateRunning {
				if vm, err = cl.WaitRunning(cmd.Context(), vm.MicrovmID); err != nil {
					return vmError(err)
				}
			}
			c.output(cmd, vm, func() {
				fmt.Fprintln(c.Stdout, vm.MicrovmID)
				fmt.Fprintln(c.Stdout, vm.Endpoint)
			})
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the image version (default: the latest active)")
	cmd.Flags().DurationVar(&idle, "idle", 15*time.Minute, "suspend after this long idle (at least 1s)")
	cmd.Flags().DurationVar(&suspended, "suspended", 24*time.Hour, "terminate after this long suspended")
	cmd.Flags().BoolVar(&autoResume, "auto-resume", false, "a request to the endpoint resumes a suspended MicroVM")
	cmd.Flags().DurationVar(&maxDur, "max-duration", 0, "terminate after this long (default: no cap)")
	cmd.Flags().StringVar(&payload, "payload", "", "the /run hook's payload: text, or @FILE")
	cmd.Flags().StringVar(&token, "client-token", "", "idempotency token: the same token and input run one MicroVM")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until it is RUNNING")
	return cmd
}

// readRunPayload reads --payload: @FILE or the text itself.
func readRunPayload(arg string) ([]byte, error) {
	p, ok := strings.CutPrefix(arg, "@")
	if !ok {
		return []byte(arg), nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 16<<10+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 16<<10 {
		return nil, fmt.Errorf("--payload %s is larger than 16 KB", p)
	}
	return b, nil
}

func (c *CLI) vmGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a MicroVM",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			vm, err := cl.Get(cmd.Context(), args[0])
			if err != nil {
				return vmError(err)
			}
			c.output(cmd, vm, func() {
				fmt.Fprintf(c.Stdout, "%s: %s\n", vm.MicrovmID, vm.State)
				if vm.StateReason != "" {
					fmt.Fprintf(c.Stdout, "reason: %s\n", vm.StateReason)
				}
				fmt.Fprintf(c.Stdout, "endpoint: %s\nimage: %s version %s\nstarted: %s\n", vm.Endpoint, vm.ImageARN, vm.ImageVersion, when(vm.StartedAt))
				if p := vm.IdlePolicy; p != nil {
					fmt.Fprintf(c.Stdout, "idle policy: suspend after %s idle, terminate after %s suspended, auto-resume %t\n",
						time.Duration(p.MaxIdleDurationSeconds)*time.Second, time.Duration(p.SuspendedDurationSeconds)*time.Second, p.AutoResumeEnabled)
				}
			})
			return nil
		},
	}
}

func (c *CLI) vmListCmd() *cobra.Command {
	var image string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List MicroVMs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			all, err := cl.ListAll(cmd.Context(), microvm.ListInput{ImageIdentifier: image})
			if err != nil {
				return vmError(err)
			}
			c.output(cmd, microvm.ListOutput{Items: all}, func() {
				tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tIMAGE\tVERSION\tSTARTED")
				for _, v := range all {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.MicrovmID, v.State, v.ImageARN, v.ImageVersion, when(v.StartedAt))
				}
				_ = tw.Flush()
			})
			return nil
		},
	}
	cmd.Flags().StringVar(&image, "image", "", "only the MicroVMs of this image")
	return cmd
}

// vmStateCmd is suspend, resume or terminate.
func (c *CLI) vmStateCmd(use, short string, op func(*microvm.Client, context.Context, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			if err := op(cl, cmd.Context(), args[0]); err != nil {
				return vmError(err)
			}
			return nil
		},
	}
}

func (c *CLI) vmTokenCmd() *cobra.Command {
	var port int
	var ports string
	var all bool
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "token ID",
		Short: "Mint a token for the MicroVM's endpoint (send it as X-aws-proxy-auth)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := microvm.Port(8080)
			set := 0
			if port != 0 {
				spec, set = microvm.Port(port), set+1
			}
			if ports != "" {
				a, b, ok := strings.Cut(ports, "-")
				lo, err1 := strconv.Atoi(a)
				hi, err2 := strconv.Atoi(b)
				if !ok || err1 != nil || err2 != nil {
					return &exitError{code: ExitBadInput, err: fmt.Errorf("--ports %q is not A-B", ports)}
				}
				spec, set = microvm.Ports(lo, hi), set+1
			}
			if all {
				spec, set = microvm.AllPorts(), set+1
			}
			if set > 1 {
				return &exitError{code: ExitBadInput, err: errors.New("give one of --port, --ports and --all-ports")}
			}
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			tok, err := cl.AuthToken(cmd.Context(), args[0], expires, spec)
			if err != nil {
				return vmError(err)
			}
			c.output(cmd, microvm.AuthTokenOutput{AuthToken: map[string]string{microvm.AuthHeader: tok}}, func() {
				fmt.Fprintln(c.Stdout, tok)
			})
			return nil
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "the guest port the token allows (default 8080)")
	cmd.Flags().StringVar(&ports, "ports", "", "a range of guest ports, A-B")
	cmd.Flags().BoolVar(&all, "all-ports", false, "allow every guest port")
	cmd.Flags().DurationVar(&expires, "expires", time.Hour, "how long the token lives (whole minutes, 1m to 60m)")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t *microvm.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}
