package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/sandbox"
)

type benchNetFlags struct {
	host     hostFlags
	zip      string
	mb       int
	streamMB int
	connects int
	requests int
	n        int
	json     bool
}

func (c *CLI) benchNetCmd() *cobra.Command {
	var f benchNetFlags
	cmd := &cobra.Command{
		Use:   "net",
		Short: "Measure egress, connections into a guest and what networking adds to cold start and resume, in one run",
		Long: `Makes a test host of its own (a network namespace joined to this one by a
veth, serving HTTP and DNS; removed at the end) and boots the test function
(internal/testfunction, built by make build) to measure, in one run:

  egress    the function downloads --mb MB from the test host's HTTP
            server (MB/s), and the p50 of --connects TCP connects to it,
            both timed inside the guest
  ingress   --stream-mb MB posted from the host to an HTTP server in the
            guest over one stream (DialGuest) (MB/s), and the p50 of
            --requests small HTTP requests over one stream
  cold, resume
            the same function with a network (a namespace, TAP and
            ruleset of its own, as the daemon gives as root) and with none
            (no network card at all, as on a host that gives no networks),
            --count of each, to the first response

It needs root, as the daemon needs it to give networks. Traffic goes only to
the test host and loopback.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.benchNet(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "bin/testfunction.zip", "the test function (internal/testfunction)")
	cmd.Flags().IntVar(&f.mb, "mb", 64, "megabytes the function downloads from the test host")
	cmd.Flags().IntVar(&f.streamMB, "stream-mb", 16, "megabytes sent into the guest over one stream")
	cmd.Flags().IntVar(&f.connects, "connects", 50, "TCP connects from the guest to the test host")
	cmd.Flags().IntVar(&f.requests, "requests", 100, "HTTP requests into the guest over one stream")
	cmd.Flags().IntVarP(&f.n, "count", "n", 3, "cold starts and resumes with and without a network")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}

// netResult is one run's figures.
type netResult struct {
	DownloadMB        int     `json:"download_mb"`
	EgressMBps        float64 `json:"egress_mb_s"`
	ConnectP50        float64 `json:"egress_connect_p50_ms"`
	StreamMB          int     `json:"stream_mb"`
	IngressMBps       float64 `json:"ingress_mb_s"`
	RequestP50        float64 `json:"ingress_request_p50_ms"`
	ColdNetP50        float64 `json:"cold_net_p50_ms"`
	ColdNoneP50       float64 `json:"cold_none_p50_ms"`
	ResumeNetP50      float64 `json:"resume_net_p50_ms"`
	ResumeNoneP50     float64 `json:"resume_none_p50_ms"`
	NetworkAddsCold   float64 `json:"network_adds_cold_ms"`
	NetworkAddsResume float64 `json:"network_adds_resume_ms"`
}

func (c *CLI) benchNet(cmd *cobra.Command, f benchNetFlags) error {
	ctx := cmd.Context()
	if f.n < 1 || f.mb < 1 || f.streamMB < 1 || f.connects < 1 || f.requests < 1 {
		return &exitError{code: ExitBadInput, err: fmt.Errorf("--count, --mb, --stream-mb, --connects and --requests must be positive")}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("bench net needs root: it makes network namespaces, as the daemon does to give networks")
	}
	log := c.logger(cmd)
	h, img, work, cleanup, err := c.scratchImage(cmd, f.host, f.zip, log)
	if err != nil {
		return err
	}
	defer cleanup()
	th, err := network.NewTestHost(ctx)
	if err != nil {
		return err
	}
	defer th.Close()
	mgr, err := network.New(ctx, network.Config{DNS: []netip.Addr{network.TestHostAddr.Addr()}, Log: log})
	if err != nil {
		return err
	}
	defer mgr.Close(context.Background())

	fn := sandbox.Function{Name: "netbench", MemoryMB: 256, Timeout: 2 * time.Minute, Env: map[string]string{"TESTFN_SERVERS": "1"}}
	withNet, without := h.SandboxConfig(work, nil), h.SandboxConfig(work, nil)
	withNet.Net = mgr
	withNet.InitTimeout, without.InitTimeout = time.Minute, time.Minute
	r := netResult{DownloadMB: f.mb, StreamMB: f.streamMB}

	// Cold start and resume, with and without a network, interleaved so
	// that both see the same machine; the last environment with a network
	// stays for the rest.
	var coldNet, coldNone, resNet, resNone []float64
	var env *sandbox.Env
	defer func() {
		if env != nil {
			_ = env.Close(context.Background())
		}
	}()
	for i := 0; i < f.n; i++ {
		for _, on := range []bool{false, true} {
			cfg, cold, res := without, &coldNone, &resNone
			if on {
				cfg, cold, res = withNet, &coldNet, &resNet
			}
			if env != nil {
				_ = env.Close(ctx)
				env = nil
			}
			t0 := time.Now()
			e, err := sandbox.Boot(ctx, cfg, fn, img)
			if err != nil {
				return err
			}
			env = e
			if _, err := netInvoke(ctx, env, `{"action":"netinfo"}`); err != nil {
				return err
			}
			*cold = append(*cold, msf(time.Since(t0)))
			if _, err := env.Suspend(ctx); err != nil {
				return err
			}
			t0 = time.Now()
			if _, err := netInvoke(ctx, env, `{"action":"netinfo"}`); err != nil {
				return err
			}
			*res = append(*res, msf(time.Since(t0)))
		}
	}
	r.ColdNetP50, r.ColdNoneP50 = round2(percentile(coldNet, 50)), round2(percentile(coldNone, 50))
	r.ResumeNetP50, r.ResumeNoneP50 = round2(percentile(resNet, 50)), round2(percentile(resNone, 50))
	r.NetworkAddsCold, r.NetworkAddsResume = round2(r.ColdNetP50-r.ColdNoneP50), round2(r.ResumeNetP50-r.ResumeNoneP50)

	// Egress, timed in the guest.
	target := network.TestHostAddr.Addr().String()
	var dl struct {
		Status int
		Bytes  int64
		MS     float64
	}
	if err := netInvokeJSON(ctx, env, fmt.Sprintf(`{"action":"download","url":"http://%s/bytes?n=%d"}`, target, f.mb<<20), &dl); err != nil {
		return err
	}
	if dl.Status != http.StatusOK || dl.Bytes != int64(f.mb)<<20 || dl.MS <= 0 {
		return fmt.Errorf("download from the test host: status %d, %d bytes in %.1f ms", dl.Status, dl.Bytes, dl.MS)
	}
	r.EgressMBps = round2(float64(f.mb) / (dl.MS / 1000))
	var cn struct {
		Count int
		P50   float64 `json:"p50_ms"`
	}
	if err := netInvokeJSON(ctx, env, fmt.Sprintf(`{"action":"connects","addr":"%s:80","count":%d}`, target, f.connects), &cn); err != nil {
		return err
	}
	r.ConnectP50 = cn.P50

	// Ingress: HTTP to the function's server on the guest's port 8081,
	// each connection a stream over the agent's channel.
	newClient := func() *http.Client {
		return &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return env.DialGuest(ctx, 8081)
		}}}
	}
	client := newClient()
	t0 := time.Now()
	resp, err := client.Post("http://guest/sink", "application/octet-stream", io.LimitReader(zeros{}, int64(f.streamMB)<<20))
	if err != nil {
		return fmt.Errorf("stream into the guest: %w", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	el := time.Since(t0)
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(int64(f.streamMB)<<20) {
		return fmt.Errorf("stream into the guest: the guest read %q (%v)", b, err)
	}
	r.IngressMBps = round2(float64(f.streamMB) / el.Seconds())
	client = newClient()
	var lat []float64
	for i := 0; i <= f.requests; i++ { // the first opens the stream
		t0 := time.Now()
		resp, err := client.Get("http://guest/hello")
		if err != nil {
			return fmt.Errorf("request into the guest: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i > 0 {
			lat = append(lat, msf(time.Since(t0)))
		}
	}
	r.RequestP50 = round2(percentile(lat, 50))

	if f.json {
		out, _ := json.MarshalIndent(struct {
			Runs   int    `json:"runs"`
			Accel  string `json:"accel"`
			Kernel string `json:"kernel"`
			netResult
		}{f.n, string(h.Accel), h.Kernel.Source, r}, "", "  ")
		fmt.Fprintln(c.Stdout, string(out))
		return nil
	}
	fmt.Fprintf(c.Stdout, "network: accel %s, kernel %s (%s), %d runs of cold and resume\n\n", h.Accel, h.Kernel.Version, h.Kernel.Source, f.n)
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "guest → test host, %d MB download\t%.1f MB/s\t\n", f.mb, r.EgressMBps)
	fmt.Fprintf(tw, "guest → test host, TCP connect p50\t%.2f ms\t\n", r.ConnectP50)
	fmt.Fprintf(tw, "host → guest, %d MB over one stream\t%.1f MB/s\t\n", f.streamMB, r.IngressMBps)
	fmt.Fprintf(tw, "host → guest, HTTP request p50 (one stream)\t%.2f ms\t\n", r.RequestP50)
	fmt.Fprintf(tw, "cold start p50, network / none / added\t%.1f / %.1f / %+.1f ms\t\n", r.ColdNetP50, r.ColdNoneP50, r.NetworkAddsCold)
	fmt.Fprintf(tw, "resume p50, network / none / added\t%.1f / %.1f / %+.1f ms\t\n", r.ResumeNetP50, r.ResumeNoneP50, r.NetworkAddsResume)
	return tw.Flush()
}

// netInvoke invokes the test function with payload; a function error is
// an error.
func netInvoke(ctx context.Context, env *sandbox.Env, payload string) ([]byte, error) {
	res, err := env.Invoke(ctx, sandbox.Request{Payload: []byte(payload)})
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, fmt.Errorf("%s: function error %s: %s", payload, res.Error.ErrorType, res.Error.ErrorMessage)
	}
	return res.Payload, nil
}

// netInvokeJSON invokes and decodes the answer into v; an answer with an
// "error" (the test function's network failures) is an error.
func netInvokeJSON(ctx context.Context, env *sandbox.Env, payload string, v any) error {
	b, err := netInvoke(ctx, env, payload)
	if err != nil {
		return err
	}
	var fail struct{ Error string }
	if err := json.Unmarshal(b, &fail); err != nil {
		return fmt.Errorf("%s: %w", b, err)
	}
	if fail.Error != "" {
		return fmt.Errorf("%s: %s", payload, fail.Error)
	}
	return json.Unmarshal(b, v)
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
