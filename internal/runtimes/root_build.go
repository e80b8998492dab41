package runtimes

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"
)

// The function's user, as the agent runs it (agent.FunctionUID and the
// rest; a test checks they agree). The root's /etc/passwd and /etc/group
// name it, since after the switch into the root those are the ones that
// getpwuid and `id` read.
const (
	functionUID  = 993
	functionGID  = 990
	functionUser = "sbx_user1051"
	functionHome = "/tmp"
)

type folder struct {
	name string
	mode int64
}

// mountPoints are the folders the agent mounts onto in the root: the
// function's code, its layers and its writable /tmp.
var mountPoints = []folder{
	{"opt", 0o755},
	{"tmp", 0o1777},
	{"var/task", 0o755},
}

// dropped says whether a path of the package tar stays out of the root:
// what apt and debconf keep for the next install, which a read-only root
// never has.
func dropped(name string) bool {
	for _, prefix := range []string{"var/cache/apt/", "var/lib/apt/lists/", "var/log/"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return strings.HasPrefix(name, "var/cache/debconf/") && strings.HasSuffix(name, "-old")
}

// BuildOptions tune WriteRoot.
type BuildOptions struct {
	// ModTime is the time stamp of the files WriteRoot adds; the script
	// passes SOURCE_DATE_EPOCH, so that a rebuild of the same packages gives
	// the same disk.
	ModTime time.Time
}

// Manifest describes a built root; the script writes it beside the disk.
type Manifest struct {
	Runtime string `json:"runtime"`
	// RICDigest is Runtime.RICDigest of the RIC put into the root.
	RICDigest string `json:"ricDigest"`
	// Packages are the Debian packages in the root, "name version", sorted:
	// what a rebuild must match to give the same root.
	Packages []string `json:"packages"`
}

// WriteRoot reads the packages' root as a tar stream (mmdebstrap's output),
// adds rt's RIC in RuntimeDir, the function's user and the mount points,
// and writes the result to dst as an ext4 image. Nothing touches the local
// file system but dst.
func WriteRoot(ctx context.Context, src io.Reader, rt Runtime, dst io.ReadWriteSeeker, opts BuildOptions) (*Manifest, error) {
	files, err := rt.Files()
	if err != nil {
		return nil, err
	}
	digest, err := rt.RICDigest()
	if err != nil {
		return nil, err
	}
	m := &Manifest{Runtime: rt.Name, RICDigest: digest}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := rewrite(ctx, src, pw, files, m, opts.ModTime)
		pw.CloseWithError(err)
		done <- err
	}()
	convErr := tar2ext4.ConvertTarToExt4(pr, dst)
	pr.CloseWithError(errors.Join(convErr, io.ErrClosedPipe)) // unblocks the rewriter if tar2ext4 stopped early
	if err := <-done; err != nil {
		return nil, fmt.Errorf("root of %s: %w", rt.Name, err)
	}
	if convErr != nil {
		return nil, fmt.Errorf("root of %s: ext4: %w", rt.Name, convErr)
	}
	sort.Strings(m.Packages)
	return m, nil
}

// rewrite copies the package tar to w with the root's additions.
func rewrite(ctx context.Context, src io.Reader, w io.Writer, ric []File, m *Manifest, mtime time.Time) error {
	tr := tar.NewReader(bufio.NewReader(src))
	tw := tar.NewWriter(w)
	seen := map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the package tar: %w", err)
		}
		name := cleanName(hdr.Name)
		if name == "" || dropped(name) {
			continue
		}
		hdr.Name = name
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = cleanName(hdr.Linkname)
		}
		seen[name] = true
		var body io.Reader = tr
		switch name {
		case "etc/passwd", "etc/group", "var/lib/dpkg/status":
			data, err := io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			switch name {
			case "etc/passwd":
				data = appendLine(data, fmt.Sprintf("%s:x:%d:%d::%s:/usr/sbin/nologin", functionUser, functionUID, functionGID, functionHome))
			case "etc/group":
				data = appendLine(data, fmt.Sprintf("%s:x:%d:", functionUser, functionGID))
			default:
				m.Packages = installedPackages(data)
			}
			hdr.Size = int64(len(data))
			body = bytes.NewReader(data)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, body); err != nil {
			return fmt.Errorf("copying %s: %w", name, err)
		}
	}

	add := func(hdr *tar.Header, data []byte) error {
		hdr.Uname, hdr.Gname = "root", "root"
		hdr.ModTime = mtime
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	dirs := append(append([]folder{}, mountPoints...), folder{strings.TrimPrefix(RuntimeDir, "/"), 0o755})
	for _, d := range dirs {
		if seen[d.name] {
			continue
		}
		if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode}, nil); err != nil {
			return err
		}
	}
	for _, f := range ric {
		name := path.Join(strings.TrimPrefix(RuntimeDir, "/"), f.Name)
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(f.Mode), Size: int64(len(f.Data))}, f.Data); err != nil {
			return err
		}
	}
	if !seen["etc/hosts"] {
		// netbase is not in the root; the runtime and the function reach
		// the Runtime API and each other on loopback by name too.
		hosts := []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/hosts", Mode: 0o644, Size: int64(len(hosts))}, hosts); err != nil {
			return err
		}
	}
	return tw.Close()
}

// cleanName makes a tar name relative to the root ("./usr/bin/" → "usr/bin");
// the root itself is "".
func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func appendLine(data []byte, line string) []byte {
	for _, l := range strings.Split(string(data), "\n") {
		if l == line {
			return data
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	return append(data, line+"\n"...)
}

// installedPackages lists "name version" of the installed packages in a
// dpkg status file.
func installedPackages(status []byte) []string {
	var out []string
	for _, stanza := range strings.Split(string(status), "\n\n") {
		var name, version string
		installed := false
		for _, line := range strings.Split(stanza, "\n") {
			switch {
			case strings.HasPrefix(line, "Package: "):
				name = strings.TrimPrefix(line, "Package: ")
			case strings.HasPrefix(line, "Version: "):
				version = strings.TrimPrefix(line, "Version: ")
			case strings.HasPrefix(line, "Status: "):
				installed = strings.HasSuffix(line, " installed")
			}
		}
		if name != "" && installed {
			out = append(out, name+" "+version)
		}
	}
	return out
}
