package cli

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/server"
)

// client is the Lambda API client the CLI talks to the daemon with: the
// real aws-sdk-go-v2 client, pointed at Hearth and signing with its keys.
func (c *CLI) client(cmd *cobra.Command) (*lambda.Client, error) {
	endpoint := c.endpoint(cmd)
	id, secret, err := c.keys(cmd)
	if err != nil {
		return nil, err
	}
	return lambda.New(lambda.Options{
		BaseEndpoint: aws.String(endpoint), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""),
	}), nil
}

// keys finds the access key to sign with: the daemon's credentials file in
// the data folder, else $AWS_SHARED_CREDENTIALS_FILE, else the AWS
// environment variables.
func (c *CLI) keys(cmd *cobra.Command) (string, string, error) {
	files := []string{server.CredentialsFile(c.dataDir(cmd)), c.Getenv("AWS_SHARED_CREDENTIALS_FILE")}
	profile := c.Getenv("AWS_PROFILE")
	if profile == "" {
		profile = "default"
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		ps, err := server.ReadCredentials(f)
		if err != nil {
			continue
		}
		for _, p := range ps {
			if p.Name == profile && p.AccessKeyID != "" {
				return p.AccessKeyID, p.SecretAccessKey, nil
			}
		}
	}
	if id := c.Getenv("AWS_ACCESS_KEY_ID"); id != "" {
		return id, c.Getenv("AWS_SECRET_ACCESS_KEY"), nil
	}
	return "", "", fmt.Errorf("no credentials: start the daemon with `hearth serve` (it writes %s), or set AWS_SHARED_CREDENTIALS_FILE", server.CredentialsFile(c.dataDir(cmd)))
}

// apiError turns an API error into the CLI's exit codes: the request was
// refused (2), or the daemon could not be reached or failed (3).
func apiError(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ExitBadInput
		if ae.ErrorFault() == smithy.FaultServer {
			code = ExitHostError
		}
		return &exitError{code: code, err: fmt.Errorf("%s: %s", ae.ErrorCode(), ae.ErrorMessage())}
	}
	return &exitError{code: ExitHostError, err: err}
}

// output prints v as JSON, or runs text for the text form.
func (c *CLI) output(cmd *cobra.Command, v any, text func()) {
	if o, _ := cmd.Flags().GetString("output"); o == "json" {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(c.Stdout, string(b))
		return
	}
	text()
}

func (c *CLI) fnCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fn", Short: "Manage functions on the daemon (the Lambda API)"}
	cmd.PersistentFlags().StringP("output", "o", "text", "text or json")
	cmd.AddCommand(c.fnCreateCmd(), c.fnListCmd(), c.fnGetCmd(), c.fnUpdateCodeCmd(), c.fnUpdateConfigCmd(), c.fnDeleteCmd(), c.fnNetworkPolicyCmd())
	return cmd
}

type fnSettings struct {
	memory, timeout                     int
	env                                 []string
	layers                              []string
	handler, desc                       string
	keepWarm, keepPaused, keepSuspended time.Duration
}

func (s *fnSettings) register(cmd *cobra.Command, defaults bool) {
	m, t := 0, 0
	if defaults {
		m, t = 128, 3
	}
	cmd.Flags().IntVar(&s.memory, "memory", m, "memory in MB (128–10240)")
	cmd.Flags().IntVar(&s.timeout, "timeout", t, "timeout in seconds (1–900)")
	cmd.Flags().StringArrayVar(&s.env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	cmd.Flags().StringVar(&s.handler, "handler", "bootstrap", "handler, passed as _HANDLER")
	cmd.Flags().StringVar(&s.desc, "description", "", "description")
	cmd.Flags().StringSliceVar(&s.layers, "layers", nil, "layer version ARNs, unpacked into /opt in this order (at most 5; on update, \"\" removes them)")
	cmd.Flags().DurationVar(&s.keepWarm, "keep-warm", 0, "idle time before an environment is paused (Hearth's; default: the daemon's)")
	cmd.Flags().DurationVar(&s.keepPaused, "keep-paused", 0, "time an idle environment stays paused after keep-warm before it is suspended, 0 for none (Hearth's; default: the daemon's)")
	cmd.Flags().DurationVar(&s.keepSuspended, "keep-suspended", 0, "time a suspended environment is kept (Hearth's; default: the daemon's)")
}

// setIdlePolicy sends the idle-policy flags, if any were given, to the
// daemon's own API: the Lambda API has no such setting.
func (c *CLI) setIdlePolicy(cmd *cobra.Command, name string, s fnSettings) error {
	if !cmd.Flags().Changed("keep-warm") && !cmd.Flags().Changed("keep-suspended") && !cmd.Flags().Changed("keep-paused") {
		return nil
	}
	policy := map[string]int{"KeepWarmSeconds": int(s.keepWarm.Seconds()), "KeepSuspendedHours": int(s.keepSuspended.Hours())}
	if policy["KeepWarmSeconds"] == 0 {
		policy["KeepWarmSeconds"] = 60
	}
	if policy["KeepSuspendedHours"] == 0 {
		policy["KeepSuspendedHours"] = 24
	}
	if cmd.Flags().Changed("keep-paused") {
		// Absent, the daemon's default applies.
		policy["KeepPausedSeconds"] = int(s.keepPaused.Seconds())
	}
	body, _ := json.Marshal(policy)
	resp, err := c.hearthRequest(cmd, "PUT", "/functions/"+name+"/idle-policy", body)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func envVars(kvs []string) (*types.Environment, error) {
	if kvs == nil {
		return nil, nil
	}
	vars := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &exitError{code: ExitBadInput, err: fmt.Errorf("environment variable %q is not KEY=VALUE", kv)}
		}
		vars[k] = v
	}
	return &types.Environment{Variables: vars}, nil
}

func printConfig(c *CLI, f *lambda.GetFunctionConfigurationOutput) {
	fmt.Fprintf(c.Stdout, "%s\t%s\t%d MB\t%d s\t%s\t%s\n", aws.ToString(f.FunctionName), aws.ToString(f.Version),
		aws.ToInt32(f.MemorySize), aws.ToInt32(f.Timeout), aws.ToString(f.CodeSha256), aws.ToString(f.LastModified))
}

func (c *CLI) fnCreateCmd() *cobra.Command {
	var s fnSettings
	var zip, runtime string
	var img imageFlags
	cmd := &cobra.Command{
		Use:   "create NAME --zip FILE [--runtime RUNTIME --handler H] | --image URI",
		Short: "Create a function from a zip (a bootstrap, or code for a managed runtime), or from a container image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (zip == "") == (img.uri == "") {
				return &exitError{code: ExitBadInput, err: errors.New("give either --zip or --image")}
			}
			env, err := envVars(s.env)
			if err != nil {
				return err
			}
			in := &lambda.CreateFunctionInput{
				FunctionName: aws.String(args[0]), Role: aws.String("arn:aws:iam::000000000000:role/hearth"),
				MemorySize: aws.Int32(int32(s.memory)), Timeout: aws.Int32(int32(s.timeout)), Environment: env,
				Description: aws.String(s.desc), Layers: s.layers,
			}
			if zip != "" {
				code, err := os.ReadFile(zip)
				if err != nil {
					return &exitError{code: ExitBadInput, err: err}
				}
				in.Runtime, in.Code = types.Runtime(runtime), &types.FunctionCode{ZipFile: code}
				// A managed runtime's handler is the user's to name: its
				// default (bootstrap) is a provided runtime's, and without
				// --handler the API says the runtime needs one.
				if strings.HasPrefix(runtime, "provided") || cmd.Flags().Changed("handler") {
					in.Handler = aws.String(s.handler)
				}
			} else {
				if cmd.Flags().Changed("runtime") {
					return &exitError{code: ExitBadInput, err: errors.New("--runtime is for --zip: an image brings its own")}
				}
				in.PackageType, in.Code, in.ImageConfig = types.PackageTypeImage, &types.FunctionCode{ImageUri: aws.String(img.uri)}, img.config()
			}
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			out, err := cl.CreateFunction(cmd.Context(), in)
			if err != nil {
				return apiError(err)
			}
			if err := c.setIdlePolicy(cmd, args[0], s); err != nil {
				return err
			}
			if out.State == types.StatePending {
				// An image's root is being built: wait, as the SDK's
				// FunctionActiveV2 waiter does, and say how it ended.
				if err := waitActive(cmd, cl, args[0]); err != nil {
					return err
				}
			}
			c.output(cmd, out, func() { fmt.Fprintln(c.Stdout, aws.ToString(out.FunctionArn)) })
			return nil
		},
	}
	s.register(cmd, true)
	cmd.Flags().StringVar(&zip, "zip", "", "the code: a zip with an executable bootstrap at its root, or a managed runtime's code")
	cmd.Flags().StringVar(&runtime, "runtime", string(types.RuntimeProvidedal2023), "the zip's runtime: provided.al2023, provided.al2, python3.11 or nodejs18.x (these two need --handler, e.g. app.handler)")
	img.register(cmd)
	return cmd
}

// imageFlags are a container image function's code and ImageConfig.
type imageFlags struct {
	uri                 string
	entryPoint, command []string
	workDir             string
}

func (f *imageFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.uri, "image", "", "the code: a container image, host/repo:tag or @sha256:… from a registry, or hearth-local@sha256:… from `hearth image import`")
	cmd.Flags().StringArrayVar(&f.entryPoint, "image-entrypoint", nil, "overrides the image's ENTRYPOINT, one word per flag (repeatable)")
	cmd.Flags().StringArrayVar(&f.command, "image-command", nil, "overrides the image's CMD, one word per flag (repeatable)")
	cmd.Flags().StringVar(&f.workDir, "image-workdir", "", "overrides the image's WORKDIR")
}

func (f *imageFlags) config() *types.ImageConfig {
	if f.entryPoint == nil && f.command == nil && f.workDir == "" {
		return nil
	}
	ic := &types.ImageConfig{EntryPoint: f.entryPoint, Command: f.command}
	if f.workDir != "" {
		ic.WorkingDirectory = aws.String(f.workDir)
	}
	return ic
}

// waitActive waits while a function is Pending; a Failed one is a bad
// input, with Lambda's reason.
func waitActive(cmd *cobra.Command, cl *lambda.Client, name string) error {
	for {
		out, err := cl.GetFunctionConfiguration(cmd.Context(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err != nil {
			return apiError(err)
		}
		switch out.State {
		case types.StatePending:
		case types.StateFailed:
			return &exitError{code: ExitBadInput, err: fmt.Errorf("function %s failed: %s: %s", name, out.StateReasonCode, aws.ToString(out.StateReason))}
		default:
			return nil
		}
		select {
		case <-cmd.Context().Done():
			return &exitError{code: ExitHostError, err: cmd.Context().Err()}
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *CLI) fnListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List functions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			var all []types.FunctionConfiguration
			p := lambda.NewListFunctionsPaginator(cl, &lambda.ListFunctionsInput{})
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return apiError(err)
				}
				all = append(all, page.Functions...)
			}
			c.output(cmd, map[string]any{"Functions": all}, func() {
				tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tMEMORY\tTIMEOUT\tLAST MODIFIED")
				for _, f := range all {
					fmt.Fprintf(tw, "%s\t%d MB\t%d s\t%s\n", aws.ToString(f.FunctionName), aws.ToInt32(f.MemorySize), aws.ToInt32(f.Timeout), aws.ToString(f.LastModified))
				}
				_ = tw.Flush()
			})
			return nil
		},
	}
}

func (c *CLI) fnGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a function's configuration",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			out, err := cl.GetFunctionConfiguration(cmd.Context(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(args[0])})
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() { printConfig(c, out) })
			return nil
		},
	}
}

func (c *CLI) fnUpdateCodeCmd() *cobra.Command {
	var zip, image string
	cmd := &cobra.Command{
		Use:   "update-code NAME --zip FILE | --image URI",
		Short: "Replace a function's code; its environments are retired",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (zip == "") == (image == "") {
				return &exitError{code: ExitBadInput, err: errors.New("give either --zip or --image")}
			}
			in := &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(args[0])}
			if zip != "" {
				code, err := os.ReadFile(zip)
				if err != nil {
					return &exitError{code: ExitBadInput, err: err}
				}
				in.ZipFile = code
			} else {
				in.ImageUri = aws.String(image)
			}
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			out, err := cl.UpdateFunctionCode(cmd.Context(), in)
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() { fmt.Fprintln(c.Stdout, aws.ToString(out.CodeSha256)) })
			return nil
		},
	}
	cmd.Flags().StringVar(&zip, "zip", "", "the new code")
	cmd.Flags().StringVar(&image, "image", "", "the new image, for a function of PackageType Image")
	return cmd
}

func (c *CLI) fnUpdateConfigCmd() *cobra.Command {
	var s fnSettings
	cmd := &cobra.Command{
		Use:   "update-config NAME [--memory MB] [--timeout S] [--env K=V]…",
		Short: "Change a function's configuration; its environments are retired",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(args[0])}
			if cmd.Flags().Changed("memory") {
				in.MemorySize = aws.Int32(int32(s.memory))
			}
			if cmd.Flags().Changed("timeout") {
				in.Timeout = aws.Int32(int32(s.timeout))
			}
			if cmd.Flags().Changed("handler") {
				in.Handler = aws.String(s.handler)
			}
			if cmd.Flags().Changed("description") {
				in.Description = aws.String(s.desc)
			}
			env, err := envVars(s.env)
			if err != nil {
				return err
			}
			in.Environment = env
			if cmd.Flags().Changed("layers") {
				in.Layers = append([]string{}, s.layers...) // [] (not nil) removes them
			}
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			if err := c.setIdlePolicy(cmd, args[0], s); err != nil {
				return err
			}
			if in.MemorySize == nil && in.Timeout == nil && in.Handler == nil && in.Description == nil && in.Environment == nil && in.Layers == nil {
				return nil // only Hearth's idle policy changed: the environments stay
			}
			out, err := cl.UpdateFunctionConfiguration(cmd.Context(), in)
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() {
				fmt.Fprintf(c.Stdout, "%s: %d MB, %d s\n", aws.ToString(out.FunctionName), aws.ToInt32(out.MemorySize), aws.ToInt32(out.Timeout))
			})
			return nil
		},
	}
	s.register(cmd, false)
	return cmd
}

func (c *CLI) fnDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a function and its environments",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			if _, err := cl.DeleteFunction(cmd.Context(), &lambda.DeleteFunctionInput{FunctionName: aws.String(args[0])}); err != nil {
				return apiError(err)
			}
			return nil
		},
	}
}

func (c *CLI) invokeCmd() *cobra.Command {
	var payload, qualifier, output string
	var tail bool
	cmd := &cobra.Command{
		Use:   "invoke NAME [--payload JSON|file://PATH|fileb://PATH|-]",
		Short: "Invoke a function on the daemon; prints its response",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			event, err := readPayload(payload, c.Stdin)
			if err != nil {
				return err
			}
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			in := &lambda.InvokeInput{FunctionName: aws.String(args[0]), Payload: event}
			if qualifier != "" {
				in.Qualifier = aws.String(qualifier)
			}
			if tail {
				in.LogType = types.LogTypeTail
			}
			start := time.Now()
			out, err := cl.Invoke(cmd.Context(), in)
			if err != nil {
				return apiError(err)
			}
			elapsed := time.Since(start)
			startType := ""
			if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
				startType = raw.Header.Get("X-Hearth-Start-Type")
			}
			if output == "json" {
				b, _ := json.Marshal(map[string]any{"StatusCode": out.StatusCode, "ExecutedVersion": out.ExecutedVersion,
					"FunctionError": out.FunctionError, "Payload": json.RawMessage(out.Payload)})
				fmt.Fprintln(c.Stdout, string(b))
			} else {
				fmt.Fprintln(c.Stdout, string(out.Payload))
			}
			if out.LogResult != nil {
				logs, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
				fmt.Fprint(c.Stderr, string(logs))
			}
			if startType != "" {
				fmt.Fprintf(c.Stderr, "%s start, %.1f ms round trip\n", startType, msf(elapsed))
			}
			if out.FunctionError != nil {
				return &exitError{code: ExitFunctionError, err: errors.New(aws.ToString(out.FunctionError))}
			}
			return nil
		},
	}
	registerPayload(cmd, &payload)
	cmd.Flags().StringVar(&qualifier, "qualifier", "", "a version or an alias")
	cmd.Flags().BoolVar(&tail, "log-tail", false, "print the last 4 KB of the invocation's logs on stderr")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
