package microvm

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// An image is built (ready, then a test VM's validate), run (run hook with
// the payload), suspended, resumed and terminated; each hook once, in
// order; wrong states are conflicts; terminate is idempotent; the meter
// sees the running periods and the suspension.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	iv := fx.image("agent", allHooks)
	if iv.State != ImageCreated || !iv.Active || iv.Digest == "" {
		t.Fatalf("built %+v", iv)
	}
	if got := fx.hooks.names(); !slices.Equal(got, []string{"ready", "validate"}) {
		t.Fatalf("build hooks %v", got)
	}
	if img, _ := fx.m.GetImage(ctx, "arn:aws:lambda:local:000000000000:microvm-image:agent"); img.State != ImageCreated || img.LatestVersion != "1" {
		t.Errorf("image by ARN: %+v", img)
	}
	in := RunInput{ImageIdentifier: "agent", RunHookPayload: `{"task":"x"}`, ClientToken: "tok-1"}
	vm1, err := fx.m.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if vm1.State != StateRunning || vm1.ImageVersion != "1" || vm1.MemoryMiB != 256 || !strings.Contains(vm1.Endpoint, vm1.ID) {
		t.Fatalf("run: %+v", vm1)
	}
	fx.hooks.mu.Lock()
	runCall := fx.hooks.calls[len(fx.hooks.calls)-1]
	fx.hooks.mu.Unlock()
	if runCall != (hookCall{"run", `{"task":"x"}`}) {
		t.Errorf("run hook call %+v", runCall)
	}
	// The same token and input: the same MicroVM, no second run.
	again, err := fx.m.Run(ctx, in)
	if err != nil || again.ID != vm1.ID {
		t.Errorf("same token: %+v, %v; want %s", again, err, vm1.ID)
	}
	other := in
	other.RunHookPayload = "other"
	if _, err := fx.m.Run(ctx, other); !errors.Is(err, ErrConflict) {
		t.Errorf("same token, other input: %v, want ErrConflict", err)
	}
	if err := fx.m.Resume(ctx, vm1.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("resume a running one: %v", err)
	}
	if err := fx.m.Suspend(ctx, vm1.ID); err != nil {
		t.Fatal(err)
	}
	if s := fx.state(vm1.ID); s != StateSuspended {
		t.Fatalf("after suspend: %s", s)
	}
	if n := fx.vm.Running(); n != 0 {
		t.Errorf("%d machines run with the only MicroVM suspended", n)
	}
	if err := fx.m.Suspend(ctx, vm1.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("suspend a suspended one: %v", err)
	}
	fx.clock.advance(time.Minute)
	if err := fx.m.Resume(ctx, vm1.ID); err != nil {
		t.Fatal(err)
	}
	if s := fx.state(vm1.ID); s != StateRunning {
		t.Fatalf("after resume: %s", s)
	}
	if err := fx.m.DeleteImage(ctx, "agent"); !errors.Is(err, ErrConflict) {
		t.Errorf("delete an image a MicroVM runs: %v", err)
	}
	got, _ := fx.m.Get(ctx, vm1.ID)
	dir := fx.m.vms[vm1.ID].rec.EnvDir
	if err := fx.m.Terminate(ctx, vm1.ID); err != nil {
		t.Fatal(err)
	}
	if err := fx.m.Terminate(ctx, vm1.ID); err != nil {
		t.Errorf("second terminate: %v", err)
	}
	got, _ = fx.m.Get(ctx, vm1.ID)
	if got.State != StateTerminated || got.TerminatedAt.IsZero() {
		t.Errorf("terminated: %+v", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the MicroVM's folder %s is left: %v", dir, err)
	}
	if got := fx.hooks.names(); !slices.Equal(got, []string{"ready", "validate", "run", "suspend", "resume", "terminate"}) {
		t.Errorf("hooks %v", got)
	}
	if err := fx.m.Resume(ctx, vm1.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("resume a terminated one: %v", err)
	}
	runs, err := fx.st.MicroVMRuns(ctx, time.Unix(0, 0))
	if err != nil || len(runs) != 2 || runs[0].Function != "microvm:agent" || runs[0].End.Sub(runs[0].Start) != 0 ||
		runs[1].End.IsZero() {
		t.Errorf("running periods %+v, %v", runs, err)
	}
	_, susp, err := fx.st.Usage(ctx, time.Unix(0, 0))
	if err != nil || len(susp) != 1 || susp[0].End.Sub(susp[0].Start) != time.Minute || susp[0].Bytes <= 0 {
		t.Errorf("suspensions %+v, %v", susp, err)
	}
	if err := fx.m.DeleteImage(ctx, "agent"); err != nil {
		t.Errorf("delete the image once its MicroVM is terminated: %v", err)
	}
	if left, _ := os.ReadDir(fx.m.tplCfg.Dir); len(left) != 0 {
		t.Errorf("templates left: %v", left)
	}
}

// A build fails with a reason a user can act on; ready and validate are
// tried again while they answer 503; no hooks is no hook call.
func TestBuilds(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	noEntry := pushImage(t, fx.reg, "noentry")
	good := pushImage(t, fx.reg, "good", "/server")
	tests := []struct {
		name    string
		uri     string
		hooks   *Hooks
		answers map[string][]int
		state   ImageState
		reason  string
		calls   []string
	}{
		{"no hooks", good, nil, nil, ImageCreated, "", nil},
		{"pull fails", fx.reg + "/missing:v1", allHooks, nil, ImageCreateFailed, "could not be pulled", nil},
		{"no entrypoint", noEntry, allHooks, nil, ImageCreateFailed, "no ENTRYPOINT or CMD", nil},
		{"ready 503 then 200", good, allHooks, map[string][]int{"ready": {503, 503}}, ImageCreated, "", []string{"ready", "ready", "ready", "validate"}},
		{"ready 500", good, allHooks, map[string][]int{"ready": {500}}, ImageCreateFailed, "the ready hook answered 500", []string{"ready"}},
		{"validate 500", good, allHooks, map[string][]int{"validate": {500}}, ImageCreateFailed, "validation failed: the validate hook answered 500", []string{"ready", "validate"}},
		{"ready times out", good, &Hooks{Port: 9000, Ready: true, ReadyTimeoutInSeconds: 1}, map[string][]int{"ready": slices.Repeat([]int{503}, 1000)},
			ImageCreateFailed, "the ready hook did not answer", nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx.hooks.reset()
			for k, v := range tt.answers {
				fx.hooks.answer(k, v...)
			}
			name := "img" + string(rune('a'+i))
			iv, err := fx.m.CreateImage(ctx, ImageInput{Name: name, ImageURI: tt.uri, Hooks: tt.hooks})
			if err != nil {
				t.Fatal(err)
			}
			iv = fx.built(name, iv.Version)
			if iv.State != tt.state || !strings.Contains(iv.StateReason, tt.reason) {
				t.Errorf("%s (%q), want %s (%q)", iv.State, iv.StateReason, tt.state, tt.reason)
			}
			if tt.calls != nil {
				if got := fx.hooks.names(); !slices.Equal(got, tt.calls) {
					t.Errorf("hooks %v, want %v", got, tt.calls)
				}
			}
			if tt.hooks == nil && len(fx.hooks.names()) != 0 {
				t.Errorf("hooks called without hooks: %v", fx.hooks.names())
			}
			if iv.State == ImageCreateFailed {
				if _, err := fx.m.Run(ctx, RunInput{ImageIdentifier: name}); !errors.Is(err, ErrConflict) {
					t.Errorf("run a failed image: %v", err)
				}
			}
		})
	}
	fx.hooks.answer("ready")
	if _, err := fx.m.CreateImage(ctx, ImageInput{Name: "imga", ImageURI: good}); !errors.Is(err, ErrConflict) {
		t.Errorf("a name taken: %v", err)
	}
	v2, err := fx.m.UpdateImage(ctx, ImageInput{Name: "imga", ImageURI: good, MemoryMiB: 1024})
	if err != nil || v2.Version != "2" {
		t.Fatalf("update: %+v, %v", v2, err)
	}
	fx.built("imga", "2")
	vs, next, err := fx.m.ListImageVersions(ctx, "imga", 1, "")
	if err != nil || len(vs) != 1 || vs[0].Version != "1" || vs[0].Active || next != "1" {
		t.Errorf("page 1: %+v %q %v", vs, next, err)
	}
	vs, next, _ = fx.m.ListImageVersions(ctx, "imga", 1, next)
	if len(vs) != 1 || vs[0].Version != "2" || !vs[0].Active || vs[0].Input.MemoryMiB != 1024 || next != "" {
		t.Errorf("page 2: %+v %q", vs, next)
	}
	imgs, _, err := fx.m.ListImages(ctx, 0, "")
	if err != nil || len(imgs) != len(tests) {
		t.Errorf("images %+v, %v", imgs, err)
	}
	if err := fx.m.DeleteImageVersion(ctx, "imga", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.m.GetImageVersion(ctx, "imga", "1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted version: %v", err)
	}
}

// Bad input is ErrValidation, an unknown image ErrNotFound.
func TestValidation(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	fx.image("agent", nil)
	long := strings.Repeat("x", MaxRunHookPayload+1)
	runs := []struct {
		name string
		in   RunInput
		want error
	}{
		{"no image", RunInput{}, ErrValidation},
		{"unknown image", RunInput{ImageIdentifier: "nope"}, ErrNotFound},
		{"unknown version", RunInput{ImageIdentifier: "agent", ImageVersion: "7"}, ErrNotFound},
		{"bad version", RunInput{ImageIdentifier: "agent", ImageVersion: "x"}, ErrValidation},
		{"payload too large", RunInput{ImageIdentifier: "agent", RunHookPayload: long}, ErrValidation},
		{"token too long", RunInput{ImageIdentifier: "agent", ClientToken: strings.Repeat("t", 129)}, ErrValidation},
		{"negative duration", RunInput{ImageIdentifier: "agent", MaximumDurationInSeconds: -1}, ErrValidation},
		{"idle 0", RunInput{ImageIdentifier: "agent", IdlePolicy: &IdlePolicy{}}, ErrValidation},
		{"suspended < 0", RunInput{ImageIdentifier: "agent", IdlePolicy: &IdlePolicy{MaxIdleDurationSeconds: 5, SuspendedDurationSeconds: -1}}, ErrValidation},
	}
	for _, tt := range runs {
		if _, err := fx.m.Run(ctx, tt.in); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	images := []ImageInput{
		{Name: "", ImageURI: "x/y:1"},
		{Name: "bad name!", ImageURI: "x/y:1"},
		{Name: "ok"},
		{Name: "ok", ImageURI: "UPPER/Case::"},
		{Name: "ok", ImageURI: "x/y:1", MemoryMiB: 64},
		{Name: "ok", ImageURI: "x/y:1", Hooks: &Hooks{Ready: true}},
		{Name: "ok", ImageURI: "x/y:1", Hooks: &Hooks{Port: 9000, Ready: true, ReadyTimeoutInSeconds: -1}},
	}
	for _, in := range images {
		if _, err := fx.m.CreateImage(ctx, in); !errors.Is(err, ErrValidation) {
			t.Errorf("image %+v: %v, want ErrValidation", in, err)
		}
	}
	vm, err := fx.m.Run(ctx, RunInput{ImageIdentifier: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ttl := range []time.Duration{0, 59 * time.Second, 61 * time.Minute} {
		if _, err := fx.m.AuthToken(ctx, vm.ID, nil, ttl); !errors.Is(err, ErrValidation) {
			t.Errorf("ttl %s: %v", ttl, err)
		}
	}
	if _, err := fx.m.AuthToken(ctx, vm.ID, []PortRange{{Start: 9, End: 8}}, time.Minute); !errors.Is(err, ErrValidation) {
		t.Errorf("a backwards range: %v", err)
	}
	if _, err := fx.m.AuthToken(ctx, "mvm-nope", nil, time.Minute); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown MicroVM: %v", err)
	}
	tok, err := fx.m.AuthToken(ctx, vm.ID, []PortRange{{Start: 8080, End: 8081}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.m.VerifyToken(tok, vm.ID, 8081); err != nil {
		t.Errorf("verify: %v", err)
	}
	if err := fx.m.VerifyToken(tok, vm.ID, 9000); err == nil {
		t.Error("a port the token does not allow verified")
	}
	fx.clock.advance(2 * time.Minute)
	if err := fx.m.VerifyToken(tok, vm.ID, 8080); err == nil {
		t.Error("an expired token verified (the Manager's clock is not passed)")
	}
	if _, _, err := fx.m.List(ctx, ListInput{MaxResults: 51}); !errors.Is(err, ErrValidation) {
		t.Errorf("maxResults 51: %v", err)
	}
}

// The idle policy: a MicroVM held or with a connection open is not
// suspended; idle for maxIdle it is; a request auto-resumes it; suspended
// for suspendedDuration it is terminated; terminated, it is forgotten
// after a while. Traffic on its network is activity.
func TestIdlePolicy(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	var forgotten []string
	fx.m.cfg.Forgotten = func(_ context.Context, id string) { forgotten = append(forgotten, id) }
	fx.image("agent", nil)
	var traffic uint64
	fx.m.cfg.traffic = func(*sandbox.Env) (uint64, bool) { return traffic, true }
	vm, err := fx.m.Run(ctx, RunInput{ImageIdentifier: "agent",
		IdlePolicy: &IdlePolicy{MaxIdleDurationSeconds: 60, SuspendedDurationSeconds: 120, AutoResumeEnabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	step := func(d time.Duration, want State) {
		t.Helper()
		fx.clock.advance(d)
		fx.m.tick(ctx)
		if s := fx.state(vm.ID); s != want {
			t.Fatalf("after %s: %s, want %s", d, s, want)
		}
	}
	step(30*time.Second, StateRunning)
	env, release, err := fx.m.Hold(ctx, vm.ID)
	if err != nil || env == nil {
		t.Fatal(err)
	}
	step(100*time.Second, StateRunning) // held
	release()
	release() // twice is once
	step(59*time.Second, StateRunning)
	traffic += 100 // outbound bytes
	step(30*time.Second, StateRunning)
	step(59*time.Second, StateRunning)
	step(2*time.Second, StateSuspended)
	// A request resumes it and is answered.
	c, err := fx.m.Dial(ctx, vm.ID, DefaultPort)
	if err != nil {
		t.Fatal(err)
	}
	if s := fx.state(vm.ID); s != StateRunning {
		t.Fatalf("after a dial: %s", s)
	}
	step(10*time.Minute, StateRunning) // the connection is open
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(c); !strings.Contains(string(b), `"hits":1`) {
		t.Errorf("answer %q", b)
	}
	c.Close()
	step(59*time.Second, StateRunning)
	step(time.Second, StateSuspended)
	step(119*time.Second, StateSuspended)
	step(time.Second, StateTerminated)
	got, _ := fx.m.Get(ctx, vm.ID)
	if !strings.Contains(got.StateReason, "suspendedDurationSeconds") {
		t.Errorf("reason %q", got.StateReason)
	}
	if _, err := fx.m.Dial(ctx, vm.ID, DefaultPort); !errors.Is(err, ErrConflict) {
		t.Errorf("dial a terminated one: %v", err)
	}
	fx.clock.advance(time.Hour)
	fx.m.tick(ctx)
	if _, err := fx.m.Get(ctx, vm.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("terminated an hour ago: %v, want forgotten", err)
	}
	if recs, _ := fx.st.MicroVMs(ctx); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
	if !slices.Equal(forgotten, []string{vm.ID}) {
		t.Errorf("told forgotten %v, want %s once", forgotten, vm.ID)
	}

	// Without auto-resume a request is refused; the maximum duration ends
	// a MicroVM whatever its activity.
	vm2, err := fx.m.Run(ctx, RunInput{ImageIdentifier: "agent", MaximumDurationInSeconds: 300,
		IdlePolicy: &IdlePolicy{MaxIdleDurationSeconds: 10}})
	if err != nil {
		t.Fatal(err)
	}
	vm = vm2
	step(11*time.Second, StateSuspended)
	if _, err := fx.m.Dial(ctx, vm.ID, DefaultPort); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "autoResumeEnabled") {
		t.Errorf("dial a suspended one without auto-resume: %v", err)
	}
	env, release, err = fx.m.Hold(ctx, vm.ID) // exec resumes it anyway
	if err != nil || fx.state(vm.ID) != StateRunning {
		t.Fatalf("hold: %v, %s", err, fx.state(vm.ID))
	}
	step(300*time.Second, StateTerminated)
	release()
	if got, _ := fx.m.Get(ctx, vm.ID); !strings.Contains(got.StateReason, "maximumDurationInSeconds") {
		t.Errorf("reason %q", got.StateReason)
	}
	st := fx.m.StatsByImage()
	if st["agent"] != (Stats{}) {
		t.Errorf("stats %+v", st)
	}
}

// A daemon's stop suspends the running MicroVMs; the next finds them and
// resumes them. After a crash, a running MicroVM whose machine cannot be
// attached is terminated with a reason; a build in progress fails.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	fx.image("agent", allHooks)
	a, err := fx.m.Run(ctx, RunInput{ImageIdentifier: "agent", ClientToken: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := fx.m.Run(ctx, RunInput{ImageIdentifier: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.m.Suspend(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := fx.m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := fx.vm.Running(); n != 0 {
		t.Fatalf("%d machines run after the stop", n)
	}
	fx.m = fx.open()
	for _, id := range []string{a.ID, b.ID} {
		if s := fx.state(id); s != StateSuspended {
			t.Errorf("%s after a restart: %s", id, s)
		}
	}
	if again, err := fx.m.Run(ctx, RunInput{ImageIdentifier: "agent", ClientToken: "a"}); err != nil || again.ID != a.ID {
		t.Errorf("the token after a restart: %+v, %v", again, err)
	}
	if err := fx.m.Resume(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if s := fx.state(a.ID); s != StateRunning {
		t.Fatalf("resumed: %s", s)
	}
	// A crash: no Shutdown. The fake VMM cannot attach to its machine, as
	// a real one cannot when the machine died with the daemon.
	fx.m.stopAll()
	fx.m = fx.open()
	got, _ := fx.m.Get(ctx, a.ID)
	if got.State != StateTerminated || !strings.Contains(got.StateReason, "ended while the daemon was down") {
		t.Errorf("a running MicroVM lost in a crash: %+v", got)
	}
	if s := fx.state(b.ID); s != StateSuspended {
		t.Errorf("a suspended one after the crash: %s", s)
	}
	// A build cut short by a stop fails with a reason.
	ref := pushImage(t, fx.reg, "slow", "/server")
	if _, err := fx.st.CreateMicroVMImage(ctx, storeImage("slow", fx.clock.Now()), storeVersion(ref, fx.clock.Now())); err != nil {
		t.Fatal(err)
	}
	fx.m.stopAll()
	fx.m = fx.open()
	iv, err := fx.m.GetImageVersion(ctx, "slow", "1")
	if err != nil || iv.State != ImageCreateFailed || !strings.Contains(iv.StateReason, "interrupted") {
		t.Errorf("an interrupted build: %+v, %v", iv, err)
	}
}
