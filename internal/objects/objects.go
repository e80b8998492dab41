// Package objects keeps buckets and their objects in a folder, as a
// gofakes3.Backend: gofakes3 speaks S3's protocol, this package stores.
//
// Each bucket is a folder (<dir>/<bucket>/) with bucket.json and one file
// per object under objects/, named by the SHA-256 of its key (so that any
// key, of any length and with any "/" or "..", is one flat file name and
// never a path). An object's file holds its bytes, then its metadata as
// JSON, then that JSON's length (8 bytes, big-endian): a put writes the
// whole file aside and renames it over the old one (atomicfile), so that a
// crash leaves either the old object or the new one, never a torn one,
// and never bytes without their metadata.
//
// Uploads are written aside without a lock held: only the rename and the
// index's update are under it, so a slow client (a guest, say) holds up
// nobody else. The index (keys, sizes, hashes) is in memory, read from the
// files at Open.
package objects

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"

	"github.com/hearthdev/hearth/internal/atomicfile"
)

// trailerLen is the length of the metadata's length at an object file's
// end.
const trailerLen = 8

// maxMetaBytes bounds an object's metadata as stored (S3 allows 2 KB of
// user metadata; the rest is a few headers).
const maxMetaBytes = 64 << 10

// Store is the buckets in a folder.
type Store struct {
	dir string
	now func() time.Time

	mu      sync.RWMutex
	buckets map[string]*bucket
	// events hears of changes (SetEvents); seq numbers them.
	events Events
	seq    uint64
}

type bucket struct {
	created time.Time
	objects map[string]*entry
	// configs are the bucket's configurations by name (BucketConfig).
	configs map[string][]byte
}

// entry is an object as the index knows it.
type entry struct {
	meta fileMeta
	size int64 // the object's bytes, without the metadata
}

// fileMeta is what an object file keeps after its bytes.
type fileMeta struct {
	Key      string            `json:"key"`
	MD5      []byte            `json:"md5"`
	Modified time.Time         `json:"modified"`
	Meta     map[string]string `json:"meta,omitempty"`
}

type bucketFile struct {
	Created time.Time `json:"created"`
}

var _ gofakes3.Backend = (*Store)(nil)

// Open opens the buckets in dir (made if missing) and reads their index;
// what a crash left half-written is removed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, now: time.Now, buckets: map[string]*bucket{}, seq: uint64(time.Now().UnixNano())}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() || ValidBucketName(e.Name()) != nil {
			continue
		}
		b, err := s.load(e.Name())
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", e.Name(), err)
		}
		if b != nil {
			s.buckets[e.Name()] = b
		}
	}
	return s, nil
}

func (s *Store) load(name string) (*bucket, error) {
	raw, err := os.ReadFile(filepath.Join(s.dir, name, "bucket.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // a creation a crash cut short
	} else if err != nil {
		return nil, err
	}
	var bf bucketFile
	if err := json.Unmarshal(raw, &bf); err != nil {
		return nil, err
	}
	b := &bucket{created: bf.Created, objects: map[string]*entry{}, configs: map[string][]byte{}}
	if _, err := atomicfile.RemoveStale(filepath.Join(s.dir, name)); err != nil {
		return nil, err
	}
	configs, err := filepath.Glob(filepath.Join(s.dir, name, "*"+configSuffix))
	if err != nil {
		return nil, err
	}
	for _, path := range configs {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		b.configs[strings.TrimSuffix(filepath.Base(path), configSuffix)] = raw
	}
	objDir := filepath.Join(s.dir, name, "objects")
	if _, err := atomicfile.RemoveStale(objDir); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(objDir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		m, size, err := readMeta(filepath.Join(objDir, e.Name()))
		if err != nil || fileName(m.Key) != e.Name() {
			return nil, fmt.Errorf("object file %s: unreadable (%v)", e.Name(), err)
		}
		b.objects[m.Key] = &entry{meta: m, size: size}
	}
	return b, nil
}

// readMeta reads an object file's metadata and the size of its bytes.
func readMeta(path string) (fileMeta, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileMeta{}, 0, err
	}
	defer f.Close()
	return metaOf(f)
}

func metaOf(f *os.File) (fileMeta, int64, error) {
	var m fileMeta
	fi, err := f.Stat()
	if err != nil {
		return m, 0, err
	}
	var t [trailerLen]byte
	if fi.Size() < trailerLen {
		return m, 0, errors.New("too short")
	}
	if _, err := f.ReadAt(t[:], fi.Size()-trailerLen); err != nil {
		return m, 0, err
	}
	n := int64(binary.BigEndian.Uint64(t[:]))
	if n <= 0 || n > maxMetaBytes || n > fi.Size()-trailerLen {
		return m, 0, errors.New("bad metadata length")
	}
	raw := make([]byte, n)
	if _, err := f.ReadAt(raw, fi.Size()-trailerLen-n); err != nil {
		return m, 0, err
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, 0, err
	}
	return m, fi.Size() - trailerLen - n, nil
}

// fileName is an object's file name: the SHA-256 of its key.
func fileName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func (s *Store) objectPath(bucket, key string) string {
	return filepath.Join(s.dir, bucket, "objects", fileName(key))
}

var bucketNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ValidBucketName checks a bucket's name by S3's rules for new buckets:
// 3 to 63 lowercase letters, digits, dots and hyphens, starting and
// ending with a letter or digit, no "..", not an IP address. Such a name
// is also one safe folder name.
func ValidBucketName(name string) error {
	if !bucketNameRE.MatchString(name) || strings.Contains(name, "..") || strings.Contains(name, ".-") || strings.Contains(name, "-.") {
		return gofakes3.ErrorMessage(gofakes3.ErrInvalidBucketName, "The specified bucket is not valid.")
	}
	if regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`).MatchString(name) {
		return gofakes3.ErrorMessage(gofakes3.ErrInvalidBucketName, "The specified bucket is not valid.")
	}
	return nil
}

// ListBuckets lists the buckets by name.
func (s *Store) ListBuckets() ([]gofakes3.BucketInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]gofakes3.BucketInfo, 0, len(s.buckets))
	for name, b := range s.buckets {
		out = append(out, gofakes3.BucketInfo{Name: name, CreationDate: gofakes3.NewContentTime(b.created)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ListBucket lists a bucket's keys in order, after page.Marker, at most
// page.MaxKeys keys and common prefixes together.
func (s *Store) ListBucket(name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	if prefix == nil {
		prefix = &gofakes3.Prefix{}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.buckets[name]
	if b == nil {
		return nil, gofakes3.BucketNotFound(name)
	}
	keys := make([]string, 0, len(b.objects))
	for k := range b.objects {
		if prefix.HasPrefix && !strings.HasPrefix(k, prefix.Prefix) {
			continue
		}
		if page.HasMarker && k <= page.Marker {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := gofakes3.NewObjectList()
	var n int64
	var match gofakes3.PrefixMatch
	for i := 0; i < len(keys); i++ {
		k := keys[i]
		if !prefix.Match(k, &match) {
			continue
		}
		last := k
		if match.CommonPrefix {
			out.AddPrefix(match.MatchedPart)
			// The keys under this prefix are one entry: the next page
			// starts after the last of them.
			for i+1 < len(keys) && strings.HasPrefix(keys[i+1], match.MatchedPart) {
				i++
				last = keys[i]
			}
		} else {
			e := b.objects[k]
			out.Add(&gofakes3.Content{Key: k, LastModified: gofakes3.NewContentTime(e.meta.Modified),
				ETag: gofakes3.FormatETag(e.meta.MD5), Size: e.size, StorageClass: gofakes3.StorageStandard})
		}
		n++
		if page.MaxKeys > 0 && n >= page.MaxKeys {
			if i+1 < len(keys) {
				out.IsTruncated, out.NextMarker = true, last
			}
			break
		}
	}
	return out, nil
}

// CreateBucket makes a bucket; an existing one is ErrBucketAlreadyExists.
func (s *Store) CreateBucket(name string) error {
	if err := ValidBucketName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buckets[name] != nil {
		return gofakes3.ResourceError(gofakes3.ErrBucketAlreadyExists, name)
	}
	dir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(filepath.Join(dir, "objects"), 0o700); err != nil {
		return err
	}
	created := s.now().UTC()
	raw, _ := json.Marshal(bucketFile{Created: created})
	// bucket.json last: a bucket without it was never made.
	if err := atomicfile.Write(filepath.Join(dir, "bucket.json"), raw, 0o600); err != nil {
		return err
	}
	s.buckets[name] = &bucket{created: created, objects: map[string]*entry{}, configs: map[string][]byte{}}
	return nil
}

// BucketExists says whether a bucket exists.
func (s *Store) BucketExists(name string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.buckets[name] != nil, nil
}

// DeleteBucket removes an empty bucket.
func (s *Store) DeleteBucket(name string) error { return s.deleteBucket(name, false) }

// ForceDeleteBucket removes a bucket and what it holds.
func (s *Store) ForceDeleteBucket(name string) error { return s.deleteBucket(name, true) }

func (s *Store) deleteBucket(name string, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[name]
	if b == nil {
		return gofakes3.BucketNotFound(name)
	}
	if len(b.objects) > 0 && !force {
		return gofakes3.ResourceError(gofakes3.ErrBucketNotEmpty, name)
	}
	dir := filepath.Join(s.dir, name)
	// bucket.json first: a crash after it leaves no bucket, only files
	// that the next create's folder reuses.
	if err := os.Remove(filepath.Join(dir, "bucket.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	delete(s.buckets, name)
	return os.RemoveAll(dir)
}

// HeadObject is an object's metadata.
func (s *Store) HeadObject(bucketName, key string) (*gofakes3.Object, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.buckets[bucketName]
	if b == nil {
		return nil, gofakes3.BucketNotFound(bucketName)
	}
	e := b.objects[key]
	if e == nil {
		return nil, gofakes3.KeyNotFound(key)
	}
	return &gofakes3.Object{Name: key, Metadata: withModified(e.meta), Size: e.size, Hash: e.meta.MD5,
		Contents: io.NopCloser(bytes.NewReader(nil))}, nil
}

func withModified(m fileMeta) map[string]string {
	out := make(map[string]string, len(m.Meta)+1)
	for k, v := range m.Meta {
		out[k] = v
	}
	out["Last-Modified"] = m.Modified.UTC().Format(http1123)
	return out
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

// GetObject opens an object, or the range of it asked for. The file is
// opened under the lock: a put or delete after that does not change what
// this read returns.
func (s *Store) GetObject(bucketName, key string, rangeRequest *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	s.mu.RLock()
	b := s.buckets[bucketName]
	if b == nil {
		s.mu.RUnlock()
		return nil, gofakes3.BucketNotFound(bucketName)
	}
	e := b.objects[key]
	if e == nil {
		s.mu.RUnlock()
		return nil, gofakes3.KeyNotFound(key)
	}
	f, err := os.Open(s.objectPath(bucketName, key))
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	// The index may be newer than the file we opened (a put renamed over
	// it in between): the file's own metadata is what it holds.
	m, size, err := metaOf(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	rng, err := rangeRequest.Range(size)
	if err != nil {
		f.Close()
		return nil, err
	}
	start, length := int64(0), size
	if rng != nil {
		start, length = rng.Start, rng.Length
	}
	return &gofakes3.Object{Name: key, Metadata: withModified(m), Size: size, Hash: m.MD5, Range: rng,
		Contents: readCloser{io.NewSectionReader(f, start, length), f}}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// keptMeta says which of the request's headers (gofakes3 hands every
// X-Amz-* one) are the object's metadata: the rest (the signature's date,
// a session token, the payload's hash) are the request's, and must not be
// stored and served back to whoever reads the object.
func keptMeta(in map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		lk := strings.ToLower(k)
		switch {
		case strings.HasPrefix(lk, "x-amz-meta-"),
			lk == "content-type", lk == "content-disposition", lk == "cache-control",
			lk == "content-language", lk == "expires", lk == "x-amz-website-redirect-location",
			lk == "x-amz-storage-class", lk == "x-amz-tagging":
			out[k] = v
		case lk == "content-encoding":
			// aws-chunked is the upload's framing, not the object's.
			var kept []string
			for _, c := range strings.Split(v, ",") {
				if c = strings.TrimSpace(c); c != "" && c != "aws-chunked" {
					kept = append(kept, c)
				}
			}
			if len(kept) > 0 {
				out[k] = strings.Join(kept, ",")
			}
		}
	}
	return out
}

// PutObject writes an object: its bytes and metadata are written aside,
// then renamed over the key's file under the lock, where the conditions
// are checked against what is there then; Events hears of it after.
func (s *Store) PutObject(bucketName, key string, meta map[string]string, input io.Reader, size int64, conditions *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	return s.put(bucketName, key, meta, input, size, conditions, KindPut)
}

func (s *Store) put(bucketName, key string, meta map[string]string, input io.Reader, size int64, conditions *gofakes3.PutConditions, kind string) (gofakes3.PutObjectResult, error) {
	c, err := s.write(bucketName, key, meta, input, size, conditions, kind)
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	return gofakes3.PutObjectResult{}, s.changed(c)
}

func (s *Store) write(bucketName, key string, meta map[string]string, input io.Reader, size int64, conditions *gofakes3.PutConditions, kind string) (Change, error) {
	var res Change
	if ok, _ := s.BucketExists(bucketName); !ok {
		return res, gofakes3.BucketNotFound(bucketName)
	}
	path := s.objectPath(bucketName, key)
	f, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return res, err
	}
	defer f.Abort()
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), input)
	if err != nil {
		return res, err
	}
	if size >= 0 && n != size {
		return res, gofakes3.ErrIncompleteBody
	}
	m := fileMeta{Key: key, MD5: h.Sum(nil), Modified: s.now().UTC(), Meta: keptMeta(meta)}
	raw, err := json.Marshal(m)
	if err != nil {
		return res, err
	}
	if len(raw) > maxMetaBytes {
		return res, gofakes3.ErrMetadataTooLarge
	}
	var t [trailerLen]byte
	binary.BigEndian.PutUint64(t[:], uint64(len(raw)))
	if _, err := f.Write(append(raw, t[:]...)); err != nil {
		return res, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucketName]
	if b == nil {
		return res, gofakes3.BucketNotFound(bucketName)
	}
	if conditions != nil {
		info := &gofakes3.ConditionalObjectInfo{}
		if e := b.objects[key]; e != nil {
			info.Exists, info.Hash = true, e.meta.MD5
		}
		if err := gofakes3.CheckPutConditions(conditions, info); err != nil {
			return res, err
		}
	}
	if err := f.Commit(); err != nil {
		return res, err
	}
	b.objects[key] = &entry{meta: m, size: n}
	return Change{Bucket: bucketName, Key: key, Created: true, Kind: kind, Size: n, MD5: m.MD5, Sequencer: s.nextSequencer()}, nil
}

// DeleteObject removes an object; a missing one is no error, as S3 (and
// no event).
func (s *Store) DeleteObject(bucketName, key string) (gofakes3.ObjectDeleteResult, error) {
	s.mu.Lock()
	c, err := s.deleteLocked(bucketName, key)
	s.mu.Unlock()
	if err != nil || c == nil {
		return gofakes3.ObjectDeleteResult{}, err
	}
	return gofakes3.ObjectDeleteResult{}, s.changed(*c)
}

// deleteLocked removes an object; the change is nil when there was none.
func (s *Store) deleteLocked(bucketName, key string) (*Change, error) {
	b := s.buckets[bucketName]
	if b == nil {
		return nil, gofakes3.BucketNotFound(bucketName)
	}
	if b.objects[key] == nil {
		return nil, nil
	}
	path := s.objectPath(bucketName, key)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	delete(b.objects, key)
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return &Change{Bucket: bucketName, Key: key, Kind: KindDelete, Sequencer: s.nextSequencer()}, nil
}

// DeleteMulti removes objects, each on its own.
func (s *Store) DeleteMulti(bucketName string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	s.mu.Lock()
	if s.buckets[bucketName] == nil {
		s.mu.Unlock()
		return res, gofakes3.BucketNotFound(bucketName)
	}
	var changes []Change
	var changed []string
	for _, k := range keys {
		c, err := s.deleteLocked(bucketName, k)
		if err != nil {
			res.Error = append(res.Error, gofakes3.ErrorResult{Key: k, Code: gofakes3.ErrInternal, Message: err.Error()})
			continue
		}
		if c != nil {
			changes, changed = append(changes, *c), append(changed, k)
		}
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: k})
	}
	s.mu.Unlock()
	// A key whose event was not stored is an error of its own: the
	// client, told so, deletes it again.
	for i, c := range changes {
		if err := s.changed(c); err != nil {
			res.Error = append(res.Error, gofakes3.ErrorResult{Key: changed[i], Code: gofakes3.ErrInternal, Message: err.Error()})
			res.Deleted = slices.DeleteFunc(res.Deleted, func(o gofakes3.ObjectID) bool { return o.Key == changed[i] })
		}
	}
	return res, nil
}

// CopyObject copies an object, streaming it; meta replaces the source's
// metadata when given. (gofakes3.CopyObject's, with the event's kind.)
func (s *Store) CopyObject(srcBucket, srcKey, dstBucket, dstKey string, meta map[string]string) (gofakes3.CopyObjectResult, error) {
	src, err := s.GetObject(srcBucket, srcKey, nil)
	if err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	defer src.Contents.Close()
	if _, err := s.put(dstBucket, dstKey, meta, src.Contents, src.Size, nil, KindCopy); err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	return gofakes3.CopyObjectResult{ETag: gofakes3.FormatETag(src.Hash), LastModified: gofakes3.NewContentTime(s.now())}, nil
}
