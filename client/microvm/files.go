package microvm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
)

// unsignedPayload marks a streamed upload: its body is not part of the
// signature, so that it need not be read twice.
const unsignedPayload = "UNSIGNED-PAYLOAD"

func fileQuery(path string) url.Values { return url.Values{"path": {path}} }

// Upload writes r to path in the MicroVM (its folders made, a file there
// replaced) with mode's permission bits, streaming it; size is r's length
// when known, else -1. It returns the bytes written.
func (c *Client) Upload(ctx context.Context, id, path string, mode fs.FileMode, r io.Reader, size int64) (int64, error) {
	q := fileQuery(path)
	q.Set("mode", strconv.FormatUint(uint64(mode.Perm()), 8))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.url(SandboxPrefix+id+"/files", q).String(), r)
	if err != nil {
		return 0, err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(ctx, req, unsignedPayload)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out WriteResult
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("upload %s: reading the answer: %w", path, err)
	}
	return out.BytesWritten, nil
}

// Download streams the file at path in the MicroVM; the caller closes it.
// The FileInfo's Size is the body's length.
func (c *Client) Download(ctx context.Context, id, path string) (io.ReadCloser, FileInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(SandboxPrefix+id+"/files", fileQuery(path)).String(), nil)
	if err != nil {
		return nil, FileInfo{}, err
	}
	resp, err := c.send(ctx, req, hashOf(nil))
	if err != nil {
		return nil, FileInfo{}, err
	}
	fi := FileInfo{Size: resp.ContentLength}
	if m, err := strconv.ParseUint(resp.Header.Get("X-Hearth-File-Mode"), 8, 32); err == nil {
		fi.Mode = fs.FileMode(m)
	}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		fi.ModTime = t
	}
	return resp.Body, fi, nil
}

// Stat describes the file at path in the MicroVM.
func (c *Client) Stat(ctx context.Context, id, path string) (FileInfo, error) {
	var out FileInfo
	err := c.do(ctx, http.MethodGet, SandboxPrefix+id+"/files/stat", fileQuery(path), nil, &out)
	return out, err
}

// ListDir lists the folder at path in the MicroVM.
func (c *Client) ListDir(ctx context.Context, id, path string) ([]FileInfo, error) {
	var out DirList
	if err := c.do(ctx, http.MethodGet, SandboxPrefix+id+"/files/list", fileQuery(path), nil, &out); err != nil {
		return nil, err
	}
	return out.Entries, nil
}

// Remove removes path in the MicroVM: a folder only when empty, or with
// recursive.
func (c *Client) Remove(ctx context.Context, id, path string, recursive bool) error {
	q := fileQuery(path)
	if recursive {
		q.Set("recursive", "true")
	}
	return c.do(ctx, http.MethodDelete, SandboxPrefix+id+"/files", q, nil, nil)
}

// MakeDir makes the folder path (and its parents) in the MicroVM.
func (c *Client) MakeDir(ctx context.Context, id, path string) error {
	return c.do(ctx, http.MethodPost, SandboxPrefix+id+"/files/mkdir", fileQuery(path), nil, nil)
}
