package objects

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/johannesboyne/gofakes3"

	"github.com/hearthdev/hearth/internal/atomicfile"
)

// Multipart uploads are kept on disk, not in memory as gofakes3's own
// uploader keeps them: <bucket>/uploads/<id>/upload.json names the key,
// and each part is a file beside it, written aside and renamed as objects
// are. An upload survives a restart; completing it streams the parts, in
// order, into the object.

var _ gofakes3.MultipartBackend = (*Store)(nil)

type uploadFile struct {
	Key       string            `json:"key"`
	Meta      map[string]string `json:"meta,omitempty"`
	Initiated time.Time         `json:"initiated"`
}

var uploadIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (s *Store) uploadDir(bucket string, id gofakes3.UploadID) string {
	return filepath.Join(s.dir, bucket, "uploads", string(id))
}

func partName(n int) string { return fmt.Sprintf("part-%05d", n) }

// upload reads an upload, checking that it is of this bucket and key.
func (s *Store) upload(bucket, key string, id gofakes3.UploadID) (uploadFile, error) {
	var u uploadFile
	if ok, _ := s.BucketExists(bucket); !ok {
		return u, gofakes3.BucketNotFound(bucket)
	}
	if !uploadIDRE.MatchString(string(id)) {
		return u, gofakes3.ErrNoSuchUpload
	}
	raw, err := os.ReadFile(filepath.Join(s.uploadDir(bucket, id), "upload.json"))
	if errors.Is(err, os.ErrNotExist) {
		return u, gofakes3.ErrNoSuchUpload
	} else if err != nil {
		return u, err
	}
	if err := json.Unmarshal(raw, &u); err != nil {
		return u, err
	}
	if u.Key != key {
		return u, gofakes3.ErrNoSuchUpload
	}
	return u, nil
}

// CreateMultipartUpload starts an upload.
func (s *Store) CreateMultipartUpload(bucket, key string, meta map[string]string) (gofakes3.UploadID, error) {
	if ok, _ := s.BucketExists(bucket); !ok {
		return "", gofakes3.BucketNotFound(bucket)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := gofakes3.UploadID(hex.EncodeToString(b[:]))
	dir := s.uploadDir(bucket, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	raw, err := json.Marshal(uploadFile{Key: key, Meta: keptMeta(meta), Initiated: s.now().UTC()})
	if err != nil {
		return "", err
	}
	return id, atomicfile.Write(filepath.Join(dir, "upload.json"), raw, 0o600)
}

// UploadPart writes a part (1 to 10,000), replacing one of the same number.
func (s *Store) UploadPart(bucket, key string, id gofakes3.UploadID, partNumber int, contentLength int64, input io.Reader) (string, error) {
	if partNumber < 1 || partNumber > gofakes3.MaxUploadPartNumber {
		return "", gofakes3.ErrInvalidPart
	}
	if _, err := s.upload(bucket, key, id); err != nil {
		return "", err
	}
	f, err := atomicfile.Create(filepath.Join(s.uploadDir(bucket, id), partName(partNumber)), 0o600)
	if err != nil {
		return "", err
	}
	defer f.Abort()
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), input)
	if err != nil {
		return "", err
	}
	if n != contentLength {
		return "", gofakes3.ErrIncompleteBody
	}
	if err := f.Commit(); err != nil {
		return "", err
	}
	return gofakes3.FormatETag(h.Sum(nil)), nil
}

type partInfo struct {
	number  int
	size    int64
	etag    string
	modTime time.Time
}

// parts lists an upload's parts by number, their ETags computed again.
func (s *Store) parts(bucket string, id gofakes3.UploadID) ([]partInfo, error) {
	dir := s.uploadDir(bucket, id)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []partInfo
	for _, e := range ents {
		ns, ok := strings.CutPrefix(e.Name(), "part-")
		if !ok || strings.HasSuffix(ns, ".tmp") {
			continue
		}
		n, err := strconv.Atoi(ns)
		if err != nil {
			continue
		}
		etag, size, mod, err := fileMD5(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, partInfo{number: n, size: size, etag: etag, modTime: mod})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].number < out[j].number })
	return out, nil
}

func fileMD5(path string) (string, int64, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, time.Time{}, err
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, time.Time{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return "", 0, time.Time{}, err
	}
	return gofakes3.FormatETag(h.Sum(nil)), n, fi.ModTime(), nil
}

// ListMultipartUploads lists a bucket's uploads in progress by key.
func (s *Store) ListMultipartUploads(bucket string, marker *gofakes3.UploadListMarker, prefix gofakes3.Prefix, limit int64) (*gofakes3.ListMultipartUploadsResult, error) {
	if ok, _ := s.BucketExists(bucket); !ok {
		return nil, gofakes3.BucketNotFound(bucket)
	}
	res := &gofakes3.ListMultipartUploadsResult{Bucket: bucket, Prefix: prefix.Prefix, Delimiter: prefix.Delimiter, MaxUploads: limit}
	ents, err := os.ReadDir(filepath.Join(s.dir, bucket, "uploads"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	type item struct {
		id gofakes3.UploadID
		u  uploadFile
	}
	var items []item
	for _, e := range ents {
		id := gofakes3.UploadID(e.Name())
		raw, err := os.ReadFile(filepath.Join(s.uploadDir(bucket, id), "upload.json"))
		if err != nil {
			continue
		}
		var u uploadFile
		if json.Unmarshal(raw, &u) != nil {
			continue
		}
		items = append(items, item{id, u})
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].u.Key != items[j].u.Key {
			return items[i].u.Key < items[j].u.Key
		}
		return items[i].id < items[j].id
	})
	var match gofakes3.PrefixMatch
	seen := map[string]bool{}
	for _, it := range items {
		if marker != nil && (it.u.Key < marker.Object || it.u.Key == marker.Object && it.id <= marker.UploadID) {
			continue
		}
		if !prefix.Match(it.u.Key, &match) {
			continue
		}
		if limit > 0 && int64(len(res.Uploads)) >= limit {
			res.IsTruncated, res.NextKeyMarker, res.NextUploadIDMarker = true, it.u.Key, it.id
			break
		}
		if match.CommonPrefix {
			if !seen[match.MatchedPart] {
				seen[match.MatchedPart] = true
				res.CommonPrefixes = append(res.CommonPrefixes, match.AsCommonPrefix())
			}
			continue
		}
		res.Uploads = append(res.Uploads, gofakes3.ListMultipartUploadItem{Key: it.u.Key, UploadID: it.id,
			StorageClass: gofakes3.StorageStandard, Initiated: gofakes3.NewContentTime(it.u.Initiated)})
	}
	return res, nil
}

// ListParts lists an upload's parts after marker.
func (s *Store) ListParts(bucket, key string, id gofakes3.UploadID, marker int, limit int64) (*gofakes3.ListMultipartUploadPartsResult, error) {
	if _, err := s.upload(bucket, key, id); err != nil {
		return nil, err
	}
	parts, err := s.parts(bucket, id)
	if err != nil {
		return nil, err
	}
	res := &gofakes3.ListMultipartUploadPartsResult{Bucket: bucket, Key: key, UploadID: id, MaxParts: limit,
		PartNumberMarker: marker, StorageClass: gofakes3.StorageStandard}
	for _, p := range parts {
		if p.number <= marker {
			continue
		}
		if limit > 0 && int64(len(res.Parts)) >= limit {
			res.IsTruncated, res.NextPartNumberMarker = true, res.Parts[len(res.Parts)-1].PartNumber
			break
		}
		res.Parts = append(res.Parts, gofakes3.ListMultipartUploadPartItem{PartNumber: p.number, ETag: p.etag,
			Size: p.size, LastModified: gofakes3.NewContentTime(p.modTime)})
	}
	return res, nil
}

// AbortMultipartUpload drops an upload and its parts.
func (s *Store) AbortMultipartUpload(bucket, key string, id gofakes3.UploadID) error {
	if _, err := s.upload(bucket, key, id); err != nil {
		return err
	}
	return os.RemoveAll(s.uploadDir(bucket, id))
}

// CompleteMultipartUpload makes the object of the parts listed, in order
// (each part's ETag must match), streaming them; the upload is then gone.
// The object's ETag is its MD5, as a single put's, so that a later HEAD or
// list says the same as the completion did.
func (s *Store) CompleteMultipartUpload(bucket, key string, id gofakes3.UploadID, in *gofakes3.CompleteMultipartUploadRequest) (gofakes3.VersionID, string, error) {
	u, err := s.upload(bucket, key, id)
	if err != nil {
		return "", "", err
	}
	if len(in.Parts) == 0 {
		return "", "", gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "You must specify at least one part")
	}
	have, err := s.parts(bucket, id)
	if err != nil {
		return "", "", err
	}
	byNumber := map[int]partInfo{}
	for _, p := range have {
		byNumber[p.number] = p
	}
	var readers []io.Reader
	var size int64
	prev := 0
	for _, p := range in.Parts {
		if p.PartNumber <= prev {
			return "", "", gofakes3.ErrInvalidPartOrder
		}
		prev = p.PartNumber
		got, ok := byNumber[p.PartNumber]
		if !ok || strings.Trim(p.ETag, `"`) != strings.Trim(got.etag, `"`) {
			return "", "", gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d was not uploaded or its ETag does not match", p.PartNumber)
		}
		f, err := os.Open(filepath.Join(s.uploadDir(bucket, id), partName(p.PartNumber)))
		if err != nil {
			return "", "", err
		}
		defer f.Close()
		readers = append(readers, f)
		size += got.size
	}
	c, err := s.write(bucket, key, u.Meta, io.MultiReader(readers...), size, nil, KindCompleteMultipartUpload)
	if err != nil {
		return "", "", err
	}
	// Its event before the upload goes: if it is not stored, the client
	// is told so and completes the upload again (and at worst, when the
	// removal fails, an object has its event twice).
	if err := s.changed(c); err != nil {
		return "", "", err
	}
	if err := os.RemoveAll(s.uploadDir(bucket, id)); err != nil {
		return "", "", err
	}
	s.mu.RLock()
	var etag string
	if b := s.buckets[bucket]; b != nil && b.objects[key] != nil {
		etag = gofakes3.FormatETag(b.objects[key].meta.MD5)
	}
	s.mu.RUnlock()
	return "", etag, nil
}
