package sandbox_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmm"
)

// imageFixture builds the test function into a container image, its root
// disk, and an initramfs with the agent alone.
func imageFixture(t *testing.T) (fixture, *rootfs.Root) {
	t.Helper()
	drv := testvm.Driver(t)
	k := testvm.Kernel(t)
	img := testvm.FunctionImage(t, "./internal/testfunction", "TESTFN_VAR=from the image", "PATH=/app:/usr/bin")
	tb := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(tb, nil, img); err != nil {
		t.Fatal(err)
	}
	b, err := rootfs.New(t.TempDir(), rootfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := b.OpenTarball(tb)
	if err != nil {
		t.Fatal(err)
	}
	root, err := b.Build(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := guestimage.BuildInitramfs(initrd, guestimage.InitramfsSpec{Agent: testvm.Agent(t), Modules: k.Modules}); err != nil {
		t.Fatal(err)
	}
	cfg := sandbox.Config{VMM: drv, Dir: t.TempDir(), Accel: vmm.AccelTCG}
	return fixture{cfg: cfg, img: sandbox.Image{Kernel: k, Initrd: initrd}}, root
}

func imageFunction(root *rootfs.Root, command []string, workDir string) sandbox.Function {
	return sandbox.Function{Name: "img", MemoryMB: 256, Timeout: 20 * time.Second, EphemeralStorageMB: 600,
		Env:  map[string]string{"TESTFN_VAR": "from the function"},
		Root: &sandbox.Root{Disk: root.Path, Digest: root.Digest, Size: root.Size, Command: command, WorkingDir: workDir}}
}

func tmpContent(t *testing.T, env *sandbox.Env, data string) (string, int) {
	t.Helper()
	res := invoke(t, env, `{"action":"tmp","data":"`+data+`"}`)
	if res.Error != nil {
		t.Fatalf("tmp: function error %+v", res.Error)
	}
	var got struct {
		Content string `json:"content"`
		TmpMB   int    `json:"tmpMB"`
	}
	if err := json.Unmarshal(res.Payload, &got); err != nil {
		t.Fatalf("tmp: %s: %v", res.Payload, err)
	}
	return got.Content, got.TmpMB
}

// A container image runs in its own root: its command with the function's
// overrides, as the unprivileged user, on a read-only root with a /tmp disk
// of the function's size that a suspend keeps.
func TestImageRoot(t *testing.T) {
	f, root := imageFixture(t)
	fn := imageFunction(root, []string{"/app/testfunction", "--from-override"}, "/var/task")
	env := f.boot(t, fn)

	t.Run("command, folder, environment", func(t *testing.T) {
		res := invoke(t, env, `{"action":"argv"}`)
		var got struct {
			Argv []string `json:"argv"`
			Cwd  string   `json:"cwd"`
			Env  []string `json:"env"`
		}
		if err := json.Unmarshal(res.Payload, &got); err != nil {
			t.Fatalf("%s: %v", res.Payload, err)
		}
		if !slices.Equal(got.Argv, fn.Root.Command) || got.Cwd != "/var/task" {
			t.Errorf("argv %q in %q, want %q in /var/task", got.Argv, got.Cwd, fn.Root.Command)
		}
		if !slices.Contains(got.Env, "TESTFN_VAR=from the function") || !slices.Contains(got.Env, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001") {
			t.Errorf("env %q", got.Env)
		}
	})
	t.Run("read-only root, writable /tmp, unprivileged", func(t *testing.T) {
		res := invoke(t, env, `{"action":"whoami"}`)
		var got struct {
			UID    int               `json:"uid"`
			Writes map[string]string `json:"writes"`
			Mounts map[string]string `json:"mounts"`
		}
		if err := json.Unmarshal(res.Payload, &got); err != nil {
			t.Fatalf("%s: %v", res.Payload, err)
		}
		if got.UID != 993 {
			t.Errorf("uid %d, want 993", got.UID)
		}
		if got.Writes["/tmp/hostile"] != "" {
			t.Errorf("/tmp not writable: %s", got.Writes["/tmp/hostile"])
		}
		for _, p := range []string{"/hostile", "/etc/hostile"} {
			if got.Writes[p] == "" {
				t.Errorf("%s was writable in the image's root", p)
			}
		}
		if o := got.Mounts["/"]; !strings.HasPrefix(o, "ro") {
			t.Errorf("root mounted %q, want read-only", o)
		}
		if _, ok := got.Mounts["/tmp"]; !ok {
			t.Errorf("no /tmp mount in %v", got.Mounts)
		}
	})
	content, mb := tmpContent(t, env, "before-suspend;")
	if content != "before-suspend;" || mb < 550 || mb > 600 {
		t.Errorf("/tmp: %q on %d MB, want the write on a 600 MB disk", content, mb)
	}
	if _, err := env.Suspend(context.Background()); err != nil {
		t.Fatal(err)
	}
	if content, _ := tmpContent(t, env, "after-resume;"); content != "before-suspend;after-resume;" {
		t.Errorf("/tmp after a resume: %q", content)
	}
	pid := env.PID()
	_ = env.Close(context.Background())
	assertGone(t, env, pid)
}

// A clone of an image's template starts with the template's /tmp and then
// has its own.
func TestImageCloneTmp(t *testing.T) {
	f, root := imageFixture(t)
	fn := imageFunction(root, nil, "")
	fn.Root.Command = root.Config.EntryPoint
	fn.Root.WorkingDir = root.Config.WorkingDir
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
	if c, _ := tmpContent(t, envs[0], "first;"); c != "first;" {
		t.Errorf("first clone's /tmp: %q", c)
	}
	if c, _ := tmpContent(t, envs[1], ""); c != "" {
		t.Errorf("second clone sees %q in /tmp: not its own copy", c)
	}
}
