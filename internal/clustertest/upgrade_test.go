package clustertest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/clustertest"
	"github.com/hearthdev/hearth/internal/testvm"
)

// nextRelease is the flag that makes a host act as the next release
// (protocol+1, reading protocol): a testing aid of hearth serve.
var nextRelease = []string{"--test-protocol-ahead", "1"}

// balancer is the load's client side: it sends calls only to the hosts
// that every host answering GET /hearth/v1/cluster reports up with an API
// address, as a load balancer health-checking the cluster status would.
type balancer struct {
	c *clustertest.Cluster

	mu      sync.Mutex
	targets map[string]bool
}

func (b *balancer) run(ctx context.Context) {
	for ctx.Err() == nil {
		views := 0
		up := map[string]int{}
		for _, h := range b.c.Hosts {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := h.Status(sctx)
			cancel()
			if err != nil {
				continue // not serving: its view does not count
			}
			views++
			for _, hs := range st.Hosts {
				if hs.State == cluster.StateUp && !hs.Stopped && hs.API != "" {
					up[hs.Node]++
				}
			}
		}
		if views > 0 {
			t := map[string]bool{}
			for n, k := range up {
				if k == views {
					t[n] = true
				}
			}
			b.mu.Lock()
			b.targets = t
			b.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (b *balancer) target(node string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.targets[node]
}

// A rolling upgrade keeps serving. Three hosts under a load of sync and
// async invocations through every host the balancer targets; each host in
// turn is stopped cleanly (SIGINT) and started again as the next release
// (protocol+1, reading protocol), and the next host goes only once every
// host reports it up with its API. What must hold:
//   - a sync or async call through a host the balancer targets succeeds,
//     except a call sent to a host after its SIGINT and before the
//     balancer saw it stopped, which may only be refused at connect (the
//     host closed its listener: nothing was accepted);
//   - a call in flight on a host when it gets its SIGINT succeeds (the
//     host finishes what it accepted), whether sent to it or forwarded to
//     it by another host;
//   - every async event accepted (202) is delivered (its OnSuccess record
//     arrives, at least once);
//   - the cluster status (the API's and `hearth cluster status`) shows
//     the versions change host by host;
//   - a function created through a new host is invoked through an old
//     one, and one created through an old host through a new one;
//   - then a host two protocols apart is refused at start, with a clear
//     error and a non-zero exit, and the others keep serving.
func TestRollingUpgrade(t *testing.T) {
	testvm.Driver(t)
	zip, err := os.ReadFile(testvm.FunctionZip(t, "./examples/hello"))
	if err != nil {
		t.Fatal(err)
	}
	slowZip, err := os.ReadFile(testvm.FunctionZip(t, "./internal/testfunction"))
	if err != nil {
		t.Fatal(err)
	}
	hb := testvm.Hearth(t)
	c := clustertest.Start(t, clustertest.Options{Args: []string{"--keep-warm", "60s", "--async-ack-wait", "5s"}})
	a := c.Host("a")
	ctx := context.Background()
	if _, err := a.Lambda().CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(60), MemorySize: aws.Int32(128)}); err != nil {
		t.Fatal(err)
	}
	out, err := a.SQS().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("done")})
	if err != nil {
		t.Fatal(err)
	}
	doneQueue := out.QueueUrl
	if _, err := a.Lambda().PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("hello"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:sqs:local:000000000000:done")}}}); err != nil {
		t.Fatal(err)
	}
	// slow holds a call in flight through each host at its SIGINT.
	if _, err := a.Lambda().CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("slow"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: slowZip}, Timeout: aws.Int32(60), MemorySize: aws.Int32(128)}); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Hosts {
		invokeVia(t, h, "hello", []byte(`{"name":"warm"}`))
		invokeVia(t, h, "slow", []byte(`{"action":"sleep","ms":1}`))
	}
	oldVersion := versionsOf(t, ctx, a)["a"].Version

	// The load.
	bal := &balancer{c: c}
	balCtx, stopBal := context.WithCancel(ctx)
	defer stopBal()
	go bal.run(balCtx)
	waitFor(t, 10*time.Second, "the balancer targets every host", func() bool {
		return bal.target("a") && bal.target("b") && bal.target("c")
	})
	type call struct {
		via, ran   string
		async      bool
		throttled  int
		start, end time.Time
		err        error
	}
	var (
		mu       sync.Mutex
		calls    []call
		accepted = map[string]acceptedEvent{} // by request id
	)
	clients := map[string]*lambda.Client{}
	for _, h := range c.Hosts {
		clients[h.Node] = h.Lambda()
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, h := range c.Hosts {
		lc := clients[h.Node]
		loop := func(async bool, pause time.Duration) {
			defer wg.Done()
			for i := 0; loadCtx.Err() == nil; i++ {
				if !bal.target(h.Node) {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				name := fmt.Sprintf("%s%d", h.Node, i)
				in := &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(fmt.Sprintf(`{"name":"%s"}`, name))}
				if async {
					in.InvocationType = types.InvocationTypeEvent
				}
				cl := call{via: h.Node, async: async, start: time.Now()}
				var out *lambda.InvokeOutput
				var err error
				client := lc
				for {
					cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
					out, err = client.Invoke(cctx, in)
					cancel()
					// A throttle ran nothing: the client tries again, as
					// Lambda's clients do (counted apart).
					var th *types.TooManyRequestsException
					if !errors.As(err, &th) || cl.throttled >= 10 || loadCtx.Err() != nil {
						break
					}
					cl.throttled++
					time.Sleep(time.Second)
					// Again through a host the balancer targets now (the
					// first may have begun to stop meanwhile).
					for _, o := range c.Hosts {
						if bal.target(o.Node) {
							client = clients[o.Node]
							if o == h {
								break
							}
						}
					}
				}
				cl.end = time.Now()
				switch {
				case err != nil:
					cl.err = err
				case async && out.StatusCode != 202:
					cl.err = fmt.Errorf("status %d", out.StatusCode)
				case async:
				case out.FunctionError != nil:
					cl.err = fmt.Errorf("function error %s: %s", *out.FunctionError, out.Payload)
				case !strings.Contains(string(out.Payload), "Hello, "+name+"!"):
					cl.err = fmt.Errorf("payload %s", out.Payload)
				}
				if err == nil {
					if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
						cl.ran = raw.Header.Get(api.NodeHeader)
					}
				}
				mu.Lock()
				calls = append(calls, cl)
				if async && cl.err == nil {
					id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
					accepted[id] = acceptedEvent{via: h.Node, at: cl.end}
				}
				mu.Unlock()
				time.Sleep(pause)
			}
		}
		wg.Add(2)
		go loop(false, 50*time.Millisecond)
		go loop(true, 300*time.Millisecond)
	}
	time.Sleep(3 * time.Second)

	// The upgrade, host by host.
	var steps []*upgradeStep
	upgraded := map[string]bool{}
	begun := time.Now()
	for _, h := range c.Hosts {
		s := &upgradeStep{node: h.Node}
		steps = append(steps, s)
		// A call through h, in flight at its SIGINT: sent 1.5 s before
		// (a stopping host serves 2 s more anyway), sleeping 5 s.
		held := make(chan heldCall, 1)
		go func() {
			out, err := clients[h.Node].Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(`{"action":"sleep","ms":5000}`)})
			hc := heldCall{err: err}
			if err == nil {
				hc.payload = string(out.Payload)
				if out.FunctionError != nil {
					hc.err = fmt.Errorf("function error %s", *out.FunctionError)
				}
				if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
					hc.ran = raw.Header.Get(api.NodeHeader)
				}
			}
			held <- hc
		}()
		time.Sleep(1500 * time.Millisecond)
		logAt := fileSize(h.LogPath)
		mu.Lock()
		s.sigint = time.Now()
		mu.Unlock()
		stopErr := make(chan error, 1)
		go func() { stopErr <- h.Stop() }()
		waitFor(t, 20*time.Second, "the balancer drops "+h.Node, func() bool { return !bal.target(h.Node) })
		s.excluded = time.Now()
		for _, o := range c.Hosts {
			if o == h {
				continue
			}
			if st := versionsOf(t, ctx, o)[h.Node]; st.State != cluster.StateStopping && st.State != cluster.StateStopped {
				t.Errorf("%s reports %s %s once the balancer dropped it, want stopping", o.Node, h.Node, st.State)
			}
		}
		if err := <-stopErr; err != nil {
			t.Fatalf("stop %s: %v", h.Node, err)
		}
		stopped := time.Since(s.sigint)
		if hc := <-held; hc.err != nil {
			t.Errorf("a call in flight through %s at its SIGINT failed: %v", h.Node, hc.err)
		} else {
			t.Logf("a call in flight through %s at its SIGINT (5 s, ran on %s) succeeded: %s", h.Node, hc.ran, hc.payload)
		}
		for _, o := range c.Hosts {
			if o == h {
				continue
			}
			if st := versionsOf(t, ctx, o)[h.Node]; st.State != cluster.StateStopped {
				t.Errorf("%s reports %s %s after its clean stop, want stopped", o.Node, h.Node, st.State)
			}
		}
		h.SetArgs(nextRelease...)
		mu.Lock()
		s.started = time.Now()
		mu.Unlock()
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
		uctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		if err := h.WaitServing(uctx); err != nil {
			t.Fatalf("%s as the next release: %v", h.Node, err)
		}
		for _, o := range c.Hosts {
			if err := c.WaitUp(uctx, o, len(c.Hosts)); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		waitFor(t, 10*time.Second, "the balancer targets "+h.Node+" again", func() bool { return bal.target(h.Node) })
		s.up = time.Now()
		upgraded[h.Node] = true
		t.Logf("%s: stopped in %s (%s), out of the balancer %s after its SIGINT, the next release up and targeted %s after its start",
			h.Node, stopped.Round(time.Millisecond), stopLine(fileFrom(h.LogPath, logAt)), s.excluded.Sub(s.sigint).Round(time.Millisecond), s.up.Sub(s.started).Round(time.Millisecond))

		// Every host reports the versions as they now are.
		for _, o := range c.Hosts {
			vs := versionsOf(t, ctx, o)
			for _, n := range []string{"a", "b", "c"} {
				v := vs[n]
				wantP, wantMin, wantV := cluster.Protocol, cluster.MinProtocol, oldVersion
				if upgraded[n] {
					wantP, wantMin, wantV = cluster.Protocol+1, cluster.Protocol, oldVersion+"+ahead1"
				}
				if v.Protocol != wantP || v.MinProtocol != wantMin || v.Version != wantV || !v.Compatible || v.State != cluster.StateUp {
					t.Errorf("%s reports %s as %s, protocol %d..%d, version %q, compatible %v; want up, %d..%d, %q",
						o.Node, n, v.State, v.MinProtocol, v.Protocol, v.Version, v.Compatible, wantMin, wantP, wantV)
				}
			}
		}
		other := c.Hosts[(indexOf(c, h)+1)%len(c.Hosts)]
		table := statusCLI(t, hb, other)
		t.Logf("hearth cluster status through %s after %s's upgrade:\n%s", other.Node, h.Node, table)
		for _, n := range []string{"a", "b", "c"} {
			fields := strings.Fields(lineOf(table, n))
			wantV, wantP := oldVersion, fmt.Sprintf("%d..%d", cluster.MinProtocol, cluster.Protocol)
			if upgraded[n] {
				wantV, wantP = oldVersion+"+ahead1", fmt.Sprintf("%d..%d", cluster.Protocol, cluster.Protocol+1)
			}
			if len(fields) < 2 || fields[1] != cluster.StateUp || !slices.Contains(fields, wantV) || !slices.Contains(fields, wantP) {
				t.Errorf("hearth cluster status's line for %s %q: want up, version %s, protocol %s", n, fields, wantV, wantP)
			}
		}

		// Mid-upgrade, a function created through a new host runs through
		// an old one, and one created through an old host through a new one.
		if h.Node == "a" {
			old := c.Host("b")
			for _, m := range []struct{ via, call *clustertest.Host }{{h, old}, {old, h}} {
				fn := "mid-" + m.via.Node
				if _, err := m.via.Lambda().CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(fn), Runtime: types.RuntimeProvidedal2023,
					Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(60), MemorySize: aws.Int32(128)}); err != nil {
					t.Fatalf("create %s through %s: %v", fn, m.via.Node, err)
				}
				got := invokeVia(t, m.call, fn, []byte(`{"name":"mid"}`))
				if !strings.Contains(string(got.payload), "Hello, mid!") {
					t.Errorf("%s through %s: %s", fn, m.call.Node, got.payload)
				}
				t.Logf("%s, created through %s (%s), invoked through %s (%s): ran on %s", fn, m.via.Node, release(upgraded[m.via.Node]),
					m.call.Node, release(upgraded[m.call.Node]), got.node)
			}
		}
	}
	total := time.Since(begun)
	time.Sleep(3 * time.Second) // the load on the upgraded cluster a while

	// A host two protocols apart is refused at start: c, stopped, comes
	// back as a release three protocols ahead of this one (two ahead of
	// the cluster's now).
	cHost := c.Host("c")
	mu.Lock()
	secondStop := time.Now()
	mu.Unlock()
	if err := cHost.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the balancer drops c", func() bool { return !bal.target("c") })
	cHost.SetArgs("--test-protocol-ahead", "3")
	logSize := fileSize(cHost.LogPath)
	if err := cHost.Start(); err != nil {
		t.Fatal(err)
	}
	code, err := cHost.WaitExit(90 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	refusal := fileFrom(cHost.LogPath, logSize)
	want := fmt.Sprintf("incompatible protocol version: host a (%s+ahead1) speaks protocol %d..%d, this one (%s+ahead3) %d..%d; upgrade one version at a time",
		oldVersion, cluster.Protocol, cluster.Protocol+1, oldVersion, cluster.Protocol+2, cluster.Protocol+3)
	want2 := strings.Replace(want, "host a (", "host b (", 1)
	if code == 0 || (!strings.Contains(refusal, want) && !strings.Contains(refusal, want2)) {
		t.Errorf("a host two protocols apart: exit %d, output:\n%s\nwant a non-zero exit and %q", code, refusal, want)
	} else {
		t.Logf("a host two protocols apart exits %d: %s", code, lastLine(refusal))
	}
	for _, o := range []*clustertest.Host{a, c.Host("b")} {
		if st := versionsOf(t, ctx, o)["c"]; st.State != cluster.StateStopped || st.Version != oldVersion+"+ahead1" {
			t.Errorf("%s reports c as %s %q after the refused start: want its stopped record of the next release", o.Node, st.State, st.Version)
		}
	}
	time.Sleep(2 * time.Second) // the load through a and b meanwhile
	stopLoad()
	wg.Wait()
	stopBal()

	// The calls.
	stepOf := map[string]*upgradeStep{}
	for _, s := range steps {
		stepOf[s.node] = s
	}
	var made, failedAllowed, inFlight, forwardedInFlight, crossVersion, throttles int
	var slowest time.Duration
	var slowestCall call
	perVia := map[string]int{}
	for _, cl := range calls {
		made++
		perVia[cl.via]++
		throttles += cl.throttled
		s := stepOf[cl.via]
		if d := cl.end.Sub(cl.start); d > slowest && cl.err == nil {
			slowest, slowestCall = d, cl
		}
		// In flight on a host at its SIGINT, sent to it or run on it.
		if cl.start.Before(s.sigint) && cl.end.After(s.sigint) {
			inFlight++
		}
		if cl.ran != "" && cl.ran != cl.via {
			if r := stepOf[cl.ran]; cl.start.Before(r.sigint) && cl.end.After(r.sigint) {
				forwardedInFlight++
			}
			vNew := cl.start.After(s.up)
			rNew := cl.start.After(stepOf[cl.ran].up)
			if vNew != rNew {
				crossVersion++
			}
		}
		if cl.err == nil {
			continue
		}
		if !cl.start.Before(s.sigint) && cl.start.Before(s.started) && errors.Is(cl.err, syscall.ECONNREFUSED) {
			failedAllowed++
			continue
		}
		if cl.via == "c" && !cl.start.Before(secondStop) && errors.Is(cl.err, syscall.ECONNREFUSED) {
			// c's second stop, for the refused start.
			failedAllowed++
			continue
		}
		t.Errorf("a call (async %v) through %s at %s failed: %v", cl.async, cl.via, phase(cl.start, steps), cl.err)
	}
	t.Logf("the upgrade of 3 hosts took %s; %d calls made (by host %v), %d refused at connect by a stopping host (allowed), "+
		"%d in flight through a host at its SIGINT, %d forwarded to a host and in flight there at its SIGINT; %d ran on a host of the other release than the one they came through; "+
		"%d throttles tried again; slowest call %s (async %v, through %s, ran on %s, sent at %s)",
		total.Round(100*time.Millisecond), made, perVia, failedAllowed, inFlight, forwardedInFlight, crossVersion, throttles, slowest.Round(time.Millisecond),
		slowestCall.async, slowestCall.via, slowestCall.ran, phase(slowestCall.start, steps))

	// Every accepted event delivered.
	missing := map[string]acceptedEvent{}
	for id, ev := range accepted {
		missing[id] = ev
	}
	records := 0
	drain(ctx, t, []*clustertest.Host{a, c.Host("b")}, doneQueue, time.Minute,
		func(body string) { records++; delete(missing, requestIDOf(t, body)) },
		func() bool { return len(missing) == 0 })
	t.Logf("async: %d events accepted, %d OnSuccess records received", len(accepted), records)
	if len(missing) > 0 {
		byPhase := map[string][]string{}
		for id, ev := range missing {
			p := phase(ev.at, steps)
			p = p[strings.Index(p, "("):]
			byPhase[p] = append(byPhase[p], ev.via+":"+id)
		}
		t.Errorf("%d of %d accepted events never delivered (%s), by when they were accepted: %v", len(missing), len(accepted), backlogOf(ctx, a, doneQueue), byPhase)
	}
}

// stopLine is the daemon's own account of its stop (how long each step
// took), from its log.
func stopLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "msg=stopped") {
			_, after, _ := strings.Cut(l, "msg=stopped ")
			return "the daemon says: " + after
		}
	}
	return "no account of it in the daemon's log"
}

// heldCall is the answer to a call kept in flight over a SIGINT.
type heldCall struct {
	ran, payload string
	err          error
}

// acceptedEvent is an async invocation answered 202: through which host,
// and when.
type acceptedEvent struct {
	via string
	at  time.Time
}

func release(upgraded bool) string {
	if upgraded {
		return "new"
	}
	return "old"
}

// upgradeStep is one host's upgrade: when it got its SIGINT, when the
// balancer stopped sending to it, when its next release started and
// when the balancer sent to it again.
type upgradeStep struct {
	node                          string
	sigint, excluded, started, up time.Time
}

// phase says where in the upgrade a moment falls, for messages.
func phase(at time.Time, steps []*upgradeStep) string {
	where := "before the upgrade"
	for _, s := range steps {
		switch {
		case !at.Before(s.up):
			where = s.node + " upgraded"
		case !at.Before(s.started):
			where = s.node + " starting as the next release"
		case !at.Before(s.excluded):
			where = s.node + " stopped"
		case !at.Before(s.sigint):
			where = s.node + " stopping"
		}
	}
	return fmt.Sprintf("%s (%s)", at.Format("15:04:05.000"), where)
}

// versionsOf is every host as h reports it.
func versionsOf(t *testing.T, ctx context.Context, h *clustertest.Host) map[string]cluster.HostStatus {
	t.Helper()
	st, err := h.Status(ctx)
	if err != nil {
		t.Fatalf("status through %s: %v", h.Node, err)
	}
	out := map[string]cluster.HostStatus{}
	for _, hs := range st.Hosts {
		out[hs.Node] = hs
	}
	return out
}

// statusCLI runs `hearth cluster status` against h.
func statusCLI(t *testing.T, hb string, h *clustertest.Host) string {
	t.Helper()
	cmd := exec.Command(hb, "--endpoint", h.API, "--data-dir", h.Data, "cluster", "status")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("hearth cluster status through %s: %v: %s", h.Node, err, errb.String())
	}
	return out.String()
}

// lineOf is the status table's line of node.
func lineOf(table, node string) string {
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, node+" ") {
			return l
		}
	}
	return ""
}

func indexOf(c *clustertest.Cluster, h *clustertest.Host) int {
	for i, o := range c.Hosts {
		if o == h {
			return i
		}
	}
	return -1
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// fileFrom is a file's content from offset on.
func fileFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
