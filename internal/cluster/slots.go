package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// Concurrency limits that hold across the hosts (reserved concurrency per
// function, the account's unreserved pool) are kept as slot leases: one
// key per limit in a replicated bucket, whose value says how many slots
// each host holds (node → held; the sum never exceeds the limit, which
// every write checks under a compare-and-set on the key's revision). A
// host admits an invocation against a slot it already holds with no
// network round trip; it takes one more from the free pool only when all
// it holds are in use, and gives back what stayed idle for IdleFor. A host
// the membership reports down or stopped loses its slots (any live host
// clears them with a compare-and-set). A host that cannot write its own
// heartbeat stops using its slots before the others can call it down:
// cut off, it throttles rather than exceed a limit.

// SlotsBucket is the slot leases' bucket.
const SlotsBucket = "hearth_slots"

// Slot defaults.
const (
	// DefaultIdleFor is how long a slot stays held unused before it is
	// given back: long enough that a steady stream of calls keeps its
	// slots, short enough that another host soon gets them.
	DefaultIdleFor = 3 * time.Second
	// slotTimeout bounds a take's round trips to the bucket: a call
	// waits that long at worst before it is throttled.
	slotTimeout = 2 * time.Second
	// slotTries bounds the compare-and-set attempts of one take or give
	// back that lose races with other hosts.
	slotTries = 8
)

// Errors of Take; both mean "throttle".
var (
	// ErrNoSlot: the limit's slots are all held.
	ErrNoSlot = errors.New("cluster: no free slot within the limit")
	// ErrCutOff: this host's heartbeats do not reach the cluster, so the
	// others may have taken back its slots; it uses none.
	ErrCutOff = errors.New("cluster: this host is cut off from the cluster; it uses no slot")
	// errConflict is a compare-and-set that lost a race (the KV's).
	errConflict = errors.New("cluster: slot key changed meanwhile")
)

// SlotsKV is the bucket the slots live in; jsSlots is the JetStream one.
type SlotsKV interface {
	// Get returns a key's value and revision; revision 0 and no error
	// when there is no such key.
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	// Put writes a key if its revision is still rev (0: the key must not
	// exist): errConflict otherwise.
	Put(ctx context.Context, key string, value []byte, rev uint64) error
	// Keys lists the keys.
	Keys(ctx context.Context) ([]string, error)
}

// HostView says which hosts have lost their slots: those the membership
// reports down or stopped. A host this one has not seen is not gone (it
// may have joined a moment ago).
type HostView interface {
	Gone(node string) bool
}

// Heartbeats says when this host's heartbeats were written (Member is
// one).
type Heartbeats interface {
	// Heartbeats returns when the last heartbeat written was begun, and
	// when the first of the unbroken run of written heartbeats ending
	// with it was begun.
	Heartbeats() (last, since time.Time)
}

// SlotsConfig is a Slots'.
type SlotsConfig struct {
	KV    SlotsKV
	Node  string
	Hosts HostView
	Beats Heartbeats
	// IdleFor is how long a held slot stays unused before it is given
	// back (DefaultIdleFor when zero).
	IdleFor time.Duration
	// FenceAfter is how old this host's last written heartbeat may be
	// before it stops using its slots: less than the others' DownAfter
	// (measured from when the heartbeat was begun, which the others
	// receive later), so that it stops before they take them back.
	// Grace is how long its heartbeats must be written again, after such
	// a cut, before it trusts what it holds (the others' view of it must
	// catch up, or they may still take them back).
	FenceAfter, Grace time.Duration
	// Tick paces giving back and clearing gone hosts' slots (1 s when
	// zero).
	Tick time.Duration
	// LeaderWait is how long a take that needs the bucket waits for it
	// to answer again: when the host that led it dies, its other
	// replicas elect another within seconds, and a call meanwhile should
	// wait rather than be throttled. Zero: no wait. A host cut off stops
	// waiting as soon as it is fenced.
	LeaderWait time.Duration
	// Now is the clock (time.Now when nil; tests set their own).
	Now func() time.Time
	Log *slog.Logger
}

// Slots is this host's share of the cluster-wide concurrency limits.
type Slots struct {
	cfg SlotsConfig

	mu     sync.Mutex
	keys   map[string]*slotKey
	cut    bool      // heartbeats stale: no slot is used
	cutAt  time.Time // when the cut was seen
	closed bool

	cancel context.CancelFunc
	done   chan struct{}
}

// slotKey is this host's state for one limit. held only grows after the
// bucket recorded it, and shrinks before: the bucket says this host holds
// at least held (unless another host cleared it as gone).
type slotKey struct {
	// op orders this host's bucket operations on the key.
	op sync.Mutex
	// Under Slots.mu:
	held, inUse int
	lastUsed    time.Time
	// verify makes the next take read the bucket before using what is
	// held: set after a cut, when the others may have cleared this host.
	verify bool
	// written is the count the bucket held for this host when last read
	// or written; -1 unknown.
	written int
}

// NewSlots returns this host's slots; Start begins giving back and
// clearing.
func NewSlots(cfg SlotsConfig) *Slots {
	if cfg.IdleFor <= 0 {
		cfg.IdleFor = DefaultIdleFor
	}
	if cfg.FenceAfter <= 0 {
		cfg.FenceAfter = DefaultDownAfter - DefaultInterval
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 2 * DefaultInterval
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Slots{cfg: cfg, keys: map[string]*slotKey{}}
}

// slotValue is a key's value: slots held by node.
type slotValue map[string]int

func decodeSlots(b []byte) (slotValue, error) {
	v := slotValue{}
	if len(b) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("cluster: slot value %q: %w", b, err)
	}
	return v, nil
}

// Take admits one invocation under the limit named key, of limit slots
// across the cluster. It returns the function that ends the invocation
// (its slot stays held, for the next one, until it idles), or ErrNoSlot
// or ErrCutOff (throttle), or the bucket's error (throttle too: fail
// closed).
func (s *Slots) Take(ctx context.Context, key string, limit int) (func(), error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrCutOff
	}
	if s.fenced() {
		s.mu.Unlock()
		return nil, ErrCutOff
	}
	k := s.keys[key]
	if k == nil {
		k = &slotKey{written: -1}
		s.keys[key] = k
	}
	if !k.verify && k.held > k.inUse {
		// The hot path: a slot this host holds.
		k.inUse++
		s.mu.Unlock()
		return s.releaser(k), nil
	}
	s.mu.Unlock()

	k.op.Lock()
	defer k.op.Unlock()
	deadline := time.Now().Add(s.cfg.LeaderWait)
	for lost := 0; ; {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), slotTimeout)
		ok, err := s.takeOnce(tctx, key, k, limit)
		cancel()
		switch {
		case ok:
			return s.releaser(k), nil
		case errors.Is(err, errConflict):
			if lost++; lost >= slotTries {
				return nil, fmt.Errorf("cluster: slot %s: %d compare-and-sets lost in a row: %w", key, slotTries, ErrNoSlot)
			}
			continue
		case errors.Is(err, ErrNoSlot), errors.Is(err, ErrCutOff):
			return nil, err
		}
		// The bucket did not answer: wait for it (a leader being
		// elected), unless this host is cut off or the wait is over.
		s.mu.Lock()
		fenced := s.fenced()
		s.mu.Unlock()
		if fenced {
			return nil, ErrCutOff
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// takeOnce reads the key and takes what this host lacks for one more
// invocation, in one compare-and-set; k.op held.
func (s *Slots) takeOnce(ctx context.Context, key string, k *slotKey, limit int) (bool, error) {
	b, rev, err := s.cfg.KV.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("cluster: reading slot %s: %w", key, err)
	}
	v, err := decodeSlots(b)
	if err != nil {
		return false, err
	}
	own := v[s.cfg.Node]
	s.mu.Lock()
	if s.fenced() {
		s.mu.Unlock()
		return false, ErrCutOff
	}
	// Another host may have cleared this one's slots (seen down).
	k.held = min(k.held, own)
	k.written = own
	need := k.inUse + 1 - k.held
	verify := k.verify
	if need <= 0 && !verify {
		k.inUse++
		k.lastUsed = s.cfg.Now()
		s.mu.Unlock()
		return true, nil
	}
	held := k.held
	s.mu.Unlock()
	need = max(need, 0)
	others, cleared := s.others(v)
	if others+held+need > limit {
		if len(cleared) > 0 || own != held {
			// Still worth writing: gone hosts' slots cleared, this
			// host's count made true.
			s.write(ctx, key, k, v, rev, held)
		}
		return false, ErrNoSlot
	}
	// The write confirms, by its revision, that what was read is
	// current (a replica may answer a read with a stale value).
	if err := s.write(ctx, key, k, v, rev, held+need); err != nil {
		return false, err
	}
	s.mu.Lock()
	k.held += need
	k.inUse++
	k.lastUsed = s.cfg.Now()
	k.verify = false
	s.mu.Unlock()
	return true, nil
}

// others sums the slots held by live hosts other than this one, and
// takes out of v the gone hosts' (returned).
func (s *Slots) others(v slotValue) (int, []string) {
	sum := 0
	var cleared []string
	for n, h := range v {
		if n == s.cfg.Node {
			continue
		}
		if s.cfg.Hosts != nil && s.cfg.Hosts.Gone(n) {
			delete(v, n)
			cleared = append(cleared, n)
			continue
		}
		sum += h
	}
	return sum, cleared
}

// write puts v with this host's count set to held, if the key is still
// at rev; k.op held.
func (s *Slots) write(ctx context.Context, key string, k *slotKey, v slotValue, rev uint64, held int) error {
	v = maps.Clone(v)
	if held > 0 {
		v[s.cfg.Node] = held
	} else {
		delete(v, s.cfg.Node)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.cfg.KV.Put(ctx, key, b, rev); err != nil {
		if errors.Is(err, errConflict) {
			return err
		}
		return fmt.Errorf("cluster: writing slot %s: %w", key, err)
	}
	s.mu.Lock()
	k.written = held
	s.mu.Unlock()
	return nil
}

// releaser ends one invocation: its slot stays held until it idles.
func (s *Slots) releaser(k *slotKey) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			k.inUse--
			k.lastUsed = s.cfg.Now()
			s.mu.Unlock()
		})
	}
}

// fenced reports whether this host must not use its slots: its last
// written heartbeat is older than FenceAfter, or its heartbeats came back
// after such a cut less than Grace ago. Marking every key to be verified
// when a cut begins; s.mu held.
func (s *Slots) fenced() bool {
	if s.cfg.Beats == nil {
		return false
	}
	now := s.cfg.Now()
	last, since := s.cfg.Beats.Heartbeats()
	if now.Sub(last) > s.cfg.FenceAfter {
		if !s.cut {
			s.cut, s.cutAt = true, now
			for _, k := range s.keys {
				k.verify = true
			}
			s.cfg.Log.Warn("heartbeats do not reach the cluster: this host uses no concurrency slot until they do",
				"node", s.cfg.Node, "lastHeartbeat", last)
		}
		return true
	}
	if s.cut {
		if last.Sub(later(since, s.cutAt)) < s.cfg.Grace {
			return true
		}
		s.cut = false
		s.cfg.Log.Info("heartbeats reach the cluster again: this host takes concurrency slots again", "node", s.cfg.Node)
	}
	return false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Held reports, by key, the slots this host holds and uses.
func (s *Slots) Held() map[string][2]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][2]int{}
	for key, k := range s.keys {
		out[key] = [2]int{k.held, k.inUse}
	}
	return out
}

// Start gives back idle slots and clears gone hosts' every Tick, until
// Close. It first clears what a previous run of this node left held.
func (s *Slots) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.sweep(ctx, true)
		t := time.NewTicker(s.cfg.Tick)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.GiveBack(ctx, false)
			if n%5 == 0 {
				s.sweep(ctx, false)
			}
		}
	}()
}

// GiveBack gives back the slots held beyond those in use: those idle for
// IdleFor, or all with all set (at close).
func (s *Slots) GiveBack(ctx context.Context, all bool) {
	s.mu.Lock()
	keys := slices.Collect(maps.Keys(s.keys))
	s.mu.Unlock()
	slices.Sort(keys)
	for _, key := range keys {
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		k := s.keys[key]
		s.mu.Unlock()
		if !k.op.TryLock() {
			continue // a take is under way: it uses the key
		}
		s.giveBack(ctx, key, k, all)
		k.op.Unlock()
	}
}

// giveBack lowers what this host holds of key to what it uses, once idle,
// and writes it; k.op held.
func (s *Slots) giveBack(ctx context.Context, key string, k *slotKey, all bool) {
	s.mu.Lock()
	if k.held > k.inUse && (all || s.cfg.Now().Sub(k.lastUsed) >= s.cfg.IdleFor) {
		// Lowered first: no invocation starts on what is given back.
		k.held = k.inUse
	}
	held, written := k.held, k.written
	s.mu.Unlock()
	if written == held {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, slotTimeout)
	defer cancel()
	for range slotTries {
		b, rev, err := s.cfg.KV.Get(ctx, key)
		if err != nil {
			return // again at the next tick
		}
		v, err := decodeSlots(b)
		if err != nil {
			s.cfg.Log.Warn("slot value", "key", key, "err", err)
			return
		}
		own := v[s.cfg.Node]
		s.mu.Lock()
		k.held = min(k.held, own)
		k.written = own
		held = k.held
		s.mu.Unlock()
		if own == held {
			return
		}
		s.others(v)
		if err := s.write(ctx, key, k, v, rev, held); !errors.Is(err, errConflict) {
			return
		}
	}
}

// sweep clears, in every key, the slots of gone hosts and, with mine set,
// those this node holds that this process does not know of (a previous
// run's, after a crash).
func (s *Slots) sweep(ctx context.Context, mine bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*slotTimeout)
	defer cancel()
	keys, err := s.cfg.KV.Keys(ctx)
	if err != nil {
		return
	}
	for _, key := range keys {
		s.mu.Lock()
		k := s.keys[key]
		if k == nil {
			k = &slotKey{written: -1}
			s.keys[key] = k
		}
		s.mu.Unlock()
		if !k.op.TryLock() {
			continue
		}
		for range slotTries {
			b, rev, err := s.cfg.KV.Get(ctx, key)
			if err != nil || rev == 0 {
				break
			}
			v, err := decodeSlots(b)
			if err != nil {
				break
			}
			own := v[s.cfg.Node]
			s.mu.Lock()
			k.held = min(k.held, own)
			held := k.held
			k.written = own
			s.mu.Unlock()
			if !mine {
				// Giving back is GiveBack's: only gone hosts change here.
				held = own
			}
			_, cleared := s.others(v)
			if len(cleared) == 0 && (own == held || !mine) {
				break
			}
			if len(cleared) > 0 {
				s.cfg.Log.Info("clearing the concurrency slots of hosts gone", "key", key, "hosts", cleared)
			}
			if err := s.write(ctx, key, k, v, rev, held); !errors.Is(err, errConflict) {
				break
			}
		}
		k.op.Unlock()
	}
}

// Close stops the loop and gives back every slot not in use (this host
// takes none after).
func (s *Slots) Close(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	ctx, cancel := context.WithTimeout(ctx, slotTimeout)
	defer cancel()
	s.GiveBack(ctx, true)
}
