package sandbox_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmm"
)

// closeOnCleanup closes env when the test ends and checks that its VMM,
// whichever incarnation is current then, is gone.
func closeOnCleanup(t *testing.T, env *sandbox.Env) {
	t.Cleanup(func() {
		pid := env.PID()
		_ = env.Close(context.Background())
		if pid != 0 && testvm.Alive(pid) {
			t.Errorf("QEMU %d still running after Close: killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func decode[T any](t *testing.T, res *sandbox.Result) T {
	t.Helper()
	var v T
	if res.Error != nil {
		t.Fatalf("function error: %+v", res.Error)
	}
	if err := json.Unmarshal(res.Payload, &v); err != nil {
		t.Fatalf("response %s: %v", res.Payload, err)
	}
	return v
}

type counterResp struct {
	Count    int    `json:"count"`
	InitedAt string `json:"initedAt"`
}

// assertSuspended checks what a suspended environment leaves: no VMM
// process, and only its memory file (sparse), its state and its manifest.
func assertSuspended(t *testing.T, env *sandbox.Env, pid int, memoryMB int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for testvm.Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if testvm.Alive(pid) {
		t.Errorf("QEMU %d still running after suspend", pid)
	}
	if env.PID() != 0 || env.State() != sandbox.StateSuspended {
		t.Errorf("pid %d state %s, want 0 and suspended", env.PID(), env.State())
	}
	entries, err := os.ReadDir(env.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// tmp.ext4 is the environment's /tmp, kept for its resume.
	if !slices.Equal(names, []string{"manifest.json", "memory", "state", "tmp.ext4"}) {
		t.Errorf("suspended env holds %v, want only manifest.json, memory, state, tmp.ext4", names)
	}
	mem := filepath.Join(env.Dir(), "memory")
	fi, err := os.Stat(mem)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(memoryMB)<<20 || vmm.DiskBytes(mem) >= fi.Size() {
		t.Errorf("memory file: size %d, on disk %d; want %d MiB, sparse", fi.Size(), vmm.DiskBytes(mem), memoryMB)
	}
	if cached, err := vmm.CachedBytes(mem); err != nil || cached > 1<<20 {
		t.Errorf("memory file holds %d bytes of page cache after suspend (err %v), want under 1 MiB", cached, err)
	}
}

// The counter keeps counting across three suspends: every byte of the
// guest's memory comes back, and each suspend leaves no process.
func TestSuspendResumeCounter(t *testing.T) {
	f := newFixture(t, nil, "./examples/counter", nil)
	fn := sandbox.Function{Name: "counter", MemoryMB: 128, Timeout: 10 * time.Second}
	env := f.boot(t, fn)
	first := invoke(t, env, `{}`)
	c := decode[counterResp](t, first)
	if c.Count != 1 || first.StartType != sandbox.StartCold {
		t.Fatalf("first call: count %d start %s, want 1 cold", c.Count, first.StartType)
	}
	for want := 2; want <= 4; want++ {
		pid := env.PID()
		info, err := env.Suspend(context.Background())
		if err != nil {
			t.Fatalf("suspend %d: %v", want-1, err)
		}
		if info.StateBytes <= 0 || info.StateBytes > 1<<20 {
			t.Errorf("device state %d bytes, want a small positive size", info.StateBytes)
		}
		assertSuspended(t, env, pid, fn.MemoryMB)
		res := invoke(t, env, `{}`)
		got := decode[counterResp](t, res)
		if got.Count != want || got.InitedAt != c.InitedAt {
			t.Fatalf("after resume %d: %+v, want count %d and the same init (%s)", want-1, got, want, c.InitedAt)
		}
		if res.StartType != sandbox.StartResume || res.Restore <= 0 {
			t.Errorf("start %s restore %v, want resume with a restore time", res.StartType, res.Restore)
		}
	}
	if res := invoke(t, env, `{}`); res.StartType != sandbox.StartWarm {
		t.Errorf("call after a resumed one: %s, want warm", res.StartType)
	}
}

type verifyResp struct {
	Inits    int  `json:"inits"`
	LoadedMB int  `json:"loadedMB"`
	Intact   bool `json:"intact"`
}

// A function that filled 200 MB at init answers after a resume without
// initialising again, and its data is intact.
func TestSuspendResumeLargeState(t *testing.T) {
	f := newFixture(t, nil, "./internal/testfunction", nil)
	f.cfg.InitTimeout = time.Minute // filling 200 MB is slow under emulation
	fn := sandbox.Function{Name: "loaded", MemoryMB: 512, Timeout: 30 * time.Second,
		Env: map[string]string{"TESTFN_INIT_MB": "200"}}
	env := f.boot(t, fn)
	if v := decode[verifyResp](t, invoke(t, env, `{"action":"verify"}`)); v.Inits != 1 || v.LoadedMB != 200 || !v.Intact {
		t.Fatalf("before suspend: %+v", v)
	}
	pid := env.PID()
	if _, err := env.Suspend(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertSuspended(t, env, pid, fn.MemoryMB)
	res := invoke(t, env, `{"action":"verify"}`)
	if v := decode[verifyResp](t, res); v.Inits != 1 || v.LoadedMB != 200 || !v.Intact {
		t.Fatalf("after resume: %+v, want the same init and intact data", v)
	}
	if res.StartType != sandbox.StartResume {
		t.Errorf("start %s, want resume", res.StartType)
	}
}

// Another sandbox.Env, as a new process would make from the folder alone,
// resumes what the first suspended.
func TestResumeFromFolder(t *testing.T) {
	f := newFixture(t, nil, "./examples/counter", nil)
	env := f.boot(t, sandbox.Function{Name: "counter", MemoryMB: 128, Timeout: 10 * time.Second})
	decode[counterResp](t, invoke(t, env, `{}`))
	if _, err := env.Suspend(context.Background()); err != nil {
		t.Fatal(err)
	}
	again, err := sandbox.Open(context.Background(), f.cfg, env.Dir())
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, again)
	res := invoke(t, again, `{}`)
	if c := decode[counterResp](t, res); c.Count != 2 || res.StartType != sandbox.StartResume {
		t.Fatalf("got count %d start %s, want 2 resume", c.Count, res.StartType)
	}
}

// A snapshot that does not validate is refused with a clear error, and the
// next invocation falls back to a cold start.
func TestDamagedSnapshotFallsBackToColdStart(t *testing.T) {
	f := newFixture(t, nil, "./examples/counter", nil)
	fn := sandbox.Function{Name: "counter", MemoryMB: 128, Timeout: 10 * time.Second}
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		cfg    func(c sandbox.Config) sandbox.Config
	}{
		{"truncated state", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "state")
			fi, _ := os.Stat(p)
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"corrupted state", func(t *testing.T, dir string) {
			fh, err := os.OpenFile(filepath.Join(dir, "state"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			b := make([]byte, 1)
			if _, err := fh.ReadAt(b, 100); err != nil {
				t.Fatal(err)
			}
			b[0] ^= 0xff
			if _, err := fh.WriteAt(b, 100); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"missing memory", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "memory")); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"made by another agent build", nil, func(c sandbox.Config) sandbox.Config {
			c.AgentDigest = "another-build"
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.cfg
			cfg.Dir = t.TempDir()
			env, err := sandbox.Boot(context.Background(), cfg, fn, f.img)
			if err != nil {
				t.Fatal(err)
			}
			closeOnCleanup(t, env)
			decode[counterResp](t, invoke(t, env, `{}`))
			if _, err := env.Suspend(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tt.damage != nil {
				tt.damage(t, env.Dir())
			}
			if tt.cfg != nil {
				cfg = tt.cfg(cfg)
			}
			reopened, err := sandbox.Open(context.Background(), cfg, env.Dir())
			if err != nil {
				t.Fatal(err)
			}
			closeOnCleanup(t, reopened)
			if err := reopened.Resume(context.Background()); !errors.Is(err, sandbox.ErrSnapshotInvalid) {
				t.Fatalf("resume: %v, want ErrSnapshotInvalid", err)
			}
			res := invoke(t, reopened, `{}`)
			c := decode[counterResp](t, res)
			if c.Count != 1 || res.StartType != sandbox.StartCold || res.Fallback == "" {
				t.Errorf("got count %d start %s fallback %q, want a cold start that says why", c.Count, res.StartType, res.Fallback)
			}
		})
	}
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		t.Fatal(err)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Two clones of one template both answer, with their own randomness and
// ids, without initialising again; the template is never written.
func TestTemplateClones(t *testing.T) {
	f := newFixture(t, nil, "./internal/testfunction", nil)
	fn := sandbox.Function{Name: "testfn", MemoryMB: 128, Timeout: 10 * time.Second}
	tpl, err := sandbox.NewTemplate(context.Background(), f.cfg, fn, f.img)
	if err != nil {
		t.Fatal(err)
	}
	mem := filepath.Join(tpl.Dir, "memory")
	before := fileHash(t, mem)

	var randoms, ids []string
	for i := 0; i < 2; i++ {
		env, err := sandbox.Clone(context.Background(), f.cfg, tpl.Dir)
		if err != nil {
			t.Fatalf("clone %d: %v", i+1, err)
		}
		closeOnCleanup(t, env)
		res := invoke(t, env, `{"action":"random"}`)
		if res.StartType != sandbox.StartClone || res.Restore <= 0 {
			t.Errorf("clone %d: start %s restore %v, want clone", i+1, res.StartType, res.Restore)
		}
		r := decode[map[string]string](t, res)
		randoms, ids = append(randoms, r["random"]), append(ids, env.ID())
		echo := decode[map[string]any](t, invoke(t, env, `{}`))
		if echo["inits"] != float64(1) {
			t.Errorf("clone %d initialised %v times, want 1 (from the template)", i+1, echo["inits"])
		}
		if now := int64(echo["nowUnix"].(float64)); now < time.Now().Unix()-5 {
			t.Errorf("clone %d clock is %d s behind", i+1, time.Now().Unix()-now)
		}
	}
	if randoms[0] == randoms[1] || randoms[0] == "" {
		t.Errorf("clones drew the same random bytes: %v", randoms)
	}
	if ids[0] == ids[1] {
		t.Errorf("clones share an id: %v", ids)
	}
	if fileHash(t, mem) != before {
		t.Error("the template's memory file changed")
	}
}

// A clone can be suspended and resumed too: its memory, private until
// then, goes into its own memory file.
func TestCloneSuspendResume(t *testing.T) {
	f := newFixture(t, nil, "./examples/counter", nil)
	tpl, err := sandbox.NewTemplate(context.Background(), f.cfg, sandbox.Function{Name: "counter", MemoryMB: 128, Timeout: 10 * time.Second}, f.img)
	if err != nil {
		t.Fatal(err)
	}
	env, err := sandbox.Clone(context.Background(), f.cfg, tpl.Dir)
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, env)
	decode[counterResp](t, invoke(t, env, `{}`))
	// Twice: a clone resumed from its delta is a clone still, and its
	// next suspend a delta again.
	for want := 2; want <= 3; want++ {
		info, err := env.Suspend(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// Only what differs from the template: not its 128 MiB, nor the
		// tens of MiB it touched.
		if info.StateBytes > 8<<20 {
			t.Errorf("suspend %d: the clone's state is %d bytes, want a delta under 8 MiB", want-1, info.StateBytes)
		}
		res := invoke(t, env, `{}`)
		if c := decode[counterResp](t, res); c.Count != want || res.StartType != sandbox.StartResume {
			t.Fatalf("got %d %s, want %d resume", c.Count, res.StartType, want)
		}
	}
}

// A runtime with SnapStart hooks waits in /restore/next while its template
// is taken and runs its after-restore hook in each clone; a failing hook
// fails the clone's invocation with the hook's error.
func TestTemplateRuntimeHooks(t *testing.T) {
	f := newFixture(t, nil, "./internal/testfunction", nil)
	for _, mode := range []string{"1", "fail"} {
		t.Run("hooks="+mode, func(t *testing.T) {
			fn := sandbox.Function{Name: "testfn", MemoryMB: 128, Timeout: 10 * time.Second,
				Env: map[string]string{"TESTFN_HOOKS": mode}}
			cfg := f.cfg
			cfg.Dir = t.TempDir()
			tpl, err := sandbox.NewTemplate(context.Background(), cfg, fn, f.img)
			if err != nil {
				t.Fatal(err)
			}
			env, err := sandbox.Clone(context.Background(), cfg, tpl.Dir)
			if err != nil {
				t.Fatal(err)
			}
			closeOnCleanup(t, env)
			res := invoke(t, env, `{}`)
			if mode == "fail" {
				if res.Error == nil || res.Error.ErrorType != "HookError" {
					t.Fatalf("got %s, want the hook's error", res.Payload)
				}
				return
			}
			echo := decode[map[string]any](t, res)
			if echo["afterRestore"] != float64(1) || echo["inits"] != float64(1) {
				t.Errorf("afterRestore %v inits %v, want 1 and 1", echo["afterRestore"], echo["inits"])
			}
		})
	}
}
