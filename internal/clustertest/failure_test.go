package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
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

// syncCall is one synchronous invocation of the load.
type syncCall struct {
	via        string
	start, end time.Time
	node       string
	err        error
}

// One host killed -9 under a load of sync and async invocations through
// every host: the calls through the live hosts that start after the kill
// all succeed (only calls in flight at the kill may fail); every event a
// host accepted (202) reaches the OnSuccess queue; every queue message
// sent before the kill, the ones the dead host had handed out included,
// is received after it; the others report the dead host down.
func TestKillHostUnderLoad(t *testing.T) {
	testvm.Driver(t)
	zip, err := os.ReadFile(testvm.FunctionZip(t, "./examples/hello"))
	if err != nil {
		t.Fatal(err)
	}
	c := clustertest.Start(t, clustertest.Options{Args: []string{"--keep-warm", "20s", "--async-ack-wait", "5s"}})
	a, b := c.Host("a"), c.Host("b")
	ctx := context.Background()
	if _, err := a.Lambda().CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(60), MemorySize: aws.Int32(128)}); err != nil {
		t.Fatal(err)
	}
	sq := a.SQS()
	queueURL := map[string]*string{}
	for _, q := range []string{"done", "inbox"} {
		out, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(q)})
		if err != nil {
			t.Fatal(err)
		}
		queueURL[q] = out.QueueUrl
	}
	if _, err := a.Lambda().PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("hello"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:sqs:local:000000000000:done")}}}); err != nil {
		t.Fatal(err)
	}
	// The victim runs the function: the first call, through b, starts it
	// there, and the load then goes to its warm environment first.
	first := invokeVia(t, b, "hello", []byte(`{"name":"first"}`))
	victim := c.Host(first.node)
	if victim == nil {
		t.Fatalf("the first call ran on %q", first.node)
	}
	var live []*clustertest.Host
	for _, h := range c.Hosts {
		if h != victim {
			live = append(live, h)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, h := range live {
		if err := c.WaitFor(wctx, h, victim.Node+" warm with hello", func(st api.ClusterStatus) bool {
			for _, hs := range st.Hosts {
				if hs.Node == victim.Node && hs.Load.Functions["hello"].Warm+hs.Load.Functions["hello"].Busy > 0 {
					return true
				}
			}
			return false
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Queue messages before the kill, through every host; five of them
	// handed out by the victim and not deleted when it dies.
	var sent []string
	for i := range 30 {
		h := c.Hosts[i%len(c.Hosts)]
		body := fmt.Sprintf("m%02d", i)
		if _, err := h.SQS().SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queueURL["inbox"], MessageBody: aws.String(body)}); err != nil {
			t.Fatalf("send %s through %s: %v", body, h.Node, err)
		}
		sent = append(sent, body)
	}
	held, err := victim.SQS().ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queueURL["inbox"], MaxNumberOfMessages: 5, VisibilityTimeout: 5})
	if err != nil || len(held.Messages) == 0 {
		t.Fatalf("receive through %s: %v %v", victim.Node, held, err)
	}

	// The load: one sync caller and one async caller per host.
	var (
		mu       sync.Mutex
		calls    []syncCall
		accepted = map[string]string{} // request id → the host that took it
		asyncErr []string
		killed   time.Time
		// throttled counts the sync calls throttled (and tried again).
		throttled int
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, h := range c.Hosts {
		lc := h.Lambda()
		stopped := func() bool {
			mu.Lock()
			defer mu.Unlock()
			return loadCtx.Err() != nil || (h == victim && !killed.IsZero())
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; !stopped(); i++ {
				callCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
				sc := syncCall{via: h.Node, start: time.Now()}
				out, err := lc.Invoke(callCtx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(fmt.Sprintf(`{"name":"%s%d"}`, h.Node, i))})
				cancel()
				sc.end = time.Now()
				if tooMany := (*types.TooManyRequestsException)(nil); errors.As(err, &tooMany) {
					// A throttle (boots queued on a loaded machine) is
					// retried, as Lambda's clients do: counted, not failed.
					mu.Lock()
					throttled++
					mu.Unlock()
					time.Sleep(200 * time.Millisecond)
					continue
				}
				switch {
				case err != nil:
					sc.err = err
				case out.FunctionError != nil:
					sc.err = fmt.Errorf("function error %s: %s", *out.FunctionError, out.Payload)
				case !strings.Contains(string(out.Payload), fmt.Sprintf("Hello, %s%d!", h.Node, i)):
					sc.err = fmt.Errorf("payload %s", out.Payload)
				}
				if err == nil {
					if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
						sc.node = raw.Header.Get(api.NodeHeader)
					}
				}
				mu.Lock()
				calls = append(calls, sc)
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; !stopped(); i++ {
				callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				out, err := lc.Invoke(callCtx, &lambda.InvokeInput{FunctionName: aws.String("hello"), InvocationType: types.InvocationTypeEvent,
					Payload: []byte(fmt.Sprintf(`{"name":"async-%s%d"}`, h.Node, i))})
				cancel()
				mu.Lock()
				if err == nil && out.StatusCode == 202 {
					id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
					accepted[id] = h.Node
				} else if h != victim || killed.IsZero() {
					asyncErr = append(asyncErr, fmt.Sprintf("through %s: %+v %v", h.Node, out, err))
				}
				mu.Unlock()
				time.Sleep(150 * time.Millisecond)
			}
		}()
	}
	time.Sleep(5 * time.Second)
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	if err := victim.Kill(); err != nil {
		t.Errorf("kill %s: %v", victim.Node, err)
	}
	// The victim may take a call until its process is gone (the signal
	// goes after its VMs are listed): only from here is it dead.
	dead := time.Now()
	t.Logf("killed %s -9 five seconds into the load (reaped in %s)", victim.Node, dead.Sub(killed).Round(time.Millisecond))

	// The others report it down.
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, h := range live {
		if err := c.WaitFor(dctx, h, victim.Node+" down", func(st api.ClusterStatus) bool {
			for _, hs := range st.Hosts {
				if hs.Node == victim.Node && hs.State == cluster.StateDown {
					return true
				}
			}
			return false
		}); err != nil {
			t.Error(err)
		}
		t.Logf("%s reports %s down %s after the kill", h.Node, victim.Node, time.Since(killed).Round(100*time.Millisecond))
	}
	// The load goes on through the live hosts a while after that.
	time.Sleep(8 * time.Second)
	stopLoad()
	wg.Wait()

	// Sync calls: none fails before the kill; through the live hosts, only
	// a call in flight at the kill (started before the victim was gone,
	// perhaps forwarded to it) may fail.
	var before, after, inFlight, failedInFlight int
	ranOn := map[string]int{}
	for _, sc := range calls {
		switch {
		case sc.end.Before(killed):
			before++
			if sc.err != nil {
				t.Errorf("a call through %s before the kill failed: %v", sc.via, sc.err)
			}
		case sc.start.Before(dead):
			inFlight++
			if sc.err != nil {
				failedInFlight++
				t.Logf("a call through %s in flight at the kill failed (allowed): %v", sc.via, sc.err)
			}
		case sc.via != victim.Node:
			after++
			ranOn[sc.node]++
			if sc.err != nil {
				t.Errorf("a call through %s %s after the kill failed: %v", sc.via, sc.start.Sub(killed).Round(time.Millisecond), sc.err)
			}
		}
	}
	t.Logf("sync calls: %d before the kill, %d in flight at it (%d failed), %d after it through the live hosts (ran on %v); %d throttled and tried again",
		before, inFlight, failedInFlight, after, ranOn, throttled)
	if before == 0 || after < len(live) {
		t.Errorf("too little load: %d calls before the kill, %d after", before, after)
	}
	if ranOn[victim.Node] > 0 {
		t.Errorf("%d calls after the kill answered as run on the dead host", ranOn[victim.Node])
	}
	for _, e := range asyncErr {
		t.Errorf("async invoke refused: %s", e)
	}

	// Every accepted event's OnSuccess record arrives (at least once).
	missing := map[string]string{}
	for id, via := range accepted {
		missing[id] = via
	}
	records := 0
	drain(ctx, t, live, queueURL["done"], time.Minute,
		func(body string) { records++; delete(missing, requestIDOf(t, body)) },
		func() bool { return len(missing) == 0 })
	byVia := map[string]int{}
	for _, via := range accepted {
		byVia[via]++
	}
	t.Logf("async: %d events accepted (by host %v), %d records received", len(accepted), byVia, records)
	if len(missing) > 0 {
		t.Errorf("%d of %d accepted events never reached the OnSuccess queue: %v", len(missing), len(accepted), missing)
	}
	if byVia[victim.Node] == 0 {
		t.Errorf("the victim accepted no event before the kill: the test proves little")
	}

	// Every queue message sent before the kill, the victim's held ones
	// after their visibility timeout.
	seen := map[string]bool{}
	drain(ctx, t, live, queueURL["inbox"], time.Minute,
		func(body string) { seen[body] = true },
		func() bool { return len(seen) >= len(sent) })
	var lost []string
	for _, body := range sent {
		if !seen[body] {
			lost = append(lost, body)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d queue messages sent before the kill never received after it: %v", len(lost), len(sent), lost)
	}
}

// fnView is what must read the same on every host.
type fnView struct {
	Description, RevisionID, CodeSha256 string
	Timeout                             int32
}

func functionsVia(ctx context.Context, h *clustertest.Host) (map[string]fnView, error) {
	out := map[string]fnView{}
	p := lambda.NewListFunctionsPaginator(h.Lambda(), &lambda.ListFunctionsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, f := range page.Functions {
			out[aws.ToString(f.FunctionName)] = fnView{Description: aws.ToString(f.Description), RevisionID: aws.ToString(f.RevisionId),
				CodeSha256: aws.ToString(f.CodeSha256), Timeout: aws.ToInt32(f.Timeout)}
		}
	}
	return out, nil
}

// A host cut off from the others cannot change the configuration (its
// writes fail or time out; they do not diverge) while the majority
// writes; healed, it reads what the majority wrote, and its failed writes
// left nothing behind, on any host.
func TestPartitionedHostRejoins(t *testing.T) {
	testvm.Driver(t)
	zip, err := os.ReadFile(testvm.FunctionZip(t, "./examples/hello"))
	if err != nil {
		t.Fatal(err)
	}
	// --debug: the broker's notices (which host leads which stream).
	c := clustertest.Start(t, clustertest.Options{Args: []string{"--debug"}})
	a := c.Host("a")
	ctx := context.Background()
	create := func(ctx context.Context, lc *lambda.Client, name, desc string) error {
		_, err := lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: types.RuntimeProvidedal2023,
			Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Description: aws.String(desc)})
		return err
	}
	if err := create(ctx, a.Lambda(), "cfg", "v1"); err != nil {
		t.Fatal(err)
	}
	// The host cut off is the configuration log's leader, the worst case
	// (the majority's writes wait for JetStream to elect another): b from
	// here on, whichever host it is; a and third the majority.
	b, _ := streamLeader(t, c, "HEARTH_CONFIG")
	var rest []*clustertest.Host
	for _, h := range c.Hosts {
		if h != b {
			rest = append(rest, h)
		}
	}
	a, third := rest[0], rest[1]
	t.Logf("cutting off %s, the configuration log's leader; %s and %s are the majority", b.Node, a.Node, third.Node)
	// b has it before the cut.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.Lambda().GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("cfg")})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never saw cfg: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	if err := c.Partition(b); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	// The majority writes (retrying while JetStream elects new leaders,
	// if b led some).
	retry := func(what string, f func(context.Context) error) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := f(cctx)
			cancel()
			if err == nil {
				t.Logf("%s: done %s after the cut", what, time.Since(cut).Round(100*time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s through the majority: %v", what, err)
			}
			t.Logf("%s: %v (again)", what, err)
			time.Sleep(time.Second)
		}
	}
	retry("update cfg through "+a.Node, func(ctx context.Context) error {
		_, err := a.Lambda().UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("cfg"),
			Description: aws.String("v2"), Timeout: aws.Int32(42)})
		return err
	})
	retry("create majority through "+third.Node, func(ctx context.Context) error {
		err := create(ctx, third.Lambda(), "majority", "from the majority")
		var exists *types.ResourceConflictException
		if errors.As(err, &exists) {
			return nil // an earlier try that timed out made it
		}
		return err
	})

	// When the majority elected the log's new leader (its writes above
	// resume only at their next try, a second after a 503).
	if h, at := streamLeader(t, c, "HEARTH_CONFIG"); h != b {
		t.Logf("%s leads the configuration log %s after the cut", h.Node, at.Sub(cut).Round(100*time.Millisecond))
	} else {
		t.Errorf("%s, cut off, is still the last host to have led the configuration log", b.Node)
	}
	// The cut-off host: its writes must not succeed.
	bl := b.LambdaInside()
	if g, err := bl.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("cfg")}); err == nil {
		t.Logf("b reads cfg while cut off: description %q (stale reads are allowed)", aws.ToString(g.Configuration.Description))
	} else {
		t.Logf("b reads cfg while cut off: %v", err)
	}
	writes := []struct {
		what string
		do   func(context.Context) error
	}{
		{"update cfg through " + b.Node, func(ctx context.Context) error {
			_, err := bl.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("cfg"),
				Description: aws.String("from the partition"), Timeout: aws.Int32(7)})
			return err
		}},
		{"create orphan through " + b.Node, func(ctx context.Context) error { return create(ctx, bl, "orphan", "from the partition") }},
		{"delete cfg through " + b.Node, func(ctx context.Context) error {
			_, err := bl.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("cfg")})
			return err
		}},
	}
	for _, w := range writes {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		err := w.do(wctx)
		cancel()
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s while cut off succeeded", w.what)
			continue
		}
		t.Logf("%s while cut off: failed after %s: %v", w.what, took.Round(100*time.Millisecond), err)
		// Fast and clear: a retryable 503 ServiceException that says
		// why, within the store's bound (3 s to append, 2 to confirm).
		var se *types.ServiceException
		var re *smithyhttp.ResponseError
		if !errors.As(err, &se) || !strings.Contains(se.ErrorMessage(), "cannot reach the cluster's quorum") ||
			!errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable {
			t.Errorf("%s while cut off: %v, want a 503 ServiceException saying the quorum is out of reach", w.what, err)
		}
		if took > 7*time.Second {
			t.Errorf("%s while cut off answered after %s, want within 7 s", w.what, took)
		}
	}

	if err := c.Heal(b); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	hctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, h := range c.Hosts {
		if err := c.WaitUp(hctx, h, len(c.Hosts)); err != nil {
			t.Fatal(err)
		}
	}
	// Every host reads the majority's configuration, and the same.
	want := func(views map[string]fnView) error {
		if v := views["cfg"]; v.Description != "v2" || v.Timeout != 42 {
			return fmt.Errorf("cfg reads %+v, want the majority's v2, timeout 42", v)
		}
		if _, ok := views["majority"]; !ok {
			return errors.New("no function majority")
		}
		if _, ok := views["orphan"]; ok {
			return errors.New("the partitioned host's orphan exists")
		}
		return nil
	}
	check := func() error {
		var first map[string]fnView
		for _, h := range c.Hosts {
			views, err := functionsVia(ctx, h)
			if err != nil {
				return fmt.Errorf("through %s: %w", h.Node, err)
			}
			if err := want(views); err != nil {
				return fmt.Errorf("through %s: %w", h.Node, err)
			}
			if first == nil {
				first = views
				continue
			}
			if fmt.Sprint(sorted(views)) != fmt.Sprint(sorted(first)) {
				return fmt.Errorf("through %s: %v, through a: %v", h.Node, sorted(views), sorted(first))
			}
		}
		return nil
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		err := check()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the heal: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("every host reads the same configuration %s after the heal", time.Since(healed).Round(100*time.Millisecond))
	// A refused write that was still pending somewhere must not land
	// late: the same some seconds on.
	time.Sleep(5 * time.Second)
	if err := check(); err != nil {
		t.Errorf("5 s later: %v", err)
	}
	// The healed host takes writes again, and the others see them.
	retry("update cfg through "+b.Node+" after the heal", func(ctx context.Context) error {
		_, err := b.Lambda().UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("cfg"),
			Description: aws.String("v3")})
		return err
	})
	deadline = time.Now().Add(30 * time.Second)
	for {
		g, err := a.Lambda().GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("cfg")})
		if err == nil && aws.ToString(g.Configuration.Description) == "v3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a never read b's v3: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sorted(m map[string]fnView) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%+v", k, v))
	}
	sort.Strings(out)
	return out
}

// streamLeader is the host whose embedded NATS last became the leader of
// stream (it logs "new stream leader" when it does), and when.
func streamLeader(t *testing.T, c *clustertest.Cluster, stream string) (*clustertest.Host, time.Time) {
	t.Helper()
	mark := "new stream leader for '$G > " + stream + "'"
	var leader *clustertest.Host
	var at string
	for _, h := range c.Hosts {
		b, err := os.ReadFile(h.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, mark) {
				continue
			}
			// slog's text lines start time=<RFC 3339, fixed width>.
			ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			if ts >= at {
				leader, at = h, ts
			}
		}
	}
	if leader == nil {
		t.Fatalf("no host logged that it leads %s", stream)
	}
	when, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		t.Fatalf("the time of %s's line %q: %v", leader.Node, at, err)
	}
	return leader, when
}
