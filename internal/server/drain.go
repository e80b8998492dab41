package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/qemu"
	"github.com/hearthdev/hearth/internal/vmproxy"
)

// A drained host moves its suspended environments to the other hosts.
// For each, it asks a live host that is not drained whether it would take
// it (an offer: the function at its revision, the platform the snapshot
// needs); the host checks its QEMU version, machine type, CPU model,
// kernel and agent against it and answers. The sender then puts the
// folder's files — manifest, device state, /tmp disk, memory, as sparse
// streams, and a clone's template memory when the receiver lacks it —
// in the object store HEARTH_MOVES (JetStream chunks them, with a digest
// the reader checks), and asks the host to adopt it: the receiver writes
// them into a folder of its own, makes the manifest its own (sandbox.
// Import: its kernel, its initramfs of the same code, a network of its
// own), records it and adopts it as a restarted daemon adopts what it
// finds (invoke.Adopt). The sender ends its copy only once the receiver
// adopted it; a host whose platform differs refuses, and an environment
// no host takes is dropped: not moved, and said so in the drain's
// progress, with the reasons. It stays on the drained host (which still
// serves from it) until that host is removed.

// moveSubject is where a host takes offers and adoptions: .offer and
// .adopt after the node's name.
func moveSubject(node, what string) string { return "hearth.move." + node + "." + what }

// movesBucket is the object store the folders travel through: one
// replica (a move cut short is tried again; the sender keeps its copy
// until the receiver adopted), objects kept an hour at most.
const (
	movesBucket = "hearth_moves"
	movesTTL    = time.Hour
)

// Bounds on a move.
const (
	moveEvery     = time.Second
	offerTimeout  = 15 * time.Second
	adoptTimeout  = 10 * time.Minute
	recentMoves   = 20
	maxReason     = 1000
	maxManifestMB = 1
	// maxTmpMB is Lambda's largest ephemeral storage.
	maxTmpMB = 10240
)

// moveOffer is what a sender tells a receiver of an environment.
type moveOffer struct {
	// Move names this move: its objects are Move/<file>.
	Move string `json:"move"`
	From string `json:"from"`
	Env  string `json:"env"`
	// The function at the revision the environment runs, and what its
	// image is built of.
	Function   string   `json:"function"`
	Version    string   `json:"version"`
	Revision   string   `json:"revision"`
	CodeDigest string   `json:"codeDigest"`
	Layers     []string `json:"layers,omitempty"`
	MemoryMB   int      `json:"memoryMB"`
	// Platform is what the snapshot needs of the host that resumes it.
	Platform sandbox.Platform `json:"platform"`
	Files    []string         `json:"files"`
	// Base names the template memory a clone's delta is over (shipped as
	// Move/base when the receiver lacks it); empty for none.
	Base    string `json:"base,omitempty"`
	Network bool   `json:"network,omitempty"`
	// Root is the function's root disk (a container image's, or a
	// managed runtime's): its digest and size; the receiver uses its own
	// copy, an image's fetched from hearth_roots.
	Root *sandbox.Root `json:"root,omitempty"`
	// MicroVM is set for a MicroVM (Env is then its id, which it keeps,
	// and Function "microvm:<image>"); nil for a function's environment.
	MicroVM *microvm.Moved `json:"microvm,omitempty"`
}

// moveAnswer is a receiver's.
type moveAnswer struct {
	OK bool `json:"ok"`
	// Refused: this host cannot resume it (its platform differs), and
	// never will; otherwise a failure may pass (a configuration not yet
	// replicated, a full disk).
	Refused  bool   `json:"refused,omitempty"`
	Reason   string `json:"reason,omitempty"`
	NeedBase bool   `json:"needBase,omitempty"`
	// Env is the environment's id on the receiver.
	Env string `json:"env,omitempty"`
}

// hostPlatform is this host's part of a snapshot's platform.
type hostPlatform struct {
	QEMU, Kernel, Agent string
	ACPI                bool
	Accel               vmm.Accel
	cpu                 map[vmm.Accel]string
}

// local is the platform of a snapshot this host could resume.
func (p hostPlatform) local() sandbox.Platform {
	return sandbox.Platform{QEMU: p.QEMU, Machine: sandbox.MachineType(p.ACPI, string(p.Accel)), CPU: p.cpu[p.Accel], Kernel: p.Kernel, Agent: p.Agent}
}

// mover moves this host's suspended environments away while it is
// drained, and takes those other hosts move to it.
type mover struct {
	s    *Server
	node string
	plat hostPlatform
	objs *lazyObjects

	mu      sync.Mutex
	prog    *cluster.DrainProgress // nil while not drained
	dropped map[string]bool        // environments no host takes, this drain
	gen     uint64                 // the drain gate's generation seen
	digests map[string]string      // kernel digests by path, size and time

	adopting chan struct{} // one adoption at a time
	subs     []*nats.Subscription
	ctx      context.Context // ends at stop
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// newMover reads this host's platform.
func newMover(s *Server, node string) *mover {
	m := &mover{s: s, node: node, dropped: map[string]bool{}, digests: map[string]string{}, adopting: make(chan struct{}, 1),
		objs: &lazyObjects{js: s.broker.JetStream(), cfg: jetstream.ObjectStoreConfig{Bucket: movesBucket,
			Description: "Hearth: suspended environments moving between hosts", TTL: movesTTL, Storage: jetstream.FileStorage, Replicas: 1}}}
	m.plat = hostPlatform{QEMU: qemuVersion(s.cfg.Host.QEMU), Agent: s.host.AgentDigest, ACPI: s.host.Kernel.ACPI, Accel: s.host.Accel,
		cpu: map[vmm.Accel]string{vmm.AccelTCG: "tcg (emulated, as Hearth sets it)", vmm.AccelKVM: hostCPU()}}
	if d, err := m.kernelDigest(s.host.Kernel.Path); err == nil {
		m.plat.Kernel = d
	} else {
		s.log.Warn("drain: the kernel's digest", "err", err)
	}
	return m
}

// qemuVersion is the QEMU binary's version line ("7.2.22 (Debian …)");
// empty when it cannot be read, which no host matches.
func qemuVersion(bin string) string {
	if bin == "" {
		bin = qemu.Binary
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	v, ok := strings.CutPrefix(strings.TrimSpace(line), "QEMU emulator version ")
	if !ok {
		return strings.TrimSpace(line)
	}
	return v
}

// hostCPU is the CPU model a KVM guest sees (-cpu host): the host's model
// name and its flags.
func hostCPU() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	var model, flags string
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		switch {
		case !ok:
		case strings.TrimSpace(k) == "model name" && model == "":
			model = strings.TrimSpace(v)
		case strings.TrimSpace(k) == "flags" && flags == "":
			flags = strings.TrimSpace(v)
		}
	}
	sum := sha256.Sum256([]byte(flags))
	return fmt.Sprintf("host %s, flags %s", model, hex.EncodeToString(sum[:6]))
}

// kernelDigest is a kernel file's SHA-256, read once per path, size and
// time.
func (m *mover) kernelDigest(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	key := fmt.Sprint(path, fi.Size(), fi.ModTime().UnixNano())
	m.mu.Lock()
	d, ok := m.digests[key]
	m.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err = guestimage.FileDigest(path)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	m.digests[key] = d
	m.mu.Unlock()
	return d, nil
}

// DrainProgress implements cluster.ProgressSource.
func (m *mover) DrainProgress() *cluster.DrainProgress {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.prog == nil {
		return nil
	}
	p := *m.prog
	p.Recent = slices.Clone(p.Recent)
	return &p
}

// start takes offers and moves this host's environments while drained.
func (m *mover) start(ctx context.Context) error {
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	nc := m.s.broker.Conn()
	for _, what := range []string{"offer", "adopt"} {
		sub, err := nc.Subscribe(moveSubject(m.node, what), m.handle)
		if err != nil {
			m.stop()
			return fmt.Errorf("drain: %w", err)
		}
		m.subs = append(m.subs, sub)
	}
	m.wg.Add(1)
	go m.loop(m.ctx)
	return nil
}

// stop ends the moves (an environment being shipped goes back to its
// pool) and the offers taken.
func (m *mover) stop() {
	for _, sub := range m.subs {
		_ = sub.Unsubscribe()
	}
	m.subs = nil
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
}

// objects is the moves' object store, made on first use.
func (m *mover) objects(ctx context.Context) (jetstream.ObjectStore, error) {
	obs, err := m.objs.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("drain: the moves' %w", err)
	}
	return obs, nil
}

func (m *mover) loop(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(moveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if gen := m.s.drain.gen.Load(); gen != m.gen {
			// A new drain, or its end: what was dropped is tried again.
			m.mu.Lock()
			m.prog, m.dropped, m.gen = nil, map[string]bool{}, gen
			m.mu.Unlock()
		}
		if m.s.drain.draining() {
			m.pass(ctx)
		}
	}
}

// update changes the progress under the lock.
func (m *mover) update(f func(p *cluster.DrainProgress)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.prog == nil {
		m.prog = &cluster.DrainProgress{State: cluster.DrainMoving, Started: time.Now().UTC()}
	}
	f(m.prog)
}

// pending are the suspended environments left to move.
func (m *mover) pending() []scheduler.SuspendedEnv {
	envs := m.s.sched.SuspendedEnvs()
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.DeleteFunc(envs, func(e scheduler.SuspendedEnv) bool { return m.dropped[e.ID] })
}

// pendingMicroVMs are the MicroVMs left to move (running or suspended).
func (m *mover) pendingMicroVMs() []string {
	if m.s.microvms == nil {
		return nil
	}
	ids := m.s.microvms.MoveCandidates()
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.DeleteFunc(ids, func(id string) bool { return m.dropped[id] })
}

// pass moves what it can of the suspended environments and MicroVMs.
func (m *mover) pass(ctx context.Context) {
	envs, vms := m.pending(), m.pendingMicroVMs()
	n := len(envs) + len(vms)
	targets := m.targets()
	m.update(func(p *cluster.DrainProgress) {
		p.Pending, p.Checked = n, time.Now().UTC()
		switch {
		case n == 0:
			p.State = cluster.DrainDone
		case len(targets) == 0:
			p.State, p.LastError = cluster.DrainWaiting, "no other live host that is not drained to move to"
		default:
			p.State = cluster.DrainMoving
		}
	})
	if n == 0 || len(targets) == 0 {
		return
	}
	for _, e := range envs {
		if ctx.Err() != nil || !m.s.drain.draining() {
			return
		}
		m.moveOne(ctx, e, targets)
	}
	for _, id := range vms {
		if ctx.Err() != nil || !m.s.drain.draining() {
			return
		}
		m.moveMicroVM(ctx, id, targets)
	}
	left := len(m.pending()) + len(m.pendingMicroVMs())
	m.update(func(p *cluster.DrainProgress) {
		p.Pending, p.Checked = left, time.Now().UTC()
		p.State = cluster.DrainDone
		if left > 0 {
			p.State = cluster.DrainWaiting
		}
	})
}

// targets are the hosts to offer environments to, least loaded first.
func (m *mover) targets() []cluster.HostStatus {
	if m.s.member == nil {
		return nil
	}
	var out []cluster.HostStatus
	for _, h := range m.s.member.Status().Hosts {
		if h.Node != m.node && h.State == cluster.StateUp && !h.Draining && !h.DrainRequested && h.Compatible {
			out = append(out, h)
		}
	}
	slices.SortStableFunc(out, func(a, b cluster.HostStatus) int {
		if a.Load.MemoryMB != b.Load.MemoryMB {
			return a.Load.MemoryMB - b.Load.MemoryMB
		}
		return (a.Load.Suspended + a.Load.Warm + a.Load.Busy) - (b.Load.Suspended + b.Load.Warm + b.Load.Busy)
	})
	return out
}

// moveOne offers one environment to the targets in turn until one adopts
// it. Refused by every one, it is dropped; failed otherwise, it is tried
// again at the next pass.
func (m *mover) moveOne(ctx context.Context, se scheduler.SuspendedEnv, targets []cluster.HostStatus) {
	t0 := time.Now()
	tk, ok := m.s.sched.Take(se.ID)
	if !ok {
		return // resumed or deleted meanwhile
	}
	moved := false
	defer func() {
		if !moved {
			tk.Return()
		}
	}()
	fn := se.Function
	o, mv, drop := m.prepare(ctx, se.ID, se.Dir)
	if drop != "" {
		m.drop(se.ID, fn.Name, drop, t0)
		return
	}
	if mv == nil {
		return // failed, and tried again
	}
	o.Function, o.Version, o.Revision, o.CodeDigest, o.Layers, o.MemoryMB = fn.Name, fn.Version, fn.Revision, fn.CodeDigest, fn.LayerDigests, fn.MemoryMB
	to, a, bytes, drop := m.ship(ctx, o, se.Dir, *mv, targets)
	switch {
	case drop != "":
		m.drop(se.ID, fn.Name, drop, t0)
		return
	case to == "":
		return
	}
	moved = true
	tk.Moved()
	took := time.Since(t0)
	m.record(cluster.DrainMove{Env: se.ID, Function: fn.Name, To: to, NewEnv: a.Env, Seconds: took.Seconds(), Bytes: bytes, At: time.Now().UTC()})
	m.s.log.Info("drain: moved a suspended environment", "env", se.ID, "function", fn.Name, "to", to, "as", a.Env,
		"bytes", bytes, "took", took)
}

// moveMicroVM moves one MicroVM as moveOne moves an environment: taken
// out (a running one suspended first, when its idle policy allows it),
// offered, shipped and adopted under its id, then forgotten here. One
// that cannot be suspended stays, dropped with the reason; one in use is
// tried again at the next pass.
func (m *mover) moveMicroVM(ctx context.Context, id string, targets []cluster.HostStatus) {
	t0 := time.Now()
	out, err := m.s.microvms.TakeForMove(ctx, id)
	switch {
	case errors.Is(err, microvm.ErrStays):
		m.drop(id, "microvm", err.Error(), t0)
		return
	case err != nil:
		m.update(func(p *cluster.DrainProgress) { p.LastError = fmt.Sprintf("MicroVM %s: %v", id, err) })
		return // in use, or gone meanwhile: the next pass sees
	}
	moved := false
	defer func() {
		if !moved {
			out.Return()
		}
	}()
	rec := out.Export.Record
	name := "microvm:" + rec.Image
	o, mv, drop := m.prepare(ctx, id, out.Dir)
	if drop != "" {
		m.drop(id, name, drop, t0)
		return
	}
	if mv == nil {
		return
	}
	exp := out.Export
	exp.Record.EnvDir = "" // the sender's; nothing of the receiver's
	o.Function, o.MemoryMB, o.MicroVM = name, rec.MemoryMiB, &exp
	to, _, bytes, drop := m.ship(ctx, o, out.Dir, *mv, targets)
	switch {
	case drop != "":
		m.drop(id, name, drop, t0)
		return
	case to == "":
		return
	}
	moved = true
	out.Moved(ctx, to)
	took := time.Since(t0)
	m.record(cluster.DrainMove{Env: id, Function: name, To: to, NewEnv: id, Seconds: took.Seconds(), Bytes: bytes, At: time.Now().UTC()})
	m.s.log.Info("drain: moved a MicroVM", "microvm", id, "image", rec.Image, "to", to, "bytes", bytes, "took", took)
}

// drop records that what id names (an environment or a MicroVM) cannot
// move: it stays on this host, for this drain.
func (m *mover) drop(id, name, reason string, t0 time.Time) {
	if len(reason) > maxReason {
		reason = reason[:maxReason] + "…" // it travels in every heartbeat
	}
	m.mu.Lock()
	m.dropped[id] = true
	m.mu.Unlock()
	m.record(cluster.DrainMove{Env: id, Function: name, Reason: reason, Seconds: time.Since(t0).Seconds(), At: time.Now().UTC()})
	m.s.log.Warn("drain: a suspended environment cannot move; it stays here", "env", id, "function", name, "reason", reason)
}

// prepare reads the suspended folder dir of id for a move: the offer's
// platform, files, template memory and root (an image's root shared in
// hearth_roots, where the receiver fetches it). A reason is returned when
// it can never move; a nil Movable and no reason when this try failed.
func (m *mover) prepare(ctx context.Context, id, dir string) (moveOffer, *sandbox.Movable, string) {
	mv, err := sandbox.ReadMovable(dir, m.kernelDigest)
	if err != nil {
		return moveOffer{}, nil, err.Error()
	}
	// This host's VMM made the snapshot; the folder tells the rest.
	plat := mv.Platform
	plat.QEMU, plat.CPU = m.plat.QEMU, m.plat.cpu[vmm.Accel(mv.Accel)]
	o := moveOffer{Move: m.node + "-" + id + "-" + randomHex(4), From: m.node, Env: id, Platform: plat, Files: mv.Files, Network: mv.Network}
	if mv.MemoryBase != "" {
		o.Base = baseKey(m.node, mv.MemoryBase)
	}
	if r := mv.Function.Root; r != nil {
		o.Root = &sandbox.Root{Digest: r.Digest, Size: r.Size}
		if imageRoot(r) && m.s.roots == nil {
			return o, nil, "this host shares no container images"
		}
		if imageRoot(r) {
			// The receiver fetches the root by its digest: the store must
			// have it (normally shared since the image was built).
			root, ok := m.s.roots.b.Lookup(r.Digest)
			if !ok {
				return o, nil, fmt.Sprintf("its image's root %s is no longer in this host's cache", r.Digest)
			}
			if err := m.s.roots.Share(ctx, root); err != nil {
				m.failed(fmt.Errorf("sharing the root of %s: %w", id, err))
				return o, nil, ""
			}
		}
	}
	return o, &mv, ""
}

// ship offers o (the folder dir, read as mv) to the targets in turn;
// the first that takes it gets the files through the moves' object store
// and is asked to adopt it. It returns the adopting host and its answer;
// no host and a reason when every target refused (it can never move
// there); no host and no reason when this try failed (recorded).
func (m *mover) ship(ctx context.Context, o moveOffer, dir string, mv sandbox.Movable, targets []cluster.HostStatus) (string, moveAnswer, int64, string) {
	var (
		reasons  []string
		refusals int
		shipped  = map[string]bool{}
		bytes    int64
	)
	obs, err := m.objects(ctx)
	if err != nil {
		m.failed(err)
		return "", moveAnswer{}, 0, ""
	}
	defer func() {
		for name := range shipped {
			_ = obs.Delete(context.WithoutCancel(ctx), o.Move+"/"+name)
		}
	}()
	for _, h := range targets {
		var a moveAnswer
		if err := m.request(ctx, h.Node, "offer", o, offerTimeout, &a); err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", h.Node, err))
			continue
		}
		if !a.OK {
			reasons = append(reasons, h.Node+": "+a.Reason)
			if a.Refused {
				refusals++
			}
			continue
		}
		files := slices.Clone(o.Files)
		if a.NeedBase {
			files = append(files, "base")
		}
		for _, name := range files {
			if shipped[name] {
				continue
			}
			path := filepath.Join(dir, name)
			if name == "base" {
				path = mv.MemoryBase
			}
			n, err := putSparse(ctx, obs, jetstream.ObjectMeta{Name: o.Move + "/" + name}, path)
			shipped[name] = true
			if err != nil {
				m.failed(fmt.Errorf("shipping %s of %s: %w", name, o.Env, err))
				return "", moveAnswer{}, 0, ""
			}
			bytes += n
		}
		if err := m.request(ctx, h.Node, "adopt", o, adoptTimeout, &a); err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", h.Node, err))
			continue
		}
		if !a.OK {
			reasons = append(reasons, h.Node+": "+a.Reason)
			if a.Refused {
				refusals++
			}
			continue
		}
		return h.Node, a, bytes, ""
	}
	if refusals == len(targets) {
		return "", moveAnswer{}, 0, "refused by every host: " + strings.Join(reasons, "; ")
	}
	m.failed(fmt.Errorf("%s: %s", o.Env, strings.Join(reasons, "; ")))
	return "", moveAnswer{}, 0, ""
}

// baseKey names a template's memory file as one host has it.
func baseKey(node, path string) string {
	var size, mtime int64
	if fi, err := os.Stat(path); err == nil {
		size, mtime = fi.Size(), fi.ModTime().UnixNano()
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\n%s\n%d\n%d", node, path, size, mtime))
	return hex.EncodeToString(sum[:8])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// record adds a move or a drop to the progress.
func (m *mover) record(mv cluster.DrainMove) {
	m.update(func(p *cluster.DrainProgress) {
		if mv.To != "" {
			p.Moved++
		} else {
			p.Dropped++
		}
		p.Recent = append(p.Recent, mv)
		if len(p.Recent) > recentMoves {
			p.Recent = p.Recent[len(p.Recent)-recentMoves:]
		}
	})
}

func (m *mover) failed(err error) {
	m.s.log.Warn("drain: a move failed; it is tried again", "err", err)
	m.update(func(p *cluster.DrainProgress) {
		p.Failed++
		p.LastError = err.Error()
	})
}

// putSparse puts the file at path in obs as a sparse stream (holes and
// zero blocks skipped), under meta; it returns the data carried. Nothing
// holds the whole file in memory.
func putSparse(ctx context.Context, obs jetstream.ObjectStore, meta jetstream.ObjectMeta, path string) (int64, error) {
	pr, pw := io.Pipe()
	sent := make(chan int64, 1)
	go func() {
		n, err := sandbox.WriteSparse(pw, path)
		sent <- n
		pw.CloseWithError(err)
	}()
	_, err := obs.Put(ctx, meta, pr)
	pr.CloseWithError(errors.New("put ended")) // the writer ends if Put stopped reading
	n := <-sent
	return n, err
}

// request sends a request to node's movers and decodes its answer.
func (m *mover) request(ctx context.Context, node, what string, o moveOffer, timeout time.Duration, a *moveAnswer) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := m.s.broker.Conn().RequestWithContext(ctx, moveSubject(node, what), b)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return errors.New("takes no moves (an older version, or stopping)")
		}
		return err
	}
	*a = moveAnswer{}
	if err := json.Unmarshal(msg.Data, a); err != nil {
		return fmt.Errorf("its answer: %w", err)
	}
	return nil
}

// handle answers an offer or an adoption, off the connection's reader.
func (m *mover) handle(msg *nats.Msg) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		var o moveOffer
		var a moveAnswer
		if err := json.Unmarshal(msg.Data, &o); err != nil {
			a.Reason = "a malformed offer"
		} else if strings.HasSuffix(msg.Subject, ".adopt") {
			a = m.adopt(m.ctx, o)
		} else {
			a = m.check(m.ctx, o)
		}
		b, _ := json.Marshal(a)
		_ = msg.Respond(b)
	}()
}

// check answers whether this host takes the environment offered.
func (m *mover) check(ctx context.Context, o moveOffer) moveAnswer {
	if m.s.drain.draining() {
		return moveAnswer{Reason: "this host is drained too"}
	}
	if err := m.plat.local().Mismatch(o.Platform); err != nil {
		return moveAnswer{Refused: true, Reason: err.Error()}
	}
	if o.Network && m.s.nets == nil {
		return moveAnswer{Refused: true, Reason: "its machine has a network card and this host gives no network"}
	}
	if o.Root != nil {
		if _, refused, err := m.s.moveRoot(ctx, o.Root, false); err != nil {
			return moveAnswer{Refused: refused, Reason: err.Error()}
		}
	}
	if o.MicroVM != nil {
		switch {
		case m.s.microvms == nil:
			return moveAnswer{Refused: true, Reason: "this host runs no MicroVMs"}
		case o.MicroVM.Record.ID != o.Env || !vmproxy.ValidID(o.Env):
			return moveAnswer{Refused: true, Reason: fmt.Sprintf("a MicroVM id %q in the offer", o.MicroVM.Record.ID)}
		}
		if err := m.s.microvms.CanAdopt(o.Env); err != nil {
			return moveAnswer{Refused: true, Reason: err.Error()}
		}
	} else {
		f, err := m.s.store.Resolve(ctx, o.Function, o.Version)
		if err != nil {
			return moveAnswer{Reason: fmt.Sprintf("function %s:%s here: %v", o.Function, o.Version, err)}
		}
		if f.RevisionID != o.Revision {
			return moveAnswer{Reason: fmt.Sprintf("function %s here is at revision %s, the environment runs %s (the configuration log behind?)", o.Function, f.RevisionID, o.Revision)}
		}
	}
	a := moveAnswer{OK: true}
	if o.Base != "" {
		_, err := os.Stat(m.basePath(o))
		a.NeedBase = err != nil
	}
	return a
}

// basePath is where this host keeps a moved clone's template memory:
// among the templates (the functions' or the MicroVMs'), whose sweep at
// start keeps those an adopted clone needs.
func (m *mover) basePath(o moveOffer) string {
	if o.MicroVM != nil {
		return m.s.microvms.MovedBasePath(o.Base)
	}
	return filepath.Join(templatesDir(m.s.cfg.DataDir), "moved-"+o.Base, "memory")
}

// sandboxConfig is the environments' (the scheduler's) configuration.
func (m *mover) sandboxConfig() sandbox.Config {
	cfg := m.s.host.SandboxConfig(filepath.Join(m.s.cfg.DataDir, "envs"), nil)
	if m.s.nets != nil {
		cfg.Net = m.s.nets
	}
	return cfg
}

// adopt receives an environment (or a MicroVM) into a folder of this
// host's and adopts it.
func (m *mover) adopt(ctx context.Context, o moveOffer) moveAnswer {
	select {
	case m.adopting <- struct{}{}:
	case <-ctx.Done():
		return moveAnswer{Reason: "this host is stopping"}
	}
	defer func() { <-m.adopting }()
	ctx, cancel := context.WithTimeout(ctx, adoptTimeout)
	defer cancel()
	if a := m.check(ctx, o); !a.OK {
		return a
	}
	fail := func(err error) moveAnswer {
		m.s.log.Warn("drain: not adopting a moved environment", "from", o.From, "env", o.Env, "err", err)
		return moveAnswer{Refused: errors.Is(err, sandbox.ErrIncompatible), Reason: err.Error()}
	}
	obs, err := m.objects(ctx)
	if err != nil {
		return fail(err)
	}
	if o.MicroVM != nil {
		return m.adoptMicroVM(ctx, obs, o, fail)
	}
	sbx := m.sandboxConfig()
	id := sandbox.NewEnvID()
	dir := filepath.Join(sbx.Dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	base, err := m.receive(ctx, obs, o, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return fail(err)
	}
	img, err := m.s.Image(ctx, o.CodeDigest, o.Layers)
	if err != nil {
		_ = os.RemoveAll(dir)
		return fail(fmt.Errorf("the function's image: %w", err))
	}
	rootDisk, a, ok := m.rootDisk(ctx, o, fail)
	if !ok {
		_ = os.RemoveAll(dir)
		return a
	}
	if err := sandbox.Import(ctx, sbx, dir, sandbox.ImportOptions{Image: img, MemoryBase: base, RootDisk: rootDisk}); err != nil {
		_ = os.RemoveAll(dir)
		return fail(err)
	}
	rec := store.EnvRecord{ID: id, Function: o.Function, Version: o.Version, Digest: o.Revision, Dir: dir, State: string(sandbox.StateSuspended)}
	if err := m.s.store.PutEnv(ctx, rec); err != nil {
		_ = sandbox.Discard(ctx, sbx, dir)
		return fail(err)
	}
	if err := m.s.invoke.Adopt(ctx, rec); err != nil {
		_ = sandbox.Discard(ctx, sbx, dir)
		_ = m.s.store.DeleteEnv(ctx, id)
		return fail(fmt.Errorf("adopting: %w", err))
	}
	// Its life and its snapshot's storage are metered here from now on;
	// the sender ends its own.
	m.s.usage.EnvStarted(id, o.Function, o.MemoryMB, time.Now())
	m.s.usage.Suspended(id, o.Function, vmm.DiskBytes(filepath.Join(dir, "memory"))+vmm.DiskBytes(filepath.Join(dir, "state")), 0)
	m.s.log.Info("drain: adopted a moved environment", "from", o.From, "env", o.Env, "as", id, "function", o.Function)
	return moveAnswer{OK: true, Env: id}
}

// adoptMicroVM receives a MicroVM into a folder among this host's
// MicroVMs, adopts it under its id (SUSPENDED; it resumes here on its next
// request) and records this host as its owner, so that every host sends
// its API and endpoint here.
func (m *mover) adoptMicroVM(ctx context.Context, obs jetstream.ObjectStore, o moveOffer, fail func(error) moveAnswer) moveAnswer {
	dir, err := m.s.microvms.MoveDir()
	if err != nil {
		return fail(err)
	}
	base, err := m.receive(ctx, obs, o, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return fail(err)
	}
	rootDisk, a, ok := m.rootDisk(ctx, o, fail)
	if !ok {
		_ = os.RemoveAll(dir)
		return a
	}
	if err := m.s.microvms.Adopt(ctx, *o.MicroVM, dir, base, rootDisk, o.From); err != nil {
		return fail(err)
	}
	if m.s.mvmOwners != nil {
		if err := m.s.mvmOwners.Set(ctx, o.Env, m.node); err != nil {
			// Nobody would find it here: the sender keeps it.
			m.s.microvms.Unadopt(ctx, o.Env)
			return fail(fmt.Errorf("recording this host as MicroVM %s's: %w", o.Env, err))
		}
	}
	m.s.log.Info("drain: adopted a moved MicroVM", "from", o.From, "microvm", o.Env)
	return moveAnswer{OK: true, Env: o.Env}
}

// receive writes the offer's files into dir, and the template memory its
// snapshot is over where basePath keeps it (unless it is there already);
// it returns that memory's path ("" for none).
func (m *mover) receive(ctx context.Context, obs jetstream.ObjectStore, o moveOffer, dir string) (string, error) {
	for _, name := range o.Files {
		if !sandbox.MovableFile(name) {
			return "", fmt.Errorf("a file %q in the offer", name)
		}
		if err := getSparse(ctx, obs, o.Move+"/"+name, filepath.Join(dir, name), maxFileBytes(name, o.MemoryMB)); err != nil {
			return "", fmt.Errorf("receiving %s: %w", name, err)
		}
	}
	if o.Base == "" {
		return "", nil
	}
	base := m.basePath(o)
	if _, err := os.Stat(base); err == nil {
		return base, nil
	}
	if err := os.MkdirAll(filepath.Dir(base), 0o700); err != nil {
		return "", err
	}
	part := base + ".part"
	_ = os.Remove(part)
	err := getSparse(ctx, obs, o.Move+"/base", part, int64(o.MemoryMB)<<20)
	if err == nil {
		err = os.Rename(part, base)
	}
	if err != nil {
		return "", fmt.Errorf("receiving the template's memory: %w", err)
	}
	return base, nil
}

// rootDisk is this host's copy of the offer's root disk (fetched by its
// digest if need be), before the adoption: the disk must be here to
// resume on. ok is false with the answer to give when it is not.
func (m *mover) rootDisk(ctx context.Context, o moveOffer, fail func(error) moveAnswer) (string, moveAnswer, bool) {
	if o.Root == nil {
		return "", moveAnswer{}, true
	}
	disk, refused, err := m.s.moveRoot(ctx, o.Root, true)
	if err != nil {
		a := fail(err)
		a.Refused = a.Refused || refused
		return "", a, false
	}
	return disk, moveAnswer{}, true
}

// maxFileBytes bounds what a moved file may be.
func maxFileBytes(name string, memoryMB int) int64 {
	mem := int64(memoryMB) << 20
	switch name {
	case "memory":
		return mem
	case "state":
		return mem + 64<<20
	case "tmp.ext4":
		return maxTmpMB << 20
	}
	return maxManifestMB << 20
}

// getSparse writes the object name, a sparse stream, into a new file at
// path, bounded by maxSize.
func getSparse(ctx context.Context, obs jetstream.ObjectStore, name, path string, maxSize int64) error {
	r, err := obs.Get(ctx, name)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := sandbox.ReadSparse(r, path, maxSize); err != nil {
		return err
	}
	// The object's digest is checked once it is read to its end.
	if _, err := io.Copy(io.Discard, r); err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// startMoves takes moves from the other hosts and moves this host's
// environments while it is drained; standalone, nothing.
func (s *Server) startMoves(ctx context.Context) error {
	if s.moves == nil {
		return nil
	}
	return s.moves.start(ctx)
}

// stopMoves ends them, before the scheduler stops: an environment being
// shipped goes back to its pool.
func (s *Server) stopMoves() {
	if s.moves != nil {
		s.moves.stop()
	}
}
