package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeKV is a bucket with real compare-and-set, shared by several hosts'
// Slots. before, when set, runs before each Put (a race's other writer);
// fail, when set, fails every operation (a host cut off).
type fakeKV struct {
	mu     sync.Mutex
	vals   map[string][]byte
	revs   map[string]uint64
	rev    uint64
	ops    atomic.Int64
	before func(key string)
	fail   atomic.Bool
	// onPut sees every value written.
	onPut func(key string, v slotValue)
}

func newFakeKV() *fakeKV { return &fakeKV{vals: map[string][]byte{}, revs: map[string]uint64{}} }

var errFakeDown = errors.New("fake: no quorum")

func (f *fakeKV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	f.ops.Add(1)
	if f.fail.Load() {
		return nil, 0, errFakeDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.vals[key]), f.revs[key], nil
}

func (f *fakeKV) Put(ctx context.Context, key string, value []byte, rev uint64) error {
	f.ops.Add(1)
	if f.fail.Load() {
		return errFakeDown
	}
	if b := f.before; b != nil {
		b(key)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.revs[key] != rev {
		return errConflict
	}
	f.rev++
	f.vals[key], f.revs[key] = slices.Clone(value), f.rev
	if f.onPut != nil {
		v, _ := decodeSlots(value)
		f.onPut(key, v)
	}
	return nil
}

func (f *fakeKV) Keys(ctx context.Context) ([]string, error) {
	if f.fail.Load() {
		return nil, errFakeDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// held reads what the bucket says each host holds of key.
func (f *fakeKV) held(t *testing.T, key string) slotValue {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	v, err := decodeSlots(f.vals[key])
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// set writes a key's value directly (a previous run's leftovers).
func (f *fakeKV) set(key string, v slotValue) {
	b, _ := json.Marshal(v)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	f.vals[key], f.revs[key] = b, f.rev
}

// fakeHosts is the membership's view: the nodes gone.
type fakeHosts struct {
	mu   sync.Mutex
	gone map[string]bool
}

func (h *fakeHosts) Gone(node string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gone[node]
}

func (h *fakeHosts) set(node string, gone bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone == nil {
		h.gone = map[string]bool{}
	}
	h.gone[node] = gone
}

// clock is a settable clock; beats are a host's heartbeats on it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type beats struct {
	mu          sync.Mutex
	last, since time.Time
}

func (b *beats) Heartbeats() (time.Time, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last, b.since
}

// beat records a heartbeat written at t (ok) or failed.
func (b *beats) beat(t time.Time, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !ok {
		b.since = time.Time{}
		return
	}
	if b.since.IsZero() {
		b.since = t
	}
	b.last = t
}

// world is several hosts' Slots over one fake bucket and clock.
type world struct {
	kv    *fakeKV
	hosts *fakeHosts
	clock *clock
	beats map[string]*beats
	slots map[string]*Slots
}

func newWorld(nodes ...string) *world {
	w := &world{kv: newFakeKV(), hosts: &fakeHosts{}, clock: &clock{now: time.Unix(1000, 0)},
		beats: map[string]*beats{}, slots: map[string]*Slots{}}
	for _, n := range nodes {
		b := &beats{}
		b.beat(w.clock.Now(), true)
		w.beats[n] = b
		w.slots[n] = NewSlots(SlotsConfig{KV: w.kv, Node: n, Hosts: w.hosts, Beats: b, IdleFor: 3 * time.Second,
			FenceAfter: 3 * time.Second, Grace: 2 * time.Second, Now: w.clock.Now, Log: quiet})
	}
	return w
}

// tick advances the clock by d, every host heartbeating (but those in
// cut) at the new time.
func (w *world) tick(d time.Duration, cut ...string) {
	w.clock.advance(d)
	for n, b := range w.beats {
		b.beat(w.clock.Now(), !slices.Contains(cut, n))
	}
}

// step is one action of a table case: a host takes (want an error or
// not), releases its oldest take, or time passes and hosts give back.
type step struct {
	host    string
	take    bool
	release bool
	giveBck bool
	gone    string // the membership reports this host gone
	wantErr error
}

func TestSlotsTakeAndGiveBack(t *testing.T) {
	cases := []struct {
		name  string
		limit int
		steps []step
		// want is what the bucket says each host holds at the end.
		want slotValue
	}{
		{"within the limit across hosts", 3, []step{
			{host: "a", take: true}, {host: "b", take: true}, {host: "c", take: true},
			{host: "a", take: true, wantErr: ErrNoSlot}, {host: "c", take: true, wantErr: ErrNoSlot},
		}, slotValue{"a": 1, "b": 1, "c": 1}},
		{"one host holds them all", 2, []step{
			{host: "a", take: true}, {host: "a", take: true},
			{host: "b", take: true, wantErr: ErrNoSlot},
		}, slotValue{"a": 2}},
		{"a released slot stays held until it idles", 1, []step{
			{host: "a", take: true}, {host: "a", release: true},
			{host: "b", take: true, wantErr: ErrNoSlot},
			{host: "a", take: true}, // again, from what it holds
		}, slotValue{"a": 1}},
		{"an idle slot is given back and taken by another", 1, []step{
			{host: "a", take: true}, {host: "a", release: true}, {giveBck: true},
			{host: "b", take: true},
			{host: "a", take: true, wantErr: ErrNoSlot},
		}, slotValue{"b": 1}},
		{"a slot in use is never given back", 1, []step{
			{host: "a", take: true}, {giveBck: true},
			{host: "b", take: true, wantErr: ErrNoSlot},
		}, slotValue{"a": 1}},
		{"a gone host's slots are cleared by the taker short of one", 2, []step{
			{host: "a", take: true}, {host: "a", take: true},
			{host: "b", take: true, wantErr: ErrNoSlot},
			{gone: "a"},
			{host: "b", take: true}, {host: "b", take: true},
			{host: "c", take: true, wantErr: ErrNoSlot},
		}, slotValue{"b": 2}},
		{"zero slots", 0, []step{
			{host: "a", take: true, wantErr: ErrNoSlot},
		}, slotValue{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			w := newWorld("a", "b", "c")
			taken := map[string][]func(){}
			for i, st := range tc.steps {
				switch {
				case st.take:
					rel, err := w.slots[st.host].Take(ctx, "fn.f", tc.limit)
					if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
						t.Fatalf("step %d: %s takes: %v, want %v", i, st.host, err, st.wantErr)
					}
					if err == nil {
						taken[st.host] = append(taken[st.host], rel)
					}
				case st.release:
					taken[st.host][0]()
					taken[st.host] = taken[st.host][1:]
				case st.giveBck:
					w.tick(4 * time.Second)
					for _, s := range w.slots {
						s.GiveBack(ctx, false)
					}
				case st.gone != "":
					w.hosts.set(st.gone, true)
				}
			}
			if got := w.kv.held(t, "fn.f"); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("the bucket says %v, want %v", got, tc.want)
			}
		})
	}
}

// A slot this host holds admits with no round trip to the bucket.
func TestSlotsHotPathIsLocal(t *testing.T) {
	ctx := context.Background()
	w := newWorld("a")
	s := w.slots["a"]
	rel, err := s.Take(ctx, "account", 10)
	if err != nil {
		t.Fatal(err)
	}
	rel()
	before := w.kv.ops.Load()
	for range 100 {
		rel, err := s.Take(ctx, "account", 10)
		if err != nil {
			t.Fatal(err)
		}
		rel()
	}
	if n := w.kv.ops.Load() - before; n != 0 {
		t.Fatalf("100 takes of a held slot made %d bucket operations, want 0", n)
	}
	if got := s.Held()["account"]; got != [2]int{1, 0} {
		t.Fatalf("held, in use = %v, want [1 0]", got)
	}
}

// Takers on three hosts race for the same key: compare-and-set makes
// every lost race read again, and the bucket never says more than the
// limit, nor do the hosts ever run more at once.
func TestSlotsRacesHoldTheLimit(t *testing.T) {
	for _, limit := range []int{1, 3, 7} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			ctx := context.Background()
			w := newWorld("a", "b", "c")
			var over atomic.Int64
			w.kv.onPut = func(key string, v slotValue) {
				sum := 0
				for _, h := range v {
					sum += h
				}
				if sum > limit {
					over.Add(1)
				}
			}
			var conflicts atomic.Int64
			// Between a taker's read and its write, another writes:
			// every few puts lose their race.
			var n atomic.Int64
			w.kv.before = func(key string) {
				// A wide window between read and write.
				time.Sleep(50 * time.Microsecond)
				if n.Add(1)%3 == 0 {
					conflicts.Add(1)
					w.kv.mu.Lock()
					w.kv.rev++
					w.kv.revs[key] = w.kv.rev
					w.kv.mu.Unlock()
				}
			}
			var running, maxRunning atomic.Int64
			var admitted, throttled atomic.Int64
			var wg sync.WaitGroup
			for _, node := range []string{"a", "b", "c"} {
				for range 6 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range 30 {
							rel, err := w.slots[node].Take(ctx, "fn.f", limit)
							if err != nil {
								if !errors.Is(err, ErrNoSlot) {
									t.Error(err)
								}
								throttled.Add(1)
								continue
							}
							admitted.Add(1)
							r := running.Add(1)
							for m := maxRunning.Load(); r > m && !maxRunning.CompareAndSwap(m, r); m = maxRunning.Load() {
							}
							time.Sleep(100 * time.Microsecond)
							running.Add(-1)
							rel()
							// Given back at once: slots change hands.
							w.slots[node].GiveBack(ctx, true)
						}
					}()
				}
			}
			wg.Wait()
			if over.Load() > 0 {
				t.Fatalf("the bucket said more than %d held %d times", limit, over.Load())
			}
			if m := maxRunning.Load(); m > int64(limit) {
				t.Fatalf("%d ran at once, limit %d", m, limit)
			}
			if admitted.Load() == 0 || throttled.Load() == 0 || conflicts.Load() == 0 {
				t.Fatalf("admitted %d, throttled %d, conflicts %d: the race was not run", admitted.Load(), throttled.Load(), conflicts.Load())
			}
		})
	}
}

// A host whose heartbeats stop stops using its slots before the others
// can call it down, and after they did (and cleared them) it uses only
// what the bucket says it holds.
func TestSlotsFailClosedWhenCutOff(t *testing.T) {
	ctx := context.Background()
	w := newWorld("a", "b")
	a, b := w.slots["a"], w.slots["b"]
	var rels []func()
	for range 2 {
		rel, err := a.Take(ctx, "fn.f", 2)
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, rel)
	}
	rels[0]() // one held idle, one in flight

	// a is cut off: its heartbeats fail, and the bucket is out of reach.
	w.kv.fail.Store(true)
	w.tick(2*time.Second, "a")
	rel, err := a.Take(ctx, "fn.f", 2)
	if err != nil {
		t.Fatalf("2 s after its last heartbeat a still uses what it holds; got %v", err)
	}
	rel()
	w.tick(1500*time.Millisecond, "a")
	if _, err := a.Take(ctx, "fn.f", 2); !errors.Is(err, ErrCutOff) {
		t.Fatalf("3.5 s after its last heartbeat: %v, want ErrCutOff (fail closed)", err)
	}
	// The others call it down and clear its slots.
	w.kv.fail.Store(false)
	w.tick(time.Second, "a")
	w.hosts.set("a", true)
	var brels []func()
	for range 2 {
		rel, err := b.Take(ctx, "fn.f", 2)
		if err != nil {
			t.Fatalf("b takes a's slots once a is down: %v", err)
		}
		brels = append(brels, rel)
	}
	if got := w.kv.held(t, "fn.f"); fmt.Sprint(got) != "map[b:2]" {
		t.Fatalf("bucket %v, want b:2 only", got)
	}
	// Healed: a's heartbeats are written again; within the grace it still
	// uses nothing, after it it reads the bucket and finds nothing held.
	w.hosts.set("a", false)
	w.tick(time.Second)
	if _, err := a.Take(ctx, "fn.f", 2); !errors.Is(err, ErrCutOff) {
		t.Fatalf("1 s after its heartbeats came back: %v, want ErrCutOff (grace)", err)
	}
	w.tick(2 * time.Second)
	if _, err := a.Take(ctx, "fn.f", 2); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("after the grace, with b holding both: %v, want ErrNoSlot", err)
	}
	rels[1]() // a's call in flight during the cut ends
	for _, r := range brels {
		r()
	}
	w.tick(4 * time.Second)
	b.GiveBack(ctx, false)
	if _, err := a.Take(ctx, "fn.f", 2); err != nil {
		t.Fatalf("b gave back: %v", err)
	}
	if got := w.kv.held(t, "fn.f"); fmt.Sprint(got) != "map[a:1]" {
		t.Fatalf("bucket %v, want a:1", got)
	}
}

// A host whose heartbeats stall for a moment, not long enough to be
// called down, keeps its slots: after the grace it verifies them against
// the bucket (one confirming write) and uses them again.
func TestSlotsShortStallKeepsSlots(t *testing.T) {
	ctx := context.Background()
	w := newWorld("a")
	a := w.slots["a"]
	rel, err := a.Take(ctx, "fn.f", 1)
	if err != nil {
		t.Fatal(err)
	}
	rel()
	w.tick(3500*time.Millisecond, "a")
	if _, err := a.Take(ctx, "fn.f", 1); !errors.Is(err, ErrCutOff) {
		t.Fatalf("stalled: %v, want ErrCutOff", err)
	}
	w.tick(time.Second)
	w.tick(time.Second)
	w.tick(time.Second)
	before := w.kv.ops.Load()
	rel, err = a.Take(ctx, "fn.f", 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := w.kv.ops.Load() - before; n != 2 {
		t.Fatalf("the first take after a cut made %d bucket operations, want 2 (read, confirm)", n)
	}
	rel()
	before = w.kv.ops.Load()
	if _, err := a.Take(ctx, "fn.f", 1); err != nil {
		t.Fatal(err)
	}
	if n := w.kv.ops.Load() - before; n != 0 {
		t.Fatalf("then %d bucket operations, want 0", n)
	}
}

// A host restarted (same node) clears what its previous run held, and
// the sweep clears gone hosts' slots in keys nobody is short of.
func TestSlotsSweep(t *testing.T) {
	ctx := context.Background()
	w := newWorld("a", "b")
	w.kv.set("fn.f", slotValue{"a": 2, "b": 1, "c": 1})
	w.kv.set("account", slotValue{"a": 5})
	w.hosts.set("c", true)
	w.slots["a"].sweep(ctx, true)
	if got := w.kv.held(t, "fn.f"); fmt.Sprint(got) != "map[b:1]" {
		t.Fatalf("fn.f: %v, want b:1 (a's old run and gone c cleared)", got)
	}
	if got := w.kv.held(t, "account"); len(got) != 0 {
		t.Fatalf("account: %v, want nothing", got)
	}
	// b's periodic sweep leaves its own alone.
	w.kv.set("fn.g", slotValue{"b": 1, "c": 3})
	w.slots["b"].sweep(ctx, false)
	if got := w.kv.held(t, "fn.g"); fmt.Sprint(got) != "map[b:1]" {
		t.Fatalf("fn.g: %v, want b:1", got)
	}
}

// A bucket out of reach throttles a take that needs it (fail closed).
func TestSlotsBucketUnreachable(t *testing.T) {
	w := newWorld("a")
	w.kv.fail.Store(true)
	if _, err := w.slots["a"].Take(context.Background(), "fn.f", 5); err == nil || !errors.Is(err, errFakeDown) {
		t.Fatalf("got %v, want the bucket's error", err)
	}
}

// A bucket that stops answering for a moment (its leader re-elected after
// the host that led it died) is waited for, up to LeaderWait; a host cut
// off meanwhile stops waiting.
func TestSlotsWaitForTheBucket(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wait    time.Duration
		cut     bool
		want    error
		wantErr bool
	}{
		{name: "back within the wait", wait: 5 * time.Second},
		{name: "no wait", wait: 0, want: errFakeDown, wantErr: true},
		{name: "cut off meanwhile", wait: 5 * time.Second, cut: true, want: ErrCutOff, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld("a")
			w.slots["a"].cfg.LeaderWait = tc.wait
			w.kv.fail.Store(true)
			if tc.cut {
				// Cut off while it waits: its heartbeats stop.
				cut := time.AfterFunc(300*time.Millisecond, func() { w.tick(4*time.Second, "a") })
				defer cut.Stop()
			}
			back := time.AfterFunc(1200*time.Millisecond, func() { w.kv.fail.Store(false) })
			defer back.Stop()
			done, err := w.slots["a"].Take(context.Background(), "fn.f", 5)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("take while the bucket came back: %v", err)
				}
				done()
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
