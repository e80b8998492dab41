package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
)

type runFlags struct {
	host      hostFlags
	zip       string
	payload   string
	event     string // deprecated alias of payload
	eventFile string // deprecated alias of payload, as a path
	name      string
	handler   string
	memory    int
	timeout   int
	env       []string
	output    string
}

func (c *CLI) runCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --zip FILE [--payload JSON|file://PATH|fileb://PATH|-]",
		Short: "Run a function once, cold, in a fresh microVM",
		Long: `Boots a microVM with the function's code, invokes it once with the event and
prints the response on stdout. On stderr: the function's logs and a Lambda-style
REPORT line with the cold start's phases. Exit status 0 on success, 1 on a
function error (its error object is printed), 2 on bad input, 3 on a host error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.run(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "", "the function's code: a zip with an executable bootstrap at its root")
	registerPayload(cmd, &f.payload)
	// The names this command had before every command took --payload.
	cmd.Flags().StringVar(&f.event, "event", "", "deprecated: use --payload")
	cmd.Flags().StringVar(&f.eventFile, "event-file", "", "deprecated: use --payload file://PATH (or - for stdin)")
	_ = cmd.Flags().MarkHidden("event")
	_ = cmd.Flags().MarkHidden("event-file")
	cmd.Flags().StringVar(&f.name, "name", "", "function name (default: the zip's base name)")
	cmd.Flags().StringVar(&f.handler, "handler", "bootstrap", "handler, passed as _HANDLER")
	cmd.Flags().IntVar(&f.memory, "memory", 128, "memory in MB (128–10240); sets the vCPUs as Lambda does")
	cmd.Flags().IntVar(&f.timeout, "timeout", 3, "timeout in seconds (1–900)")
	cmd.Flags().StringArrayVar(&f.env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "text or json")
	_ = cmd.MarkFlagRequired("zip")
	return cmd
}

// validateFunction checks a function's settings against Lambda's limits.
func validateFunction(memory, timeout int, env []string) (map[string]string, error) {
	if memory < 128 || memory > 10240 {
		return nil, lambdaerr.InvalidParameter("MemorySize must be between 128 and 10240 MB (got %d)", memory)
	}
	if timeout < 1 || timeout > 900 {
		return nil, lambdaerr.InvalidParameter("Timeout must be between 1 and 900 seconds (got %d)", timeout)
	}
	vars := map[string]string{}
	size := 0
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, lambdaerr.InvalidParameter("environment variable %q is not KEY=VALUE", kv)
		}
		vars[k] = v
		size += len(k) + len(v)
	}
	if size > 4096 {
		return nil, lambdaerr.InvalidParameter("environment variables exceed Lambda's 4 KB limit (%d bytes)", size)
	}
	return vars, nil
}

// payloadArg is the --payload argument, or what one of its deprecated
// aliases gives, with a warning on stderr (cobra's own deprecation notice
// would go to stdout, which scripts read).
func (c *CLI) payloadArg(cmd *cobra.Command, f runFlags) (string, error) {
	eventFile := "file://" + f.eventFile
	if f.eventFile == "-" {
		eventFile = "-"
	}
	args := map[string]string{"payload": f.payload, "event": f.event, "event-file": eventFile}
	arg, given := f.payload, 0
	for _, name := range []string{"payload", "event", "event-file"} {
		if !cmd.Flags().Changed(name) {
			continue
		}
		arg = args[name]
		given++
		if name != "payload" {
			fmt.Fprintf(c.Stderr, "hearth: --%s is deprecated; use --payload\n", name)
		}
	}
	if given > 1 {
		return "", lambdaerr.InvalidParameter("give the payload once, with --payload")
	}
	return arg, nil
}

func (c *CLI) run(cmd *cobra.Command, f runFlags) error {
	ctx := cmd.Context()
	log := c.logger(cmd)
	// Everything that can be refused is refused before a VM starts.
	envVars, err := validateFunction(f.memory, f.timeout, f.env)
	if err != nil {
		return err
	}
	arg, err := c.payloadArg(cmd, f)
	if err != nil {
		return err
	}
	event, err := readPayload(arg, c.Stdin)
	if err != nil {
		return err
	}
	h, img, work, cleanup, err := c.scratchImage(cmd, f.host, f.zip, log)
	if err != nil {
		return err
	}
	defer cleanup()
	name := f.name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(f.zip), filepath.Ext(f.zip))
	}
	fn := sandbox.Function{
		Name: name, MemoryMB: f.memory, Timeout: time.Duration(f.timeout) * time.Second,
		Handler: f.handler, Env: envVars,
	}
	env, err := sandbox.Boot(ctx, h.SandboxConfig(work, c.Stderr), fn, img)
	var initErr *sandbox.InitError
	if errors.As(err, &initErr) {
		c.printError(f.output, initErr.Object)
		return &exitError{code: ExitFunctionError, err: err}
	}
	if err != nil {
		return err
	}
	defer env.Close(ctx)
	res, err := env.Invoke(ctx, sandbox.Request{Payload: event})
	if err != nil {
		return err
	}
	return c.printResult(f.output, res, fn)
}

// printResult prints a result as `hearth run` and `hearth env invoke` do:
// the payload on stdout, the REPORT line on stderr, exit 1 on a function
// error.
func (c *CLI) printResult(output string, res *sandbox.Result, fn sandbox.Function) error {
	if output == "json" {
		out := map[string]any{"requestId": res.RequestID, "payload": json.RawMessage(res.Payload), "report": reportJSON(res, fn)}
		if res.Error != nil {
			out["functionError"] = "Unhandled"
		}
		b, _ := json.Marshal(out)
		fmt.Fprintln(c.Stdout, string(b))
	} else {
		fmt.Fprintln(c.Stdout, string(res.Payload))
	}
	if res.Fallback != "" {
		fmt.Fprintf(c.Stderr, "hearth: the snapshot was refused, so this was a cold start: %s\n", res.Fallback)
	}
	fmt.Fprintln(c.Stderr, res.Report(fn))
	if res.Error != nil {
		return &exitError{code: ExitFunctionError, err: errors.New(res.Error.ErrorType)}
	}
	return nil
}

func (c *CLI) printError(output string, obj any) {
	b, _ := json.Marshal(obj)
	if output == "json" {
		b, _ = json.Marshal(map[string]any{"payload": json.RawMessage(b), "functionError": "Unhandled"})
	}
	fmt.Fprintln(c.Stdout, string(b))
}

func reportJSON(res *sandbox.Result, fn sandbox.Function) map[string]any {
	// As the REPORT line: Lambda's INIT is billed, the platform's part is
	// reported beside it.
	billed := sandbox.BilledMs(res.Duration)
	out := map[string]any{
		"startType": res.StartType, "durationMs": msf(res.Duration),
		"memorySizeMB": fn.MemoryMB, "maxMemoryUsedMB": (res.MaxRSSKiB + 1023) / 1024,
	}
	switch res.StartType {
	case sandbox.StartCold:
		t := res.Init
		billed += sandbox.BilledMs(t.RuntimeInit)
		out["initDurationMs"], out["platformInitMs"] = msf(t.RuntimeInit), msf(t.PlatformInit())
		out["vmmStartMs"], out["kernelBootMs"] = msf(t.VMMStart), msf(t.KernelBoot)
		out["guestKernelMs"], out["guestAgentMs"] = msf(t.GuestKernel), msf(t.GuestAgent)
	case sandbox.StartResume, sandbox.StartClone, sandbox.StartPaused:
		out["restoreDurationMs"] = msf(res.Restore)
	}
	if res.Fallback != "" {
		out["fallback"] = res.Fallback
	}
	out["billedDurationMs"] = billed
	return out
}
