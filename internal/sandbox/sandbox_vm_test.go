package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmm"
)

// countingWriter counts what it is given and keeps the first bytes.
type countingWriter struct {
	mu   sync.Mutex
	n    int
	head strings.Builder
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += len(b)
	if w.head.Len() < 64<<10 {
		w.head.Write(b)
	}
	return len(b), nil
}

func (w *countingWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

type fixture struct {
	cfg sandbox.Config
	img sandbox.Image
}

// newFixture prepares a VM for the test function with kernel k.
func newFixture(t *testing.T, k *guestimage.Kernel, fnPkg string, logs *countingWriter) fixture {
	t.Helper()
	drv := testvm.Driver(t)
	if k == nil {
		k = testvm.Kernel(t)
	}
	img := sandbox.Image{Kernel: k, Initrd: testvm.Initramfs(t, k, testvm.FunctionZip(t, fnPkg))}
	cfg := sandbox.Config{VMM: drv, Dir: t.TempDir(), Accel: vmm.AccelTCG}
	if logs != nil {
		cfg.Logs = logs
	}
	return fixture{cfg: cfg, img: img}
}

func (f fixture) boot(t *testing.T, fn sandbox.Function) *sandbox.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := sandbox.Boot(ctx, f.cfg, fn, f.img)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	testvm.KillOnCleanup(t, env.PID())
	t.Cleanup(func() { _ = env.Close(context.Background()) })
	return env
}

func invoke(t *testing.T, env *sandbox.Env, payload string) *sandbox.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := env.Invoke(ctx, sandbox.Request{Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("invoke %s: %v", payload, err)
	}
	return res
}

// assertGone checks that a closed environment left no process and no files.
func assertGone(t *testing.T, env *sandbox.Env, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for testvm.Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if testvm.Alive(pid) {
		t.Errorf("QEMU %d still running after the environment closed", pid)
	}
	if _, err := os.Stat(env.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("environment folder %s still there (err %v)", env.Dir(), err)
	}
	if env.State() != sandbox.StateDead {
		t.Errorf("state %s, want dead", env.State())
	}
}

// One environment serves a sequence of invocations, good and bad, as a
// real one would; it ends with a response too large, after which its
// runtime exits.
func TestEnvironmentLifecycle(t *testing.T) {
	logs := &countingWriter{}
	f := newFixture(t, nil, "./internal/testfunction", logs)
	fn := sandbox.Function{Name: "testfn", MemoryMB: 256, Timeout: 20 * time.Second,
		Env: map[string]string{"TESTFN_VAR": "hello from the host"}, LogLimit: 1 << 20}
	env := f.boot(t, fn)
	pid := env.PID()
	tm := env.Timings()
	if tm.VMMStart <= 0 || tm.KernelBoot <= 0 || tm.RuntimeInit <= 0 {
		t.Errorf("boot timings not measured: %+v", tm)
	}

	t.Run("echo", func(t *testing.T) {
		before := time.Now()
		res := invoke(t, env, `{"name":"Ada"}`)
		if res.Error != nil {
			t.Fatalf("function error: %+v", res.Error)
		}
		var got struct {
			Event        map[string]string `json:"event"`
			RequestID    string            `json:"requestId"`
			FunctionArn  string            `json:"functionArn"`
			FunctionName string            `json:"functionName"`
			MemoryMB     int               `json:"memoryMB"`
			DeadlineMs   int64             `json:"deadlineMs"`
			Inits        int               `json:"inits"`
			Env          map[string]string `json:"env"`
			Cwd          string            `json:"cwd"`
			NowUnix      int64             `json:"nowUnix"`
		}
		if err := json.Unmarshal(res.Payload, &got); err != nil {
			t.Fatalf("response %s: %v", res.Payload, err)
		}
		checks := []struct {
			name      string
			got, want any
		}{
			{"event", got.Event["name"], "Ada"},
			{"request id", got.RequestID, res.RequestID},
			{"function arn", got.FunctionArn, fn.ARN()},
			{"function name", got.FunctionName, "testfn"},
			{"memory", got.MemoryMB, 256},
			{"runtime api", got.Env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001"},
			{"memory env", got.Env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256"},
			{"task root", got.Env["LAMBDA_TASK_ROOT"], "/var/task"},
			{"function env", got.Env["TESTFN_VAR"], "hello from the host"},
			{"cwd", got.Cwd, "/var/task"},
			{"inits", got.Inits, 1},
		}
		for _, c := range checks {
			if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
				t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
			}
		}
		if d := time.UnixMilli(got.DeadlineMs).Sub(before); d <= 0 || d > fn.Timeout+time.Second {
			t.Errorf("deadline %v from the call, want within the %v timeout", d, fn.Timeout)
		}
		// The agent set the guest's clock from the host's.
		if skew := got.NowUnix - time.Now().Unix(); skew < -5 || skew > 5 {
			t.Errorf("guest clock off by %d s", skew)
		}
		if !strings.Contains(logs.head.String(), `testfn: action ""`) {
			t.Errorf("function output not forwarded; logs start %q", logs.head.String())
		}
	})

	t.Run("handled error", func(t *testing.T) {
		res := invoke(t, env, `{"action":"error"}`)
		if res.Error == nil || res.Error.ErrorMessage != "testfn was asked to fail" || res.Error.ErrorType != "errorString" {
			t.Fatalf("got %+v (%s), want errorString error", res.Error, res.Payload)
		}
		if env.State() != sandbox.StateReady {
			t.Fatalf("state after a handled error: %s", env.State())
		}
	})

	t.Run("payload over 6 MB refused", func(t *testing.T) {
		big := `"` + strings.Repeat("a", sandbox.MaxPayloadBytes) + `"`
		_, err := env.Invoke(context.Background(), sandbox.Request{Payload: []byte(big)})
		le, ok := lambdaerr.As(err)
		if !ok || le.Type != "RequestTooLargeException" || le.Status != 413 {
			t.Fatalf("got %v, want RequestTooLargeException 413", err)
		}
		if env.State() != sandbox.StateReady {
			t.Fatalf("state after a refused payload: %s", env.State())
		}
	})

	t.Run("50 MB of logs are capped", func(t *testing.T) {
		before := logs.count()
		res := invoke(t, env, `{"action":"flood","bytes":52428800}`)
		if res.Error != nil {
			t.Fatalf("function error: %+v", res.Error)
		}
		got := logs.count() - before
		if got > (1<<20)+4096 {
			t.Errorf("host received %d bytes of logs, want at most the 1 MiB limit", got)
		}
		if res.LogDropped < 50<<20-(1<<20) {
			t.Errorf("dropped %d bytes, want about 49 MiB", res.LogDropped)
		}
		if !strings.Contains(string(res.LogTail), "[hearth] output over") {
			t.Errorf("no notice of dropped output at the end of the logs: %q", tail(res.LogTail))
		}
	})

	t.Run("still answers", func(t *testing.T) {
		res := invoke(t, env, `{"action":"random"}`)
		if res.Error != nil || !strings.Contains(string(res.Payload), "random") {
			t.Fatalf("got %s %+v", res.Payload, res.Error)
		}
	})

	t.Run("response over 6 MB", func(t *testing.T) {
		res := invoke(t, env, `{"action":"big","bytes":7000000}`)
		if res.Error == nil || res.Error.ErrorType != "Function.ResponseSizeTooLarge" {
			t.Fatalf("got %+v, want Function.ResponseSizeTooLarge", res.Error)
		}
		// aws-lambda-go exits when its response is refused, as on Lambda:
		// the environment is then dead and has cleaned up after itself.
		assertGone(t, env, pid)
	})

}

func tail(b []byte) string {
	if len(b) > 200 {
		b = b[len(b)-200:]
	}
	return string(b)
}

// Failures that each end an environment: a timeout, a runtime exit, and
// two kinds of init failure.
func TestEnvironmentFailures(t *testing.T) {
	f := newFixture(t, nil, "./internal/testfunction", nil)
	base := sandbox.Function{Name: "testfn", MemoryMB: 128, Timeout: 2 * time.Second}

	t.Run("timeout", func(t *testing.T) {
		env := f.boot(t, base)
		pid := env.PID()
		res := invoke(t, env, `{"action":"sleep","ms":60000}`)
		if res.Error == nil || res.Error.ErrorType != "Sandbox.Timedout" ||
			!strings.HasSuffix(res.Error.ErrorMessage, "Task timed out after 2.00 seconds") {
			t.Fatalf("got %+v, want Lambda's timeout error", res.Error)
		}
		assertGone(t, env, pid)
	})

	t.Run("runtime exits mid-invocation", func(t *testing.T) {
		env := f.boot(t, base)
		pid := env.PID()
		res := invoke(t, env, `{"action":"exit","code":7}`)
		if res.Error == nil || res.Error.ErrorType != "Runtime.ExitError" ||
			!strings.Contains(res.Error.ErrorMessage, "Runtime exited with error: exit status 7") {
			t.Fatalf("got %+v, want Runtime.ExitError with exit status 7", res.Error)
		}
		assertGone(t, env, pid)
	})

	t.Run("panic ends the environment", func(t *testing.T) {
		env := f.boot(t, base)
		pid := env.PID()
		res := invoke(t, env, `{"action":"panic"}`)
		if res.Error == nil || !strings.Contains(res.Error.ErrorMessage, "testfn was asked to panic") {
			t.Fatalf("got %+v, want the panic's error", res.Error)
		}
		// aws-lambda-go exits after reporting a panic: the next call finds
		// the environment dead, and it has cleaned up after itself.
		deadline := time.Now().Add(5 * time.Second)
		for env.State() != sandbox.StateDead && time.Now().Before(deadline) {
			_, err := env.Invoke(context.Background(), sandbox.Request{Payload: []byte(`{}`)})
			if errors.Is(err, sandbox.ErrDead) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		assertGone(t, env, pid)
	})

	tests := []struct {
		name, mode, wantType, wantMsg string
	}{
		{"exit during init", "exit", "Runtime.ExitError", "Runtime exited with error: exit status 3"},
		{"init error reported", "initerror", "ConfigError", "cannot load configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := base
			fn.Env = map[string]string{"TESTFN_INIT": tt.mode}
			cfg := f.cfg
			cfg.Dir = t.TempDir()
			env, err := sandbox.Boot(context.Background(), cfg, fn, f.img)
			var ie *sandbox.InitError
			if !errors.As(err, &ie) {
				if env != nil {
					env.Close(context.Background())
				}
				t.Fatalf("got %v, want an InitError", err)
			}
			if ie.Object.ErrorType != tt.wantType || !strings.Contains(ie.Object.ErrorMessage, tt.wantMsg) {
				t.Errorf("got %+v, want %s / %q", ie.Object, tt.wantType, tt.wantMsg)
			}
			entries, _ := os.ReadDir(cfg.Dir)
			if len(entries) != 0 {
				t.Errorf("failed boot left %d entries in %s", len(entries), cfg.Dir)
			}
		})
	}
}

// Debian's own kernel boots too: its ELF is extracted from the bzImage and
// its virtio drivers are loaded from the initramfs.
func TestDistributionKernel(t *testing.T) {
	k := testvm.DistroKernel(t)
	if len(k.Modules) == 0 || !k.ACPI {
		t.Fatalf("distribution kernel prepared without modules or ACPI: %+v", k)
	}
	f := newFixture(t, k, "./examples/hello", nil)
	env := f.boot(t, sandbox.Function{Name: "hello", MemoryMB: 256, Timeout: 10 * time.Second})
	res := invoke(t, env, `{"name":"Debian"}`)
	if res.Error != nil || !strings.Contains(string(res.Payload), "Hello, Debian!") {
		t.Fatalf("got %s %+v", res.Payload, res.Error)
	}
	pid := env.PID()
	if err := env.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertGone(t, env, pid)
}
