package runtimes_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/agent"
	"github.com/hearthdev/hearth/internal/runtimes"
)

// packageTar is a small stand-in for mmdebstrap's output: names with "./",
// a passwd without the function's user, a dpkg status, apt leftovers that
// must not reach the root, and a hard link.
func packageTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1686355200, 0)
	add := func(typ byte, name string, mode int64, body string, link string) {
		t.Helper()
		hdr := &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: int64(len(body)), Linkname: link, ModTime: mtime}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(tar.TypeDir, "./", 0o755, "", "")
	add(tar.TypeDir, "./etc/", 0o755, "", "")
	add(tar.TypeReg, "./etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/bash\n", "")
	add(tar.TypeReg, "./etc/group", 0o644, "root:x:0:", "")
	add(tar.TypeDir, "./tmp/", 0o1777, "", "")
	add(tar.TypeDir, "./usr/bin/", 0o755, "", "")
	add(tar.TypeReg, "./usr/bin/python3.11", 0o755, "#!/bin/sh\n", "")
	add(tar.TypeLink, "./usr/bin/python3", 0o755, "", "./usr/bin/python3.11")
	add(tar.TypeDir, "./var/lib/dpkg/", 0o755, "", "")
	add(tar.TypeReg, "./var/lib/dpkg/status", 0o644,
		"Package: python3\nStatus: install ok installed\nVersion: 3.11.2-1+b1\n\n"+
			"Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n"+
			"Package: dash\nStatus: install ok installed\nVersion: 0.5.12-2\n", "")
	add(tar.TypeDir, "./var/cache/apt/archives/", 0o755, "", "")
	add(tar.TypeReg, "./var/cache/apt/archives/python3.deb", 0o644, "a package", "")
	add(tar.TypeReg, "./var/lib/apt/lists/deb.debian.org_InRelease", 0o644, "lists", "")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// debugfs runs a debugfs request against an ext4 image, read-only.
func debugfs(t *testing.T, disk, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, disk).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %q: %v\n%s", request, err, out)
	}
	return string(out)
}

// fsck runs e2fsck read-only. tar2ext4 leaves the inode bitmap's padding
// unset, which e2fsck reports; nothing else may be wrong.
func fsck(t *testing.T, disk string) {
	t.Helper()
	out, _ := exec.Command("e2fsck", "-fn", disk).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "e2fsck "), strings.HasPrefix(line, "Pass "),
			strings.Contains(line, "Padding at end of inode bitmap is not set"),
			strings.Contains(line, "WARNING: Filesystem still has errors"),
			regexp.MustCompile(`files \(.*non-contiguous\)`).MatchString(line):
		default:
			t.Errorf("e2fsck -fn: %s\n%s", line, out)
			return
		}
	}
}

func TestWriteRoot(t *testing.T) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Fatalf("debugfs (e2fsprogs) is needed: %v", err)
	}
	for _, name := range runtimes.Names() {
		t.Run(name, func(t *testing.T) {
			rt, err := runtimes.Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			disk := filepath.Join(t.TempDir(), "root.ext4")
			f, err := os.Create(disk)
			if err != nil {
				t.Fatal(err)
			}
			m, err := runtimes.WriteRoot(context.Background(), bytes.NewReader(packageTar(t)), rt, f, runtimes.BuildOptions{ModTime: time.Unix(1686355200, 0)})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			fsck(t, disk)

			// The RIC, with the bootstrap executable.
			files, err := rt.Files()
			if err != nil {
				t.Fatal(err)
			}
			for _, rf := range files {
				p := runtimes.RuntimeDir + "/" + rf.Name
				if got := debugfs(t, disk, "cat "+p); !strings.Contains(got, string(rf.Data)) {
					t.Errorf("%s in the root differs from the embedded file", p)
				}
				mode := fmt.Sprintf("Mode:  %04o", rf.Mode)
				if got := debugfs(t, disk, "stat "+p); !strings.Contains(got, mode) {
					t.Errorf("%s: want %s:\n%s", p, mode, got)
				}
			}
			// The function's user; root's line kept.
			passwd := debugfs(t, disk, "cat /etc/passwd")
			wantUser := fmt.Sprintf("%s:x:%d:%d::%s:", agent.FunctionUser, agent.FunctionUID, agent.FunctionGID, agent.FunctionHome)
			if !strings.Contains(passwd, "root:x:0:0:root:/root:/bin/bash\n") || !strings.Contains(passwd, wantUser) {
				t.Errorf("/etc/passwd:\n%s\nwant root's line and %q", passwd, wantUser)
			}
			group := debugfs(t, disk, "cat /etc/group")
			if !strings.Contains(group, "root:x:0:\n") || !strings.Contains(group, fmt.Sprintf("%s:x:%d:", agent.FunctionUser, agent.FunctionGID)) {
				t.Errorf("/etc/group:\n%s", group)
			}
			if hosts := debugfs(t, disk, "cat /etc/hosts"); !strings.Contains(hosts, "127.0.0.1\tlocalhost") {
				t.Errorf("/etc/hosts:\n%s", hosts)
			}
			// Mount points, /tmp keeping its sticky mode.
			for dir, mode := range map[string]string{"/var/task": "0755", "/opt": "0755", "/tmp": "01777"} {
				if got := debugfs(t, disk, "stat "+dir); !strings.Contains(got, "Type: directory") || !strings.Contains(got, "Mode:  "+mode) {
					t.Errorf("%s: want a directory of mode %s:\n%s", dir, mode, got)
				}
			}
			// The hard link survives; apt's leftovers do not.
			if got := debugfs(t, disk, "stat /usr/bin/python3"); !strings.Contains(got, "Links: 2") {
				t.Errorf("/usr/bin/python3: want a hard link:\n%s", got)
			}
			for _, gone := range []string{"/var/cache/apt/archives/python3.deb", "/var/lib/apt/lists/deb.debian.org_InRelease"} {
				if got := debugfs(t, disk, "stat "+gone); !strings.Contains(got, "File not found") {
					t.Errorf("%s is in the root:\n%s", gone, got)
				}
			}

			digest, err := rt.RICDigest()
			if err != nil {
				t.Fatal(err)
			}
			want := runtimes.Manifest{Runtime: name, RICDigest: digest, Packages: []string{"dash 0.5.12-2", "python3 3.11.2-1+b1"}}
			if g, w := mustJSON(t, m), mustJSON(t, want); g != w {
				t.Errorf("manifest %s, want %s", g, w)
			}
		})
	}
}

// TestWriteRootReproducible checks two builds of the same input are the
// same bytes: the cache and a rebuild on another machine agree.
func TestWriteRootReproducible(t *testing.T) {
	rt, err := runtimes.Lookup("python3.11")
	if err != nil {
		t.Fatal(err)
	}
	in := packageTar(t)
	var disks [2][]byte
	for i := range disks {
		p := filepath.Join(t.TempDir(), "root.ext4")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := runtimes.WriteRoot(context.Background(), bytes.NewReader(in), rt, f, runtimes.BuildOptions{ModTime: time.Unix(1686355200, 0)}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if disks[i], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(disks[0], disks[1]) {
		t.Errorf("two builds of the same packages differ")
	}
}

func TestWriteRootBadInput(t *testing.T) {
	rt, err := runtimes.Lookup("nodejs18.x")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "root.ext4"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = runtimes.WriteRoot(context.Background(), strings.NewReader(strings.Repeat("not a tar ", 100)), rt, f, runtimes.BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "nodejs18.x") {
		t.Errorf("WriteRoot of garbage: %v, want an error naming the runtime", err)
	}
}

// TestFunctionUser checks the root's user is the one the agent runs.
func TestFunctionUser(t *testing.T) {
	// WriteRoot's passwd line is checked against agent's constants in
	// TestWriteRoot; this pins the numbers Lambda uses.
	if agent.FunctionUID != 993 || agent.FunctionGID != 990 || agent.FunctionUser != "sbx_user1051" {
		t.Errorf("agent's function user changed: update internal/runtimes/root_build.go too")
	}
}

// buildCache lays out a cache as scripts/build-runtimes.sh does, with the
// given manifest digest for name.
func buildCache(t *testing.T, name, digest string) (cache, disk string) {
	t.Helper()
	cache = t.TempDir()
	dir := filepath.Join(cache, "runtimes", "0123456789abcdef")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk = filepath.Join(dir, runtimes.DiskName(name))
	if err := os.WriteFile(disk, []byte("ext4"), 0o444); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(runtimes.Manifest{Runtime: name, RICDigest: digest})
	if err := os.WriteFile(filepath.Join(dir, runtimes.ManifestName(name)), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("0123456789abcdef", filepath.Join(cache, "runtimes", "current")); err != nil {
		t.Fatal(err)
	}
	return cache, disk
}

func TestRootPath(t *testing.T) {
	rt, err := runtimes.Lookup("python3.11")
	if err != nil {
		t.Fatal(err)
	}
	digest, err := rt.RICDigest()
	if err != nil {
		t.Fatal(err)
	}
	current, disk := buildCache(t, "python3.11", digest)
	stale, _ := buildCache(t, "python3.11", "sha256:older")

	tests := []struct {
		name, cache, runtime string
		want                 string // the path, or a part of the error
		notBuilt, unknown    bool
	}{
		{name: "built", cache: current, runtime: "python3.11", want: disk},
		{name: "other runtime not built", cache: current, runtime: "nodejs18.x", want: "run `make runtimes`", notBuilt: true},
		{name: "empty cache", cache: t.TempDir(), runtime: "python3.11", want: "run `make runtimes`", notBuilt: true},
		{name: "stale RIC", cache: stale, runtime: "python3.11", want: "another runtime interface client", notBuilt: true},
		{name: "unknown runtime", cache: current, runtime: "python2.7", want: `"python2.7" is not a managed runtime (supported: nodejs18.x, python3.11)`, unknown: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runtimes.RootPath(tc.cache, tc.runtime)
			if !tc.notBuilt && !tc.unknown {
				if err != nil || got != tc.want {
					t.Errorf("RootPath = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RootPath = %q, %v; want an error with %q", got, err, tc.want)
			}
			if errors.Is(err, runtimes.ErrNotBuilt) != tc.notBuilt {
				t.Errorf("errors.Is(%v, ErrNotBuilt) = %v", err, !tc.notBuilt)
			}
			var ue *runtimes.UnknownError
			if errors.As(err, &ue) != tc.unknown {
				t.Errorf("errors.As(%v, *UnknownError) = %v", err, !tc.unknown)
			}
		})
	}
}
