package cli

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/ociimage"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/runtimes"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// The package kinds `hearth bench kinds` measures, in its table's order.
const (
	kindZip   = "zip"
	kindDisk  = "zip-disk"
	kindPy    = "python3.11"
	kindNode  = "nodejs18.x"
	kindImage = "image"
)

var allKinds = []string{kindZip, kindDisk, kindPy, kindNode, kindImage}

// The hello handlers of the managed runtimes: what examples/hello answers,
// in each language, so that every kind does the same work.
const (
	benchPythonApp = "def handler(event, context):\n    return {'message': 'hello, ' + str(event.get('name', 'world'))}\n"
	benchNodeIndex = "exports.handler = async (event) => ({ message: 'hello, ' + (event.name || 'world') });\n"
)

type benchKindsFlags struct {
	host   hostFlags
	zip    string
	kinds  []string
	n      int
	memory int
	json   bool
}

func (c *CLI) benchKindsCmd() *cobra.Command {
	var f benchKindsFlags
	cmd := &cobra.Command{
		Use:   "kinds",
		Short: "Measure cold start, resume and clone of each package kind (zip, Python, Node, image), in one run",
		Long: `Runs the hello function packaged each way Hearth runs functions and measures,
in one run on this machine, cold start, resume and clone (p50, p90; each to
its first response):

  zip         provided.al2023, the bootstrap in the initramfs (examples/hello)
  zip-disk    the same zip's code on a read-only ext4 root disk at /var/task
              instead, the initramfs holding the agent alone (not what
              Hearth does for zips: measured to compare)
  python3.11  a hello handler on the python3.11 root disk (make runtimes)
  nodejs18.x  a hello handler on the nodejs18.x root disk (make runtimes)
  image       examples/hello's bootstrap as a container image, built with
              go-containerregistry and imported into a fresh root disk
              cache as ` + "`hearth image import`" + ` does (its build time reported)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.benchKinds(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "examples/hello/hello.zip", "the provided.al2023 hello function (its bootstrap is also the image's)")
	cmd.Flags().StringSliceVar(&f.kinds, "kinds", allKinds, "the kinds to measure: "+strings.Join(allKinds, ", "))
	cmd.Flags().IntVarP(&f.n, "count", "n", 5, "measurements of each kind")
	cmd.Flags().IntVar(&f.memory, "memory", 256, "memory in MB of every kind")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}

// kindResult is one kind's measurements.
type kindResult struct {
	kind string
	l    *lifecycle
	// buildMs is the time to make what the kind boots from its package:
	// the initramfs, and for an image its root disk too (rootBuildMs).
	buildMs, rootBuildMs float64
}

func (r kindResult) summary() map[string]any {
	s := r.l.summary()
	out := map[string]any{"kind": r.kind, "build_ms": round2(r.buildMs)}
	for _, k := range []string{"cold", "resume", "clone"} {
		out[k+"_p50_ms"], out[k+"_p90_ms"] = s[k+"_p50_ms"], s[k+"_p90_ms"]
	}
	if r.kind == kindImage {
		out["root_build_ms"] = round2(r.rootBuildMs)
	}
	return out
}

// benchKind is one kind made ready to boot.
type benchKind struct {
	fn                   sandbox.Function
	img                  sandbox.Image
	buildMs, rootBuildMs float64
}

func (c *CLI) benchKinds(cmd *cobra.Command, f benchKindsFlags) error {
	ctx := cmd.Context()
	if f.n < 1 {
		return fmt.Errorf("--count must be at least 1")
	}
	for _, k := range f.kinds {
		if !slices.Contains(allKinds, k) {
			return fmt.Errorf("--kinds: unknown kind %q (known: %s)", k, strings.Join(allKinds, ", "))
		}
	}
	h, err := c.openHost(f.host, c.logger(cmd))
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "hearth-bench-kinds-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var results []kindResult
	accelResolved := false
	for _, kind := range f.kinds {
		dir := filepath.Join(work, strings.ReplaceAll(kind, ".", "-"))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		bk, err := c.prepareKind(ctx, h, kind, f, dir, c.logger(cmd))
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		if !accelResolved {
			if err := h.ResolveAccel(ctx, bk.img); err != nil {
				return err
			}
			accelResolved = true
		}
		cfg := h.SandboxConfig(dir, nil)
		cfg.InitTimeout = 2 * time.Minute
		fmt.Fprintf(c.Stderr, "measuring %s…\n", kind)
		l, err := measureLifecycle(ctx, cfg, bk.fn, bk.img, f.n)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		results = append(results, kindResult{kind: kind, l: l, buildMs: bk.buildMs, rootBuildMs: bk.rootBuildMs})
	}
	if f.json {
		rows := make([]map[string]any, len(results))
		for i, r := range results {
			rows[i] = r.summary()
		}
		out := map[string]any{"runs": f.n, "accel": h.Accel, "kernel": h.Kernel.Source, "memory_mb": f.memory, "kinds": rows}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(c.Stdout, string(b))
		return nil
	}
	fmt.Fprintf(c.Stdout, "package kinds: %d runs of each, accel %s, kernel %s (%s), %d MB\n\n", f.n, h.Accel, h.Kernel.Version, h.Kernel.Source, f.memory)
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tcold p50\tp90\tresume p50\tp90\tclone p50\tp90\tbuild ms\t")
	for _, r := range results {
		s := r.summary()
		build := fmt.Sprintf("%.0f", r.buildMs)
		if r.kind == kindImage {
			build = fmt.Sprintf("%.0f (root %.0f)", r.buildMs, r.rootBuildMs)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n", r.kind, s["cold_p50_ms"], s["cold_p90_ms"],
			s["resume_p50_ms"], s["resume_p90_ms"], s["clone_p50_ms"], s["clone_p90_ms"], build)
	}
	return tw.Flush()
}

// prepareKind makes kind's function and image in dir, timing the build.
func (c *CLI) prepareKind(ctx context.Context, h *host, kind string, f benchKindsFlags, dir string, log *slog.Logger) (benchKind, error) {
	fn := sandbox.Function{Name: "hello-" + strings.ReplaceAll(kind, ".", ""), MemoryMB: f.memory, Timeout: time.Minute}
	t0 := time.Now()
	switch kind {
	case kindZip:
		code, err := guestimage.ReadZipFile(f.zip)
		if err != nil {
			return benchKind{}, err
		}
		img, err := h.Image(dir, code)
		return benchKind{fn: fn, img: img, buildMs: msf(time.Since(t0))}, err
	case kindDisk:
		code, err := guestimage.ReadZipFile(f.zip)
		if err != nil {
			return benchKind{}, err
		}
		disk := filepath.Join(dir, "code-"+code.Digest()[:16]+".ext4")
		if err := guestimage.WriteCodeDisk(disk, code); err != nil {
			return benchKind{}, err
		}
		fi, err := os.Stat(disk)
		if err != nil {
			return benchKind{}, err
		}
		fn.Root = &sandbox.Root{Disk: disk, Digest: "code:" + code.Digest(), Size: fi.Size(),
			Command: []string{"/var/task/bootstrap"}, WorkingDir: "/var/task"}
		img, err := h.CodeImage(ctx, filepath.Join(dir, "images"), "", "")
		return benchKind{fn: fn, img: img, buildMs: msf(time.Since(t0))}, err
	case kindPy, kindNode:
		files := map[string]string{"app.py": benchPythonApp}
		fn.Handler = "app.handler"
		if kind == kindNode {
			files, fn.Handler = map[string]string{"index.js": benchNodeIndex}, "index.handler"
		}
		root, err := managedRuntimeRoot(c.cacheDir(), kind)
		if err != nil {
			return benchKind{}, err
		}
		fn.Root = root
		zipPath := filepath.Join(dir, "code.zip")
		if err := writeCodeZip(zipPath, files); err != nil {
			return benchKind{}, err
		}
		t0 = time.Now()
		code, err := guestimage.ReadPackageFile(zipPath)
		if err != nil {
			return benchKind{}, err
		}
		img, err := h.Image(dir, code)
		return benchKind{fn: fn, img: img, buildMs: msf(time.Since(t0))}, err
	case kindImage:
		bootstrap, err := zipEntry(f.zip, "bootstrap")
		if err != nil {
			return benchKind{}, err
		}
		v1img, err := bootstrapImage(bootstrap)
		if err != nil {
			return benchKind{}, err
		}
		tb := filepath.Join(dir, "image.tar")
		if err := tarball.WriteToFile(tb, nil, v1img); err != nil {
			return benchKind{}, err
		}
		// As `hearth image import` does, into a cache of the bench's own so
		// that the root is built, not found.
		b, err := rootfs.New(filepath.Join(dir, "rootfs"), rootfs.Options{Logger: log})
		if err != nil {
			return benchKind{}, err
		}
		t0 = time.Now()
		ri, err := b.OpenTarball(tb)
		if err != nil {
			return benchKind{}, err
		}
		root, err := b.Build(ctx, ri)
		if err != nil {
			return benchKind{}, err
		}
		rootMs := msf(time.Since(t0))
		fn.Root = &sandbox.Root{Disk: root.Path, Digest: root.Digest, Size: root.Size,
			Command: append(slices.Clip(root.Config.EntryPoint), root.Config.Cmd...), WorkingDir: root.Config.WorkingDir}
		img, err := h.CodeImage(ctx, filepath.Join(dir, "images"), "", "")
		return benchKind{fn: fn, img: img, buildMs: msf(time.Since(t0)), rootBuildMs: rootMs}, err
	}
	return benchKind{}, fmt.Errorf("unknown kind %q", kind)
}

// managedRuntimeRoot is the root disk a zip function on the managed
// runtime name runs on, as the daemon gives it (internal/invoke).
func managedRuntimeRoot(cacheDir, name string) (*sandbox.Root, error) {
	disk, err := runtimes.RootPath(cacheDir, name)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(disk)
	if err != nil {
		return nil, err
	}
	return &sandbox.Root{Disk: disk, Digest: name + "@" + filepath.Base(filepath.Dir(disk)), Size: fi.Size()}, nil
}

// writeCodeZip writes a zip of files (name → content, mode 0644) at path.
func writeCodeZip(path string, files map[string]string) error {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		hdr := &zip.FileHeader{Name: name, Method: zip.Deflate}
		hdr.SetMode(0o644)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, files[name]); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o600)
}

// zipEntry reads the file name from the zip at path.
func zipEntry(path, name string) ([]byte, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	f, err := zr.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

// bootstrapImage is a linux/amd64 image of one layer holding the folders
// the guest mounts on and a provided runtime's bootstrap at
// /var/runtime/bootstrap, its ENTRYPOINT, as Lambda's provided base images
// lay it out.
func bootstrapImage(bootstrap []byte) (v1.Image, error) {
	files := append(ociimage.GuestDirs(), ociimage.File{Path: "var/runtime", Mode: 0o755, Dir: true},
		ociimage.File{Path: "var/runtime/bootstrap", Mode: 0o755, Data: bootstrap})
	return ociimage.Build(files, v1.Config{Entrypoint: []string{"/var/runtime/bootstrap"}, WorkingDir: "/var/task"})
}
