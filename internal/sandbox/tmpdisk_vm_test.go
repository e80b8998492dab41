package sandbox_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/testvm"
)

// tmpReport is the test function's answer to {"action":"tmp"}.
type tmpReport struct {
	Content string `json:"content"`
	TmpMB   int    `json:"tmpMB"`
	BigRead int    `json:"bigRead"`
}

func tmpAction(t *testing.T, env *sandbox.Env, data string, bytes int) tmpReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ev, _ := json.Marshal(map[string]any{"action": "tmp", "data": data, "bytes": bytes})
	res, err := env.Invoke(ctx, sandbox.Request{Payload: ev})
	if err != nil {
		t.Fatalf("invoke %s: %v", ev, err)
	}
	if res.Error != nil {
		t.Fatalf("tmp: function error %+v", res.Error)
	}
	var r tmpReport
	if err := json.Unmarshal(res.Payload, &r); err != nil {
		t.Fatalf("tmp: %s: %v", res.Payload, err)
	}
	return r
}

// A zip function in the initramfs gets its /tmp on a disk, as an image
// does: with 128 MB of memory it writes 200 MB there (a tmpfs in the
// guest's memory could not hold them), and the files survive a suspend.
func TestZipTmpIsADisk(t *testing.T) {
	f := newFixture(t, nil, "./internal/testfunction", nil)
	env := f.boot(t, sandbox.Function{Name: "ziptmp", MemoryMB: 128, Timeout: 2 * time.Minute,
		EphemeralStorageMB: 1024})
	r := tmpAction(t, env, "before-suspend;", 200<<20)
	if r.BigRead != 200<<20 || r.Content != "before-suspend;" {
		t.Errorf("/tmp: read back %d of %d bytes, content %q", r.BigRead, 200<<20, r.Content)
	}
	if r.TmpMB < 950 || r.TmpMB > 1024 {
		t.Errorf("/tmp is %d MB, want the function's 1024 MB EphemeralStorage", r.TmpMB)
	}
	// The host holds what was written, in a sparse file.
	disk := filepath.Join(env.Dir(), "tmp.ext4")
	if used := diskUsage(t, disk); used < 200<<20 || used > 300<<20 {
		t.Errorf("the /tmp disk takes %d MB on the host, want about the 200 MB written", used>>20)
	}
	if _, err := env.Suspend(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := tmpAction(t, env, "after-resume;", 0); r.Content != "before-suspend;after-resume;" {
		t.Errorf("/tmp after a resume: %q", r.Content)
	}
	pid := env.PID()
	_ = env.Close(context.Background())
	assertGone(t, env, pid)
}

// A clone of a zip function's template starts with the /tmp the template's
// init wrote, and has its own copy of it from then on.
func TestZipCloneTmp(t *testing.T) {
	f := newFixture(t, nil, "./internal/testfunction", nil)
	fn := sandbox.Function{Name: "zipclonetmp", MemoryMB: 128, Timeout: 20 * time.Second,
		Env: map[string]string{"TESTFN_INIT_TMP": "template;"}}
	tpl, err := sandbox.NewTemplate(context.Background(), f.cfg, fn, f.img)
	if err != nil {
		t.Fatal(err)
	}
	var envs []*sandbox.Env
	for range 2 {
		env, err := sandbox.Clone(context.Background(), f.cfg, tpl.Dir)
		if err != nil {
			t.Fatal(err)
		}
		testvm.KillOnCleanup(t, env.PID())
		t.Cleanup(func() { _ = env.Close(context.Background()) })
		envs = append(envs, env)
	}
	if r := tmpAction(t, envs[0], "first;", 0); r.Content != "template;first;" || r.TmpMB < 450 || r.TmpMB > 512 {
		t.Errorf("first clone's /tmp: %q on %d MB, want the template's content and a write, on 512 MB", r.Content, r.TmpMB)
	}
	if r := tmpAction(t, envs[1], "", 0); r.Content != "template;" {
		t.Errorf("second clone's /tmp: %q, want the template's alone", r.Content)
	}
	// Each clone's copy is sparse: it costs what was written, not 512 MB.
	for _, env := range envs {
		if used := diskUsage(t, filepath.Join(env.Dir(), "tmp.ext4")); used > 64<<20 {
			t.Errorf("%s: the /tmp copy takes %d MB on the host: not sparse", env.ID(), used>>20)
		}
	}
}

func diskUsage(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}
