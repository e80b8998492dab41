package api

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	wire "github.com/hearthdev/hearth/client/microvm"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// MaxUploadBytes bounds a file uploaded into a MicroVM.
const MaxUploadBytes = 4 << 30

const maxGuestPath = 4096

// streamsBody says whether r is an upload into a MicroVM: its body is
// signed as UNSIGNED-PAYLOAD and streamed to the guest as it comes, bound
// by MaxUploadBytes, instead of read whole to check its hash.
func streamsBody(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, wire.SandboxPrefix) &&
		strings.HasSuffix(r.URL.Path, "/files") && r.Header.Get("X-Amz-Content-Sha256") == "UNSIGNED-PAYLOAD"
}

// guestPath reads the path query parameter: absolute, clean, bounded.
func guestPath(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	if p == "" || !strings.HasPrefix(p, "/") || len(p) > maxGuestPath || strings.ContainsRune(p, 0) {
		return "", validation("path must be an absolute path in the MicroVM of at most %d bytes", maxGuestPath)
	}
	return path.Clean(p), nil
}

// fileError maps a file operation's error: the guest's not-exist, exist
// and permission errors are the caller's, with the path they named.
func fileError(err error, p string) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return mvmNotFound("%s: no such file or folder in the MicroVM", p)
	case errors.Is(err, fs.ErrExist):
		return conflict("%s: already exists in the MicroVM", p)
	case errors.Is(err, fs.ErrPermission):
		return accessDenied("%s: permission denied in the MicroVM", p)
	case errors.Is(err, errors.ErrUnsupported):
		return &lambdaerr.Error{Type: "ServiceException", Status: http.StatusNotImplemented, Message: "this MicroVM's guest does not support file operations"}
	}
	return err
}

// fileOp is one file operation on a held MicroVM: it returns the JSON
// answer (nil: it wrote its own) or an error.
type fileOp func(w http.ResponseWriter, r *http.Request, g guest, p string) (any, error)

func (a *API) files(op fileOp) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := guestPath(r)
		if err != nil {
			a.writeError(w, err)
			return
		}
		g, release, err := a.hold(r)
		if err != nil {
			a.writeError(w, err)
			return
		}
		defer release()
		out, err := op(w, r, g, p)
		if err != nil {
			a.writeError(w, fileError(err, p))
			return
		}
		if out != nil {
			writeJSON(w, http.StatusOK, out)
		}
	}
}

func wireInfo(fi sandbox.FileInfo) wire.FileInfo {
	return wire.FileInfo{Name: fi.Name, Size: fi.Size, Mode: fi.Mode, ModTime: fi.ModTime, IsDir: fi.IsDir}
}

// downloadFile is GET …/files?path=: the file's bytes, streamed.
func downloadFile(w http.ResponseWriter, r *http.Request, g guest, p string) (any, error) {
	rc, fi, err := g.ReadFile(r.Context(), p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if fi.IsDir {
		return nil, validation("%s is a folder: list it, or download its files", p)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size, 10))
	w.Header().Set("X-Hearth-File-Mode", strconv.FormatUint(uint64(fi.Mode.Perm()), 8))
	if !fi.ModTime.IsZero() {
		w.Header().Set("Last-Modified", fi.ModTime.UTC().Format(http.TimeFormat))
	}
	w.WriteHeader(http.StatusOK)
	// The status is sent: a failure now can only cut the body short,
	// which the Content-Length tells the client.
	_, _ = io.CopyN(w, rc, fi.Size)
	return nil, nil
}

// uploadFile is PUT …/files?path=&mode=: the body, streamed into the file.
func uploadFile(w http.ResponseWriter, r *http.Request, g guest, p string) (any, error) {
	mode := fs.FileMode(0o644)
	if s := r.URL.Query().Get("mode"); s != "" {
		m, err := strconv.ParseUint(s, 8, 32)
		if err != nil || m > 0o777 {
			return nil, validation("mode must be octal permission bits such as 644, not %q", s)
		}
		mode = fs.FileMode(m)
	}
	if r.ContentLength > MaxUploadBytes {
		return nil, lambdaerr.RequestTooLarge("a file uploaded into a MicroVM must be at most %d bytes", MaxUploadBytes)
	}
	n, err := g.WriteFile(r.Context(), p, mode, r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, lambdaerr.RequestTooLarge("a file uploaded into a MicroVM must be at most %d bytes", MaxUploadBytes)
		}
		return nil, err
	}
	return wire.WriteResult{Path: p, BytesWritten: n}, nil
}

// removeFile is DELETE …/files?path=&recursive=.
func removeFile(w http.ResponseWriter, r *http.Request, g guest, p string) (any, error) {
	recursive, err := boolQuery(r, "recursive")
	if err != nil {
		return nil, err
	}
	if p == "/" {
		return nil, validation("the MicroVM's root folder cannot be removed")
	}
	if err := g.RemoveFile(r.Context(), p, recursive); err != nil {
		return nil, err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil, nil
}

// statFile is GET …/files/stat?path=.
func statFile(w http.ResponseWriter, r *http.Request, g guest, p string) (any, error) {
	fi, err := g.StatFile(r.Context(), p)
	if err != nil {
		return nil, err
	}
	return wireInfo(fi), nil
}

// listDir is GET …/files/list?path=.
func listDir(w http.ResponseWriter, r *http.Request, g guest, p string) (any, error) {
	fis, err := g.ListDir(r.Context(), p)
	if err != nil {
		return nil, err
	}
	out := wire.DirList{Entries: make([]wire.FileInfo, 0, len(fis))}
	for _, fi := range fis {
		out.Entries = append(out.Entries, wireInfo(fi))
	}
	return out, nil
}

// makeDir is POST …/files/mkdir?path=.
func makeDir(w http.ResponseWriter, r *http.Request, g guest, p string) (any, error) {
	if err := g.MakeDir(r.Context(), p); err != nil {
		return nil, err
	}
	fi := wire.FileInfo{Name: path.Base(p), IsDir: true, Mode: fs.ModeDir | 0o755, ModTime: time.Now().UTC()}
	if got, err := g.StatFile(r.Context(), p); err == nil {
		fi = wireInfo(got)
	}
	return fi, nil
}

func boolQuery(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, validation("%s must be true or false, not %q", name, s)
	}
	return b, nil
}
