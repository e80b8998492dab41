package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// FakeMicroVMs is an in-memory MicroVMs for the tests of the API and of
// its callers (the CLI): images build at once, MicroVMs keep their state,
// files live in a map, and exec runs a few built-in programs (/bin/echo,
// /bin/cat, /bin/false, /bin/sleep (until a signal), /bin/size (prints
// the terminal's size after each resize)). It is not the Manager's
// logic; that is tested in package microvm.
type FakeMicroVMs struct {
	mu      sync.Mutex
	now     time.Time
	images  map[string][]microvm.ImageVersion
	vms     map[string]*microvm.MicroVM
	tokens  map[string]microvm.RunInput // clientToken → input
	byToken map[string]string           // clientToken → id
	files   map[string]map[string][]byte
	n       int
	// Tokens records AuthToken's calls.
	Tokens []FakeToken
	// Held counts the sandbox holds not yet released.
	Held int
}

// FakeToken is one AuthToken call.
type FakeToken struct {
	ID    string
	Ports []microvm.PortRange
	TTL   time.Duration
}

// NewFakeMicroVMs is an empty FakeMicroVMs.
func NewFakeMicroVMs() *FakeMicroVMs {
	return &FakeMicroVMs{now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), images: map[string][]microvm.ImageVersion{},
		vms: map[string]*microvm.MicroVM{}, tokens: map[string]microvm.RunInput{}, byToken: map[string]string{}, files: map[string]map[string][]byte{}}
}

const fakeARN = "arn:aws:lambda:local:000000000000:microvm-image:"

func (f *FakeMicroVMs) imageName(id string) string { return strings.TrimPrefix(id, fakeARN) }

func (f *FakeMicroVMs) build(in microvm.ImageInput, version string) microvm.ImageVersion {
	st, reason := microvm.ImageCreated, ""
	if strings.Contains(in.ImageURI, "broken") {
		st, reason = microvm.ImageCreateFailed, "the /ready hook answered 500"
	}
	return microvm.ImageVersion{Image: in.Name, Version: version, ARN: fakeARN + in.Name + ":" + version, Input: in,
		Digest: "sha256:" + strings.Repeat("ab", 32), State: st, StateReason: reason, Active: st == microvm.ImageCreated,
		CreatedAt: f.now, BuiltAt: f.now.Add(time.Second)}
}

func (f *FakeMicroVMs) CreateImage(ctx context.Context, in microvm.ImageInput) (microvm.ImageVersion, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.images[in.Name]; ok {
		return microvm.ImageVersion{}, fmt.Errorf("image %s exists: %w", in.Name, microvm.ErrConflict)
	}
	v := f.build(in, "1")
	f.images[in.Name] = []microvm.ImageVersion{v}
	return v, nil
}

func (f *FakeMicroVMs) UpdateImage(ctx context.Context, in microvm.ImageInput) (microvm.ImageVersion, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vs, ok := f.images[in.Name]
	if !ok {
		return microvm.ImageVersion{}, fmt.Errorf("image %s: %w", in.Name, microvm.ErrNotFound)
	}
	v := f.build(in, strconv.Itoa(len(vs)+1))
	f.images[in.Name] = append(vs, v)
	return v, nil
}

func (f *FakeMicroVMs) image(name string) (microvm.Image, error) {
	vs, ok := f.images[f.imageName(name)]
	if !ok {
		return microvm.Image{}, fmt.Errorf("image %s: %w", name, microvm.ErrNotFound)
	}
	last := vs[len(vs)-1]
	img := microvm.Image{Name: last.Image, ARN: fakeARN + last.Image, State: last.State, LatestVersion: last.Version,
		Description: last.Input.Description, CreatedAt: vs[0].CreatedAt, UpdatedAt: last.CreatedAt}
	for _, v := range vs {
		switch v.State {
		case microvm.ImageCreated:
			img.LatestActiveVersion = v.Version
		case microvm.ImageCreateFailed:
			img.LatestFailedVersion = v.Version
		}
	}
	return img, nil
}

func (f *FakeMicroVMs) GetImage(ctx context.Context, name string) (microvm.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.image(name)
}

// page pages names: nextToken is the index of the next one.
func page[T any](all []T, max int, next string) ([]T, string, error) {
	if max == 0 {
		max = 50
	}
	start := 0
	if next != "" {
		n, err := strconv.Atoi(next)
		if err != nil || n < 0 || n > len(all) {
			return nil, "", fmt.Errorf("nextToken %q: %w", next, microvm.ErrValidation)
		}
		start = n
	}
	end := min(start+max, len(all))
	tok := ""
	if end < len(all) {
		tok = strconv.Itoa(end)
	}
	return all[start:end], tok, nil
}

func (f *FakeMicroVMs) ListImages(ctx context.Context, max int, next string) ([]microvm.Image, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.images))
	for n := range f.images {
		names = append(names, n)
	}
	sort.Strings(names)
	var all []microvm.Image
	for _, n := range names {
		img, _ := f.image(n)
		all = append(all, img)
	}
	return page(all, max, next)
}

func (f *FakeMicroVMs) DeleteImage(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name = f.imageName(name)
	if _, ok := f.images[name]; !ok {
		return fmt.Errorf("image %s: %w", name, microvm.ErrNotFound)
	}
	for _, vm := range f.vms {
		if vm.ImageARN == fakeARN+name && vm.State != microvm.StateTerminated {
			return fmt.Errorf("MicroVM %s runs from image %s: %w", vm.ID, name, microvm.ErrConflict)
		}
	}
	delete(f.images, name)
	return nil
}

func (f *FakeMicroVMs) GetImageVersion(ctx context.Context, name, version string) (microvm.ImageVersion, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.images[f.imageName(name)] {
		if v.Version == version {
			return v, nil
		}
	}
	return microvm.ImageVersion{}, fmt.Errorf("image %s version %s: %w", name, version, microvm.ErrNotFound)
}

func (f *FakeMicroVMs) ListImageVersions(ctx context.Context, name string, max int, next string) ([]microvm.ImageVersion, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vs, ok := f.images[f.imageName(name)]
	if !ok {
		return nil, "", fmt.Errorf("image %s: %w", name, microvm.ErrNotFound)
	}
	return page(vs, max, next)
}

func (f *FakeMicroVMs) DeleteImageVersion(ctx context.Context, name, version string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	vs := f.images[f.imageName(name)]
	for i, v := range vs {
		if v.Version == version {
			f.images[f.imageName(name)] = append(vs[:i:i], vs[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("image %s version %s: %w", name, version, microvm.ErrNotFound)
}

func (f *FakeMicroVMs) Run(ctx context.Context, in microvm.RunInput) (microvm.MicroVM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in.ClientToken != "" {
		if prev, ok := f.tokens[in.ClientToken]; ok {
			if !reflect.DeepEqual(prev, in) {
				return microvm.MicroVM{}, fmt.Errorf("clientToken %s was used with other input: %w", in.ClientToken, microvm.ErrConflict)
			}
			return *f.vms[f.byToken[in.ClientToken]], nil
		}
	}
	vs, ok := f.images[f.imageName(in.ImageIdentifier)]
	if !ok {
		return microvm.MicroVM{}, fmt.Errorf("image %s: %w", in.ImageIdentifier, microvm.ErrNotFound)
	}
	v := vs[len(vs)-1]
	if in.ImageVersion != "" {
		n, err := strconv.Atoi(in.ImageVersion)
		if err != nil || n < 1 || n > len(vs) {
			return microvm.MicroVM{}, fmt.Errorf("image %s version %s: %w", in.ImageIdentifier, in.ImageVersion, microvm.ErrNotFound)
		}
		v = vs[n-1]
	}
	if v.State != microvm.ImageCreated {
		return microvm.MicroVM{}, fmt.Errorf("image %s version %s is %s: %w", v.Image, v.Version, v.State, microvm.ErrConflict)
	}
	f.n++
	id := fmt.Sprintf("mvm-%04d", f.n)
	vm := &microvm.MicroVM{ID: id, State: microvm.StateRunning, Endpoint: "http://" + id + ".lambda-microvm.localhost:9080",
		ImageARN: fakeARN + v.Image, ImageVersion: v.Version, IdlePolicy: in.IdlePolicy, MaximumDurationInSeconds: in.MaximumDurationInSeconds,
		MemoryMiB: v.Input.MemoryMiB, StartedAt: f.now}
	f.vms[id] = vm
	f.files[id] = map[string][]byte{}
	if in.ClientToken != "" {
		f.tokens[in.ClientToken], f.byToken[in.ClientToken] = in, id
	}
	return *vm, nil
}

func (f *FakeMicroVMs) vm(id string) (*microvm.MicroVM, error) {
	vm, ok := f.vms[id]
	if !ok {
		return nil, fmt.Errorf("MicroVM %s: %w", id, microvm.ErrNotFound)
	}
	return vm, nil
}

func (f *FakeMicroVMs) Get(ctx context.Context, id string) (microvm.MicroVM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vm, err := f.vm(id)
	if err != nil {
		return microvm.MicroVM{}, err
	}
	return *vm, nil
}

func (f *FakeMicroVMs) List(ctx context.Context, in microvm.ListInput) ([]microvm.MicroVM, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []microvm.MicroVM
	for _, vm := range f.vms {
		if in.ImageIdentifier == "" || vm.ImageARN == fakeARN+f.imageName(in.ImageIdentifier) {
			all = append(all, *vm)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	return page(all, in.MaxResults, in.NextToken)
}

func (f *FakeMicroVMs) move(id string, from, to microvm.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	vm, err := f.vm(id)
	if err != nil {
		return err
	}
	if vm.State != from {
		return fmt.Errorf("MicroVM %s is %s, not %s: %w", id, vm.State, from, microvm.ErrConflict)
	}
	vm.State = to
	return nil
}

func (f *FakeMicroVMs) Suspend(ctx context.Context, id string) error {
	return f.move(id, microvm.StateRunning, microvm.StateSuspended)
}

func (f *FakeMicroVMs) Resume(ctx context.Context, id string) error {
	return f.move(id, microvm.StateSuspended, microvm.StateRunning)
}

func (f *FakeMicroVMs) Terminate(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	vm, err := f.vm(id)
	if err != nil {
		return err
	}
	if vm.State != microvm.StateTerminated {
		vm.State, vm.TerminatedAt = microvm.StateTerminated, f.now.Add(time.Minute)
	}
	return nil
}

func (f *FakeMicroVMs) AuthToken(ctx context.Context, id string, ports []microvm.PortRange, ttl time.Duration) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.vm(id); err != nil {
		return "", err
	}
	f.Tokens = append(f.Tokens, FakeToken{ID: id, Ports: ports, TTL: ttl})
	return fmt.Sprintf("tok-%s-%d", id, len(f.Tokens)), nil
}

// Hold is refused: the fake has no sandbox.Env; HoldGuest serves.
func (f *FakeMicroVMs) Hold(ctx context.Context, id string) (*sandbox.Env, func(), error) {
	return nil, nil, fmt.Errorf("the fake holds no sandbox.Env")
}

// HoldGuest holds a MicroVM's fake guest: a suspended one is resumed.
func (f *FakeMicroVMs) HoldGuest(ctx context.Context, id string) (guest, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vm, err := f.vm(id)
	if err != nil {
		return nil, nil, err
	}
	switch vm.State {
	case microvm.StateSuspended:
		vm.State = microvm.StateRunning
	case microvm.StateRunning:
	default:
		return nil, nil, fmt.Errorf("MicroVM %s is %s: %w", id, vm.State, microvm.ErrConflict)
	}
	f.Held++
	var once sync.Once
	return &fakeGuest{f: f, id: id}, func() {
		once.Do(func() { f.mu.Lock(); f.Held--; f.mu.Unlock() })
	}, nil
}

// HeldNow is how many holds are not released.
func (f *FakeMicroVMs) HeldNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Held
}

// State is a MicroVM's state.
func (f *FakeMicroVMs) State(id string) microvm.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm, ok := f.vms[id]; ok {
		return vm.State
	}
	return ""
}

type fakeGuest struct {
	f  *FakeMicroVMs
	id string
}

func (g *fakeGuest) fs() map[string][]byte { return g.f.files[g.id] }

func (g *fakeGuest) info(p string) (sandbox.FileInfo, error) {
	if b, ok := g.fs()[p]; ok {
		return sandbox.FileInfo{Name: path.Base(p), Size: int64(len(b)), Mode: 0o644, ModTime: g.f.now}, nil
	}
	if p == "/" {
		return sandbox.FileInfo{Name: "/", IsDir: true, Mode: fs.ModeDir | 0o755}, nil
	}
	for k := range g.fs() {
		if strings.HasPrefix(k, p+"/") {
			return sandbox.FileInfo{Name: path.Base(p), IsDir: true, Mode: fs.ModeDir | 0o755, ModTime: g.f.now}, nil
		}
	}
	return sandbox.FileInfo{}, fmt.Errorf("stat %s: %w", p, fs.ErrNotExist)
}

func (g *fakeGuest) StatFile(ctx context.Context, p string) (sandbox.FileInfo, error) {
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	return g.info(p)
}

func (g *fakeGuest) ListDir(ctx context.Context, p string) ([]sandbox.FileInfo, error) {
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	fi, err := g.info(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir {
		return nil, fmt.Errorf("list %s: not a folder: %w", p, fs.ErrInvalid)
	}
	seen := map[string]bool{}
	var out []sandbox.FileInfo
	prefix := strings.TrimSuffix(p, "/") + "/"
	for k := range g.fs() {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, "/")
		if !seen[name] {
			seen[name] = true
			e, _ := g.info(prefix + name)
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (g *fakeGuest) ReadFile(ctx context.Context, p string) (io.ReadCloser, sandbox.FileInfo, error) {
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	fi, err := g.info(p)
	if err != nil {
		return nil, fi, err
	}
	return io.NopCloser(bytes.NewReader(g.fs()[p])), fi, nil
}

func (g *fakeGuest) WriteFile(ctx context.Context, p string, mode fs.FileMode, r io.Reader) (int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	g.fs()[p] = b
	return int64(len(b)), nil
}

func (g *fakeGuest) RemoveFile(ctx context.Context, p string, recursive bool) error {
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	fi, err := g.info(p)
	if err != nil {
		return err
	}
	if fi.IsDir && !recursive {
		return fmt.Errorf("remove %s: folder not empty: %w", p, fs.ErrExist)
	}
	for k := range g.fs() {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(g.fs(), k)
		}
	}
	return nil
}

func (g *fakeGuest) MakeDir(ctx context.Context, p string) error {
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	g.fs()[p+"/.keep"] = nil
	return nil
}

func (g *fakeGuest) Exec(ctx context.Context, req sandbox.ExecRequest) (guestProcess, error) {
	p := &fakeProcess{sig: make(chan syscall.Signal, 4), resize: make(chan [2]int, 4), done: make(chan struct{})}
	var inR *io.PipeReader
	inR, p.stdin = io.Pipe()
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	p.stdout, p.stderr = outR, errR
	run := func() sandbox.ExitStatus {
		switch req.Argv[0] {
		case "/bin/echo":
			fmt.Fprintln(outW, strings.Join(req.Argv[1:], " "))
			fmt.Fprintln(errW, "env:", strings.Join(req.Env, ","), "dir:", req.Dir, "tty:", req.TTY)
		case "/bin/cat":
			_, _ = io.Copy(outW, inR)
		case "/bin/false":
			return sandbox.ExitStatus{Code: 1}
		case "/bin/sleep":
			s := <-p.sig
			return sandbox.ExitStatus{Code: -1, Signal: int(s)}
		case "/bin/size":
			fmt.Fprintf(outW, "%dx%d\n", req.Rows, req.Cols)
			rs := <-p.resize
			fmt.Fprintf(outW, "%dx%d\n", rs[0], rs[1])
		default:
			return sandbox.ExitStatus{Code: 127}
		}
		return sandbox.ExitStatus{}
	}
	if _, ok := map[string]bool{"/bin/echo": true, "/bin/cat": true, "/bin/false": true, "/bin/sleep": true, "/bin/size": true}[req.Argv[0]]; !ok {
		return nil, fmt.Errorf("exec %s: %w", req.Argv[0], fs.ErrNotExist)
	}
	go func() {
		p.status = run()
		outW.Close()
		errW.Close()
		inR.Close()
		close(p.done)
	}()
	return p, nil
}

type fakeProcess struct {
	stdin          *io.PipeWriter
	stdout, stderr io.Reader
	sig            chan syscall.Signal
	resize         chan [2]int
	done           chan struct{}
	status         sandbox.ExitStatus
}

func (p *fakeProcess) Stdin() io.WriteCloser { return p.stdin }
func (p *fakeProcess) Stdout() io.Reader     { return p.stdout }
func (p *fakeProcess) Stderr() io.Reader     { return p.stderr }
func (p *fakeProcess) Wait() (sandbox.ExitStatus, error) {
	<-p.done
	return p.status, nil
}
func (p *fakeProcess) Signal(s syscall.Signal) error {
	select {
	case p.sig <- s:
	default:
	}
	return nil
}
func (p *fakeProcess) Resize(rows, cols int) error {
	select {
	case p.resize <- [2]int{rows, cols}:
	default:
	}
	return nil
}
func (p *fakeProcess) Close() error { return nil }
