package recovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/store"
)

type fakeRecords struct {
	recs    []store.EnvRecord
	put     []store.EnvRecord
	deleted []string
}

func (f *fakeRecords) PutEnv(_ context.Context, rec store.EnvRecord) error {
	f.put = append(f.put, rec)
	return nil
}

func (f *fakeRecords) Envs(context.Context) ([]store.EnvRecord, error) { return f.recs, nil }
func (f *fakeRecords) DeleteEnv(_ context.Context, id string) error {
	f.deleted = append(f.deleted, id)
	return nil
}

// fakeAdopter adopts the environments in ok.
type fakeAdopter struct {
	ok    map[string]bool
	tried []string
}

func (a *fakeAdopter) Adopt(_ context.Context, rec store.EnvRecord) error {
	a.tried = append(a.tried, rec.ID)
	if a.ok[rec.ID] {
		return nil
	}
	return errors.New("revision changed")
}

// process starts a process that runs until the test ends: named qemu (its
// comm) when qemu is set, with args on its command line.
func process(t *testing.T, qemu bool, args ...string) int {
	t.Helper()
	bin := "/bin/sh"
	if qemu {
		bin = filepath.Join(t.TempDir(), "qemu-fake")
		// No exec: the shell waits, so the process keeps its name.
		if err := os.WriteFile(bin, []byte("#!/bin/sh\nsleep 60 & wait\n"), 0o700); err != nil {
			t.Fatal(err)
		}
	} else {
		args = append([]string{"-c", "sleep 60 & wait"}, args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its sleep goes with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	// Wait until the child runs its program: until then its command line
	// is the test binary's.
	self, _ := os.ReadFile("/proc/self/cmdline")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)); err == nil && string(b) != string(self) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd.Process.Pid
}

// exited reports whether pid has exited, waiting up to wait for it.
func exited(pid int, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		// A zombie (state Z) has exited and waits for its parent.
		for i := len(b) - 1; i > 0; i-- {
			if b[i] == ')' {
				if i+2 < len(b) && b[i+2] == 'Z' {
					return true
				}
				break
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func manifest(t *testing.T, dir, state string, detached bool) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m := fmt.Sprintf(`{"format":1,"kind":"env","id":%q,"state":%q,"spec":{"Detached":%v}}`, filepath.Base(dir), state, detached)
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

func touch(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// What a daemon killed at any point leaves is adopted, ended or swept; what
// others use is left alone.
func TestRun(t *testing.T) {
	data := t.TempDir()
	envs, tpls, code, images := filepath.Join(data, "envs"), filepath.Join(data, "snapstart"), filepath.Join(data, "code"), filepath.Join(data, "images")
	env := func(id string) string { return filepath.Join(envs, id) }
	mkdir(t, envs, code, filepath.Join(images, "k1"), filepath.Join(tpls, "tpl-a"), filepath.Join(tpls, "tpl-b"))

	// A process that has exited: its PID names stale files.
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	dead := c.Process.Pid

	manifest(t, env("env-suspended"), "suspended", false)
	manifest(t, env("env-suspended-refused"), "suspended", false)
	manifest(t, env("env-suspended-unrecorded-state"), "suspended", false) // killed between the suspend and its record
	mkdir(t, env("env-busy"), env("env-busy-reused-pid"), env("env-booting-unrecorded"), env("env-in-use"))
	manifest(t, env("env-detached"), "ready", false)
	manifest(t, env("env-hand-driven"), "suspended", true)
	// A suspended clone: its state is a delta over its template's memory.
	mkdir(t, env("env-suspended-clone"))
	clone := fmt.Sprintf(`{"format":1,"kind":"env","id":"env-suspended-clone","state":"suspended","snapshot":{"memoryBase":%q}}`,
		filepath.Join(tpls, "tpl-b", "memory"))
	if err := os.WriteFile(filepath.Join(env("env-suspended-clone"), "manifest.json"), []byte(clone), 0o600); err != nil {
		t.Fatal(err)
	}

	vmm := process(t, true, "-name", "hearth-env-busy", "-m", "128M", "-object", "memory-backend-file,id=mem,mem-path=/proc/self/fd/5")
	reused := process(t, true, "-chardev", "file,id=console,path="+env("env-other")+"/console.log")
	user := process(t, false, env("env-in-use")+"/memory")

	recs := &fakeRecords{recs: []store.EnvRecord{
		{ID: "env-suspended", Dir: env("env-suspended"), State: "suspended"},
		{ID: "env-suspended-refused", Dir: env("env-suspended-refused"), State: "suspended"},
		{ID: "env-suspended-clone", Dir: env("env-suspended-clone"), State: "suspended"},
		{ID: "env-suspended-unrecorded-state", Dir: env("env-suspended-unrecorded-state"), State: "ready", PID: dead},
		{ID: "env-busy", Dir: env("env-busy"), State: "busy", PID: vmm},
		{ID: "env-busy-reused-pid", Dir: env("env-busy-reused-pid"), State: "busy", PID: reused},
	}}
	adopter := &fakeAdopter{ok: map[string]bool{"env-suspended": true, "env-suspended-unrecorded-state": true, "env-suspended-clone": true}}

	touch(t,
		filepath.Join(code, "abc.zip"),
		filepath.Join(code, fmt.Sprintf("abc.zip.%d.1.tmp", dead)),
		filepath.Join(code, fmt.Sprintf("def.zip.%d.1.tmp", os.Getpid())),
		filepath.Join(images, "k1", fmt.Sprintf("initramfs.cpio.%d.2.tmp", dead)),
		filepath.Join(data, fmt.Sprintf("credentials.%d.3.tmp", dead)),
		filepath.Join(tpls, "tpl-a", "state"),
		filepath.Join(tpls, "tpl-b", "memory"),
	)

	rep, err := Run(context.Background(), Config{Records: recs, Adopter: adopter, EnvsDir: envs, TemplatesDir: tpls,
		TempDirs: []string{data, code}, ImagesDir: images})
	if err != nil {
		t.Fatal(err)
	}

	if want := []string{"env-suspended", "env-suspended-clone", "env-suspended-unrecorded-state"}; !slices.Equal(rep.Adopted, want) {
		t.Errorf("adopted %v, want %v", rep.Adopted, want)
	}
	if want := []string{"env-suspended-refused", "env-busy", "env-busy-reused-pid"}; !slices.Equal(rep.Ended, want) || !slices.Equal(recs.deleted, want) {
		t.Errorf("ended %v, records deleted %v, want %v", rep.Ended, recs.deleted, want)
	}
	if want := []store.EnvRecord{{ID: "env-suspended-unrecorded-state", Dir: env("env-suspended-unrecorded-state"), State: "suspended"}}; !slices.Equal(recs.put, want) {
		t.Errorf("records written %+v, want only the adopted env whose record was behind its folder, now suspended: %+v", recs.put, want)
	}
	if slices.Contains(adopter.tried, "env-busy") {
		t.Error("adoption tried for an env neither its record nor its folder says is suspended")
	}
	if !exited(vmm, 5*time.Second) {
		t.Error("the VMM of an ended env still runs")
	}
	// The kills are done by now: the one above has landed.
	if exited(reused, 0) {
		t.Error("a QEMU of another folder, on a recorded PID reused since, was killed")
	}
	if exited(user, 0) {
		t.Error("a process using an unrecorded folder was killed")
	}
	for p, want := range map[string]bool{
		env("env-suspended"):                                              true,
		env("env-suspended-unrecorded-state"):                             true,
		env("env-suspended-refused"):                                      false,
		env("env-busy"):                                                   false,
		env("env-busy-reused-pid"):                                        false,
		env("env-booting-unrecorded"):                                     false, // a boot cut short
		env("env-detached"):                                               false, // the daemon's, never detached: a clone cut short
		env("env-hand-driven"):                                            true,  // `hearth env`'s
		env("env-in-use"):                                                 true,
		filepath.Join(tpls, "tpl-a"):                                      false, // the previous daemon's
		filepath.Join(tpls, "tpl-b", "memory"):                            true,  // an adopted clone's base
		filepath.Join(code, "abc.zip"):                                    true,
		filepath.Join(code, fmt.Sprintf("abc.zip.%d.1.tmp", dead)):        false,
		filepath.Join(code, fmt.Sprintf("def.zip.%d.1.tmp", os.Getpid())): true,
		filepath.Join(images, "k1", fmt.Sprintf("initramfs.cpio.%d.2.tmp", dead)): false,
		filepath.Join(data, fmt.Sprintf("credentials.%d.3.tmp", dead)):            false,
	} {
		if got := exists(p); got != want {
			t.Errorf("%s: exists %v, want %v", p, got, want)
		}
	}
}

func TestMentions(t *testing.T) {
	cases := []struct {
		cmdline, dir string
		want         bool
	}{
		{"qemu -chardev file,id=c,path=/d/envs/env-a/console.log", "/d/envs/env-a", true},
		{"qemu mem-path=/d/envs/env-a,share=on", "/d/envs/env-a", true},
		{"sh /d/envs/env-a", "/d/envs/env-a/", true},
		{"qemu path=/d/envs/env-ab/console.log", "/d/envs/env-a", false},
		{"qemu path=/other/envs/env-a/console.log", "/d/envs/env-a", false},
		{"qemu -name hearth-env-a -m 128M", "/d/envs/env-a", true},
		{"qemu -name hearth-env-ab -m 128M", "/d/envs/env-a", false},
	}
	for _, c := range cases {
		if got := mentions(c.cmdline, c.dir); got != c.want {
			t.Errorf("mentions(%q, %q) = %v, want %v", c.cmdline, c.dir, got, c.want)
		}
	}
}
