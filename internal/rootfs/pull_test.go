package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// lsLine finds name in a `debugfs ls -l` listing and returns its mode
// (octal, with type bits) and uid.
func lsLine(t *testing.T, listing, name string) (mode, uid string, ok bool) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s*\d+\s+(\d+)\s+\(\d+\)\s+(\d+)\s+\d+\s+\d+\s.*\s` + regexp.QuoteMeta(name) + `\s*$`)
	m := re.FindStringSubmatch(listing)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

func TestPullBuildsReadOnlyExt4FromRegistry(t *testing.T) {
	reg := newRegistry(t)
	img := testImage(t, "amd64")
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	uri := reg.push(t, "fn/img:v1", img)
	b := newBuilder(t, Options{})

	root, err := b.Pull(ctxT(t), uri)
	if err != nil {
		t.Fatal(err)
	}
	if root.Digest != want.String() {
		t.Errorf("Digest = %s, want the manifest digest %s", root.Digest, want)
	}
	if wantURI := reg.host + "/fn/img@" + want.String(); root.ResolvedURI != wantURI {
		t.Errorf("ResolvedURI = %s, want %s", root.ResolvedURI, wantURI)
	}
	wantCfg := Config{EntryPoint: []string{"/app/handler"}, Cmd: []string{"handler.main"}, WorkingDir: "/app",
		Env: []string{"PATH=/usr/bin:/bin", "GREETING=hi"}}
	if !reflect.DeepEqual(root.Config, wantCfg) {
		t.Errorf("Config = %+v, want %+v", root.Config, wantCfg)
	}
	fi, err := os.Stat(root.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != root.Size || fi.Mode().Perm() != 0o444 {
		t.Errorf("disk %s: size %d mode %v, Root says size %d; want mode 0444", root.Path, fi.Size(), fi.Mode(), root.Size)
	}
	if !strings.HasPrefix(root.Path, filepath.Join(b.dir, "sha256-")) {
		t.Errorf("disk %s is not in the cache %s", root.Path, b.dir)
	}

	// Read the file system back.
	sb := debugfs(t, root.Path, "stats")
	if !regexp.MustCompile(`Filesystem features:.*read-only`).MatchString(sb) {
		t.Errorf("the file system is not marked read-only:\n%s", sb)
	}
	checks := []struct {
		dir, name, mode, uid string // mode "" = must be absent
	}{
		{"/etc", "keep", "100644", "0"},
		{"/etc", "secret", "", ""}, // whited out by the upper layer
		{"/opq", "old", "", ""},    // hidden by the opaque whiteout
		{"/opq", "new", "100644", "0"},
		{"/app", "handler", "100755", "0"},
		{"/app", "link", "120777", "0"},
		{"/app", "data", "100640", "1000"},
		{"/", "bin", "120777", "0"},
		{"/usr/bin", "tool", "100755", "0"},
	}
	for _, c := range checks {
		listing := debugfs(t, root.Path, "ls -l "+c.dir)
		mode, uid, ok := lsLine(t, listing, c.name)
		switch {
		case c.mode == "" && ok:
			t.Errorf("%s/%s is in the disk; the whiteout was not applied:\n%s", c.dir, c.name, listing)
		case c.mode != "" && !ok:
			t.Errorf("%s/%s missing from the disk:\n%s", c.dir, c.name, listing)
		case c.mode != "" && (mode != c.mode || uid != c.uid):
			t.Errorf("%s/%s: mode %s uid %s, want %s %s", c.dir, c.name, mode, uid, c.mode, c.uid)
		}
	}
	if out := debugfs(t, root.Path, "cat /app/handler"); !strings.Contains(out, "echo hi") {
		t.Errorf("/app/handler content: %q", out)
	}
	if out := debugfs(t, root.Path, "stat /app/link"); !strings.Contains(out, `Fast link dest: "handler"`) {
		t.Errorf("/app/link does not point to handler:\n%s", out)
	}
	fsck(t, root.Path)
}

// fsck runs e2fsck read-only. tar2ext4 leaves the inode bitmap's padding
// unset, which e2fsck reports (and fixes when allowed); nothing else may
// be wrong.
func fsck(t *testing.T, disk string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput()
	if err == nil {
		return
	}
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case line == "", strings.HasPrefix(line, "e2fsck "), strings.HasPrefix(line, "Pass "),
			strings.Contains(line, "Padding at end of inode bitmap is not set"),
			strings.HasPrefix(line, rootfsLabelPrefix(disk)):
		default:
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 {
		t.Errorf("e2fsck -fn %s: %v\n%s", disk, err, out)
	}
}

func rootfsLabelPrefix(disk string) string { return disk + ":" }

func TestSecondPullIsServedFromTheCache(t *testing.T) {
	reg := newRegistry(t)
	uri := reg.push(t, "fn/img:v1", testImage(t, "amd64"))
	b := newBuilder(t, Options{})
	first, err := b.Pull(ctxT(t), uri)
	if err != nil {
		t.Fatal(err)
	}
	if reg.count("/blobs/") == 0 {
		t.Fatalf("the first pull read no blob: %v", reg.requests())
	}
	before, err := os.Stat(first.Path)
	if err != nil {
		t.Fatal(err)
	}

	// By tag: the tag must be resolved again (it may have moved), but no
	// blob is read and nothing is built.
	reg.reset()
	again, err := b.Pull(ctxT(t), uri)
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.count("/blobs/"); n != 0 {
		t.Errorf("a cached pull by tag read %d blobs: %v", n, reg.requests())
	}
	if reg.count("/manifests/") == 0 {
		t.Errorf("a pull by tag did not resolve the tag: %v", reg.requests())
	}
	// By digest (the ResolvedImageUri): no request at all.
	reg.reset()
	pinned, err := b.Pull(ctxT(t), first.ResolvedURI)
	if err != nil {
		t.Fatal(err)
	}
	if reqs := reg.requests(); len(reqs) != 0 {
		t.Errorf("a cached pull by digest made requests: %v", reqs)
	}
	for _, r := range []*Root{again, pinned} {
		if r.Path != first.Path || r.Digest != first.Digest || r.ResolvedURI != first.ResolvedURI || !reflect.DeepEqual(r.Config, first.Config) {
			t.Errorf("cached root %+v differs from the built one %+v", r, first)
		}
	}
	after, err := os.Stat(first.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the disk was rewritten by a cached pull")
	}
	if r, ok := b.Lookup(first.Digest); !ok || r.Path != first.Path {
		t.Errorf("Lookup(%s) = %v, %v", first.Digest, r, ok)
	}
	if _, ok := b.Lookup("sha256:" + strings.Repeat("0", 64)); ok {
		t.Errorf("Lookup found a digest never built")
	}

	// A new Builder on the same folder (a restarted Hearth) finds it too.
	b2, err := New(filepath.Dir(b.dir), b.opts)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := b2.Lookup(first.Digest); !ok || r.Path != first.Path {
		t.Errorf("a new Builder does not find the cached root")
	}
}

func TestConcurrentPullsBuildOnce(t *testing.T) {
	reg := newRegistry(t)
	imgA := testImage(t, "amd64")
	imgB := configure(t, mustAppend(t, tarLayer(t, entry{name: "b/only", body: "b", mode: 0o755})), "amd64")
	uriA := reg.push(t, "fn/a:v1", imgA)
	uriB := reg.push(t, "fn/b:v1", imgB)
	layersA, err := imgA.Layers()
	if err != nil {
		t.Fatal(err)
	}
	b := newBuilder(t, Options{})

	const callers = 6
	roots := make([]*Root, 2*callers)
	errs := make([]error, 2*callers)
	var wg sync.WaitGroup
	for i := range 2 * callers {
		uri := uriA
		if i%2 == 1 {
			uri = uriB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			roots[i], errs[i] = b.Pull(ctxT(t), uri)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if roots[i].Path != roots[i%2].Path {
			t.Errorf("caller %d got %s, caller %d got %s", i, roots[i].Path, i%2, roots[i%2].Path)
		}
	}
	if roots[0].Path == roots[1].Path {
		t.Errorf("two different images share a disk")
	}
	// Layers are read only by a build: each layer of A was read once.
	for _, l := range layersA {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if n := reg.count("GET /v2/fn/a/blobs/" + d.String()); n != 1 {
			t.Errorf("layer %s of A was downloaded %d times by %d concurrent pulls, want 1", d, n, callers)
		}
	}
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("cache holds %d entries, want 2 (no leftover build folder): %v", len(entries), entries)
	}
}
