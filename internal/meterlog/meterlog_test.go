package meterlog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/store"
)

// host is one host of the test cluster: a clustered broker, a store and
// its meter log.
type host struct {
	node string
	cfg  broker.Config
	b    *broker.Broker
	st   *store.Store
	ml   *Log
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		defer l.Close()
	}
	return ports
}

// startHosts starts n hosts of one cluster on loopback, their brokers
// at once (each waits for a quorum).
func startHosts(t *testing.T, ctx context.Context, n int) []*host {
	t.Helper()
	ports := freePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hs := make([]*host, n)
	for i := range n {
		node := fmt.Sprintf("n%d", i)
		st, err := store.Open(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = &host{node: node, st: st, cfg: broker.Config{Dir: filepath.Join(t.TempDir(), "js"), Log: log,
			Cluster: &broker.Cluster{Name: "test", Node: node, Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes}}}
	}
	t.Cleanup(func() {
		for _, h := range hs {
			h.stop()
			h.st.Close()
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.start(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
	}
	return hs
}

func (h *host) start(ctx context.Context) error {
	b, err := broker.New(ctx, h.cfg)
	if err != nil {
		return err
	}
	h.b = b
	h.ml, err = Open(ctx, Config{JetStream: b.JetStream(), Replicas: b.Replicas(), Node: h.node, Store: h.st, Poll: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return err
}

func (h *host) stop() {
	if h.ml != nil {
		h.ml.Close()
		h.ml = nil
	}
	if h.b != nil {
		h.b.Shutdown(context.Background())
		h.b = nil
	}
}

func (h *host) write(t *testing.T, fn string, n int) {
	t.Helper()
	for i := range n {
		r := meter.Record{Time: time.Now().UTC(), Function: fn, StartType: "warm", DurationMs: float64(i + 1), MemoryMB: 128}
		r.Bill(meter.Prices{})
		if err := h.st.AddRecord(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if h.ml != nil {
			h.ml.Nudge()
		}
	}
}

// counts is a host's records by (host, function): "" is its own.
func (h *host) counts(t *testing.T) map[string]int {
	t.Helper()
	recs, err := h.st.Records(context.Background(), "", time.Unix(0, 0), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range recs {
		out[r.Host+"|"+r.Function]++
	}
	return out
}

// want is what host i should hold when each host j wrote n[j] records of
// function "f<j>".
func want(i int, n []int) map[string]int {
	out := map[string]int{}
	for j, k := range n {
		if k == 0 {
			continue
		}
		h := fmt.Sprintf("n%d", j)
		if j == i {
			h = ""
		}
		out[fmt.Sprintf("%s|f%d", h, j)] = k
	}
	return out
}

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// waitCounts waits until every host holds exactly what want says, and
// then a while more, to see that nothing arrives twice late.
func waitCounts(t *testing.T, hs []*host, n []int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		ok := true
		for i, h := range hs {
			if !equal(h.counts(t), want(i, n)) {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			for i, h := range hs {
				t.Errorf("n%d holds %v, want %v", i, h.counts(t), want(i, n))
			}
			t.Fatalf("not converged after %s", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	for i, h := range hs {
		if got := h.counts(t); !equal(got, want(i, n)) {
			t.Fatalf("n%d later holds %v, want %v", i, got, want(i, n))
		}
	}
	return took
}

// Three hosts on one clustered JetStream: the records written on each
// appear on the others exactly once, with their host; a record published
// again under another id (as after a crash beyond the duplicate window)
// changes nothing; a host that was down publishes what it wrote while
// down and catches up with what the others wrote meanwhile.
func TestMeterAcrossHosts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hs := startHosts(t, ctx, 3)
	n := []int{20, 30, 40}
	for i, h := range hs {
		h.write(t, fmt.Sprintf("f%d", i), n[i])
	}
	took := waitCounts(t, hs, n, 30*time.Second)
	t.Logf("%d records on 3 hosts everywhere in %s", n[0]+n[1]+n[2], took)

	// n0's first event published again under a new id: a new stream
	// sequence, the same event.
	ev := store.MeterEvent{}
	// Tried again while the stream has no leader for a moment ("no
	// responders"), as the daemon's own publishes are; the publish is
	// stored once whatever happens, by its id.
	if err := broker.RetryWithin(ctx, broker.LeaderWait, func(ctx context.Context) error {
		cons, err := hs[1].b.JetStream().OrderedConsumer(ctx, DefaultStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{SubjectPrefix + "n0"}})
		if err != nil {
			return err
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			return err
		}
		m := nats.NewMsg(SubjectPrefix + "n0")
		m.Data = msg.Data()
		m.Header.Set(jetstream.MsgIDHeader, "again-"+ev.ID())
		_, err = hs[1].b.JetStream().PublishMsg(ctx, m)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != "record" || ev.Seq != 1 {
		t.Fatalf("n0's first event: %+v", ev)
	}
	waitCounts(t, hs, n, 10*time.Second)

	// n2 stops; the others write, and so does n2 (its outbox keeps them).
	hs[2].stop()
	hs[0].write(t, "f0", 7)
	hs[1].write(t, "f1", 9)
	hs[2].write(t, "f2", 5)
	n = []int{27, 39, 45}
	deadline := time.Now().Add(20 * time.Second)
	for !(hs[0].counts(t)["n1|f1"] == 39 && hs[1].counts(t)["n0|f0"] == 27) {
		if time.Now().After(deadline) {
			t.Fatalf("the two hosts left do not see each other's records: %v, %v", hs[0].counts(t), hs[1].counts(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := hs[0].counts(t)["n2|f2"]; got != 40 {
		t.Fatalf("n0 holds %d of n2's records while n2 is down, want 40", got)
	}
	if err := hs[2].start(ctx); err != nil {
		t.Fatal(err)
	}
	took = waitCounts(t, hs, n, 60*time.Second)
	t.Logf("n2 restarted: caught up and published its backlog in %s", took)
	for i, h := range hs {
		if st := h.ml.Stats(); st.Refused != 0 {
			t.Errorf("n%d refused %d events", i, st.Refused)
		}
	}
}

// A burst on one host reaches the others: how fast the publisher
// empties its outbox over a replicated stream.
func TestMeterBurst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hs := startHosts(t, ctx, 3)
	const burst = 1000
	start := time.Now()
	hs[0].write(t, "f0", burst)
	wrote := time.Since(start)
	took := waitCounts(t, hs, []int{burst, 0, 0}, 60*time.Second)
	t.Logf("%d records written on n0 in %s (%.0f µs each, the outbox included); on every host %s after the last write (%.0f/s)",
		burst, wrote, float64(wrote.Microseconds())/burst, took, burst/(wrote+took).Seconds())
}
