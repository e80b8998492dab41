package testvm

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"slices"
	"testing"
)

// TestMicroVMImage checks the image's shape without booting it: the
// binary in the layer, static and executable, and the config the guest
// starts it from.
func TestMicroVMImage(t *testing.T) {
	img := MicroVMImage(t, "READY_503=2", "HOOK_DELAY_MS=10")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/app/testmicrovm"}) || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/app/testmicrovm] and none", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if !slices.Equal(cf.Config.Env, []string{"READY_503=2", "HOOK_DELAY_MS=10"}) {
		t.Errorf("env %q", cf.Config.Env)
	}
	if _, ok := cf.Config.ExposedPorts["8080/tcp"]; !ok || len(cf.Config.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want 8080/tcp", cf.Config.ExposedPorts)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*tar.Header{}
	var bin []byte
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = h
			if h.Name == "app/testmicrovm" {
				if bin, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
		rc.Close()
	}
	h := files["app/testmicrovm"]
	if h == nil || h.Typeflag != tar.TypeReg || h.Mode != 0o755 {
		t.Fatalf("app/testmicrovm: %+v, want a regular file of mode 0755", h)
	}
	if tmp := files["tmp/"]; tmp == nil || tmp.Mode != 0o1777 {
		t.Errorf("tmp/: %+v, want mode 1777 (the hooks file is written there by uid 993)", tmp)
	}
	// Static: the image has no libc or loader to run a dynamic binary.
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("app/testmicrovm is no ELF: %v", err)
	}
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("machine %v", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("app/testmicrovm has an interpreter: not static")
		}
	}
}
