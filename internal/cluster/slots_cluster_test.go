package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/broker/brokertest"
	"github.com/nats-io/nats.go/jetstream"
)

// slotsOf joins node on b and opens its slots (closed before it leaves).
func slotsOf(t *testing.T, ctx context.Context, m *Member) *Slots {
	t.Helper()
	s, err := OpenSlots(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// Three hosts on a real clustered JetStream (in process) take slots of
// one limit at once: compare-and-set on the replicated bucket keeps what
// runs across the three within the limit, and the bucket never says
// more; a host that dies holding slots loses them once the others see it
// down.
func TestSlotsOnAClusteredBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	short := func(c *Config) { c.Interval, c.DownAfter = 200*time.Millisecond, time.Second }
	nodes := []string{"a", "b", "c"}
	var slots []*Slots
	var members []*Member
	for i, node := range nodes {
		m, err := join(t, ctx, bs[i], node, short)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
		slots = append(slots, slotsOf(t, ctx, m))
	}
	kv, err := bs[0].JetStream().KeyValue(ctx, SlotsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := kv.Status(ctx); err != nil || st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != 3 {
		t.Fatalf("the slots bucket: %v, want 3 replicas", err)
	}

	const limit = 2
	var running, maxRunning, admitted, throttled atomic.Int64
	var slow []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range nodes {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					held := slots[i].Held()["fn.f"]
					start := time.Now()
					rel, err := slots[i].Take(ctx, "fn.f", limit)
					took := time.Since(start)
					if err != nil {
						if !errors.Is(err, ErrNoSlot) {
							t.Errorf("%s: %v", nodes[i], err)
						}
						throttled.Add(1)
						time.Sleep(time.Millisecond)
						continue
					}
					if held[0] <= held[1] {
						mu.Lock()
						slow = append(slow, took)
						mu.Unlock()
					}
					admitted.Add(1)
					r := running.Add(1)
					for m := maxRunning.Load(); r > m && !maxRunning.CompareAndSwap(m, r); m = maxRunning.Load() {
					}
					time.Sleep(2 * time.Millisecond)
					running.Add(-1)
					rel()
					// Given back at once: the slots change hands.
					slots[i].GiveBack(ctx, true)
				}
			}()
		}
	}
	wg.Wait()
	if m := maxRunning.Load(); m > limit {
		t.Fatalf("%d ran at once across the hosts, limit %d", m, limit)
	}
	if admitted.Load() < 10 || throttled.Load() == 0 {
		t.Fatalf("admitted %d, throttled %d: the hosts did not contend", admitted.Load(), throttled.Load())
	}
	slices.Sort(slow)
	if len(slow) > 0 {
		t.Logf("admitted %d, throttled %d, at most %d at once; a take from the bucket: p50 %s, max %s (%d takes)",
			admitted.Load(), throttled.Load(), maxRunning.Load(), slow[len(slow)/2].Round(10*time.Microsecond), slow[len(slow)-1].Round(10*time.Microsecond), len(slow))
	}
	// What a host still holds idle goes back by itself (IdleFor).
	took := poll(t, DefaultIdleFor+3*time.Second, "every slot given back once idle", func() bool {
		e, err := kv.Get(ctx, "fn.f")
		if err != nil {
			t.Fatal(err)
		}
		v, _ := decodeSlots(e.Value())
		return len(v) == 0
	})
	t.Logf("the idle slots were all back %s after the last call", took.Round(10*time.Millisecond))

	// c takes both slots of fn.g and dies with them in use.
	for range limit {
		if _, err := slots[2].Take(ctx, "fn.g", limit); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := slots[0].Take(ctx, "fn.g", limit); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("a takes while c holds both: %v, want ErrNoSlot", err)
	}
	bs[2].Shutdown(ctx)
	killed := time.Now()
	poll(t, 15*time.Second, "a takes c's slot once c is down", func() bool {
		rel, err := slots[0].Take(ctx, "fn.g", limit)
		if err == nil {
			rel()
		}
		return err == nil
	})
	h, _ := hostState(members[0], "c")
	if h.State != StateDown {
		t.Fatalf("a took c's slot while c is %s", h.State)
	}
	t.Logf("a dead host's slots taken over %s after its death", time.Since(killed).Round(10*time.Millisecond))
}
