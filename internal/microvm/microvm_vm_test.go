package microvm

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmm"
)

// getOver sends GET path over c (a connection into the guest) and decodes
// the JSON answer into v.
func getOver(t *testing.T, c net.Conn, path string, v any) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: guest\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

type appAnswer struct {
	Hits     int64  `json:"hits"`
	Instance string `json:"instance"`
}

// A real MicroVM from the test image: built with its hooks, run, reached
// through Dial (its in-memory counter), suspended (no QEMU left), resumed
// by a request with its memory kept, exec'd into through Hold, suspended
// when idle and auto-resumed, found again by a restarted Manager, and
// terminated. The hooks it saw, in order.
func TestRealMicroVM(t *testing.T) {
	ctx := context.Background()
	drv := testvm.Driver(t)
	k := testvm.Kernel(t)
	dir := t.TempDir()
	ref, initrd, st, roots := realParts(t, ctx, dir, k)
	clk := &clock{now: time.Now()}
	cfg := Config{Store: st, Meter: st, Images: roots, Tokens: hmacTokens{key: []byte("k")}, Now: clk.Now,
		Sandbox: sandbox.Config{VMM: drv, Dir: filepath.Join(dir, "microvms"), Accel: vmm.AccelTCG, BootTimeout: 120 * time.Second},
		Image:   sandbox.Image{Kernel: k, Initrd: initrd}}
	open := func() *Manager {
		m, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
		return m
	}
	m := open()
	pids := map[int]bool{}
	pidOf := func(id string) int {
		m.mu.Lock()
		defer m.mu.Unlock()
		v := m.vms[id]
		if v == nil || v.env == nil {
			return 0
		}
		p := v.env.PID()
		if p > 0 && !pids[p] {
			pids[p] = true
			testvm.KillOnCleanup(t, p)
		}
		return p
	}

	t0 := time.Now()
	iv, err := m.CreateImage(ctx, ImageInput{Name: "agent", ImageURI: ref, MemoryMiB: 256, Hooks: &Hooks{Port: testvm.MicroVMHookPort,
		Ready: true, Validate: true, Run: true, Resume: true, Suspend: true, Terminate: true}})
	if err != nil {
		t.Fatal(err)
	}
	for iv.State == ImageCreating {
		if time.Since(t0) > 5*time.Minute {
			t.Fatal("the build takes more than 5 minutes")
		}
		time.Sleep(200 * time.Millisecond)
		if iv, err = m.GetImageVersion(ctx, "agent", "1"); err != nil {
			t.Fatal(err)
		}
	}
	if iv.State != ImageCreated {
		t.Fatalf("build: %s: %s", iv.State, iv.StateReason)
	}
	t.Logf("image built in %s", time.Since(t0))

	vm, err := m.Run(ctx, RunInput{ImageIdentifier: "agent", RunHookPayload: `{"job":1}`,
		IdlePolicy: &IdlePolicy{MaxIdleDurationSeconds: 60, AutoResumeEnabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	pid := pidOf(vm.ID)
	if vm.State != StateRunning || pid == 0 {
		t.Fatalf("run: %+v, pid %d", vm, pid)
	}
	get := func(want int64) string {
		t.Helper()
		c, err := m.Dial(ctx, vm.ID, DefaultPort)
		if err != nil {
			t.Fatal(err)
		}
		var a appAnswer
		getOver(t, c, "/", &a)
		if a.Hits != want {
			t.Errorf("hits %d, want %d", a.Hits, want)
		}
		return a.Instance
	}
	instance := get(1)

	if err := m.Suspend(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	if testvm.Alive(pid) {
		t.Errorf("QEMU %d still runs after the suspend", pid)
	}
	if got := get(2); got != instance { // auto-resumed
		t.Errorf("instance %s after the resume, was %s", got, instance)
	}
	pid = pidOf(vm.ID)

	env, release, err := m.Hold(ctx, vm.ID)
	if err != nil {
		t.Fatal(err)
	}
	s, err := env.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/app/testmicrovm", "echo-args", "hello"}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(s.Stdout)
	_, _ = io.ReadAll(s.Stderr)
	if st, err := s.Wait(); err != nil || st.Code != 0 || string(out) != "hello\n" {
		t.Errorf("exec: %q, %+v, %v", out, st, err)
	}
	release()

	// Idle for its maxIdle: suspended; a request brings it back.
	clk.advance(61 * time.Second)
	m.tick(ctx)
	if got, _ := m.Get(ctx, vm.ID); got.State != StateSuspended || !strings.Contains(got.StateReason, "Idle") {
		t.Fatalf("idle: %+v", got)
	}
	if testvm.Alive(pid) {
		t.Errorf("QEMU %d still runs after the idle suspend", pid)
	}

	// A new Manager on the same store and folder finds it and resumes it.
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	m = open()
	if got, _ := m.Get(ctx, vm.ID); got.State != StateSuspended {
		t.Fatalf("after a restart: %+v", got)
	}
	if got := get(3); got != instance {
		t.Errorf("instance %s after the restart, was %s", got, instance)
	}
	pid = pidOf(vm.ID)
	c, err := m.Dial(ctx, vm.ID, testvm.MicroVMHookPort)
	if err != nil {
		t.Fatal(err)
	}
	var hooks []struct {
		Name string `json:"name"`
		Body string `json:"body"`
	}
	getOver(t, c, "/hooks", &hooks)
	var names []string
	for _, h := range hooks {
		names = append(names, h.Name)
	}
	// validate ran in the build's test VM, not in this one.
	if want := []string{"ready", "run", "suspend", "resume", "suspend", "resume"}; !slices.Equal(names, want) {
		t.Errorf("hooks %v, want %v", names, want)
	}
	if len(hooks) > 1 && hooks[1].Body != `{"job":1}` {
		t.Errorf("run hook body %q", hooks[1].Body)
	}

	// A crash: this Manager's process "dies" (its connection to the VMM
	// goes, the detached VMM runs on); the next attaches to it.
	m.mu.Lock()
	crashed := m.vms[vm.ID].env
	clear(m.vms)
	m.mu.Unlock()
	if err := crashed.Detach(); err != nil {
		t.Fatal(err)
	}
	m.stopAll()
	m = open()
	if got, _ := m.Get(ctx, vm.ID); got.State != StateRunning {
		t.Fatalf("after a crash: %+v", got)
	}
	if p := pidOf(vm.ID); p != pid {
		t.Errorf("attached to %d, the VMM was %d", p, pid)
	}
	if got := get(4); got != instance {
		t.Errorf("instance %s after the crash, was %s", got, instance)
	}

	dirOf := m.vms[vm.ID].rec.EnvDir
	if err := m.Terminate(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	if testvm.Alive(pid) {
		t.Errorf("QEMU %d still runs after terminate", pid)
	}
	if _, err := os.Stat(dirOf); !os.IsNotExist(err) {
		t.Errorf("folder left: %v", err)
	}
	if err := m.DeleteImage(ctx, "agent"); err != nil {
		t.Error(err)
	}
}
