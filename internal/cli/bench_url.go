package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/spf13/cobra"
)

func (c *CLI) benchURLCmd() *cobra.Command {
	var f benchLoadFlags
	cmd := &cobra.Command{
		Use:   "url",
		Short: "Warm requests through a function URL vs the Invoke API vs the handler called directly, in one run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var n int
			if _, err := fmt.Sscan(f.concurrency, &n); err != nil || n < 1 {
				return &exitError{code: ExitBadInput, err: fmt.Errorf("--concurrency must be one positive number here")}
			}
			bd, err := c.startBenchDaemon(cmd, f.host, f.zip, n, true)
			if err != nil {
				return err
			}
			defer bd.close()
			out, err := bd.client.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("hello"),
				AuthType: types.FunctionUrlAuthTypeNone})
			if err != nil {
				return apiError(err)
			}
			// Function URLs resolve to loopback like curl does: dial the
			// listener whatever the host name.
			var d net.Dialer
			urlAddr := bd.srv.URLAddrs()[0]
			urlClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256,
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return d.DialContext(ctx, network, urlAddr)
				}}}
			fnURL := aws.ToString(out.FunctionUrl)
			viaURL := func(ctx context.Context) error {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fnURL, strings.NewReader(`{"name":"load"}`))
				req.Header.Set("Content-Type", "application/json")
				resp, err := urlClient.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != 200 {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			}
			viaAPI := bd.invoke
			viaHTTP, stopDirect, err := bd.direct()
			if err != nil {
				return err
			}
			defer stopDirect()
			// Boot n environments, then settle.
			bd.warm(ctx, n)
			_ = closedLoop(ctx, n, f.duration/4, viaURL)
			rows := []struct {
				Path string     `json:"path"`
				R    loadResult `json:"result"`
			}{
				{"function URL", closedLoop(ctx, n, f.duration, viaURL)},
				{"Invoke API", closedLoop(ctx, n, f.duration, viaAPI)},
				{"direct", closedLoop(ctx, n, f.duration, viaHTTP)},
			}
			if f.json {
				b, _ := json.MarshalIndent(map[string]any{"concurrency": n, "duration_s": f.duration.Seconds(), "paths": rows}, "", "  ")
				fmt.Fprintln(c.Stdout, string(b))
				return nil
			}
			fmt.Fprintf(c.Stdout, "warm requests to hello at concurrency %d, %s each, same run\n\n", n, f.duration)
			tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "path\trps\tp50 ms\tp99 ms\terrors\t")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%d\t\n", r.Path, r.R.Throughput, r.R.P50, r.R.P99, r.R.Errors)
			}
			return tw.Flush()
		},
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "examples/hello/hello.zip", "the function")
	cmd.Flags().StringVar(&f.concurrency, "concurrency", "1", "concurrent clients")
	cmd.Flags().DurationVar(&f.duration, "duration", 5*time.Second, "measuring time of each path")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}
