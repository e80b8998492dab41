package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/objects"
	"github.com/hearthdev/hearth/internal/s3api"
)

// In a cluster a bucket lives on the host that created it (its objects
// are on that host's disk); any host serves it. The replicated bucket
// BucketOwnersBucket says which host owns each bucket (a host records the
// buckets it has at start; a create claims the name with a
// create-if-absent, which decides a race) and where each host's S3
// listener is. A host asked for a bucket another host owns sends the
// request on, as it came, to the owner's S3 listener (hostProxy: bodies
// stream, aws-chunked and multipart included), and the owner checks the
// SigV4 signature itself: keys are the cluster's (function keys too:
// their master is the cluster's), and the Host header is kept. Nothing is
// trusted because it comes from another host: the hop's header only
// stops a second hop. ListBuckets lists this host's buckets and those the
// record gives to the other live hosts.

// BucketOwnersBucket maps each bucket to the node that owns it, and each
// node to its S3 address.
const BucketOwnersBucket = "hearth_bucket_owners"

// HeaderBucketNode names, on a forwarded answer, the host that owns the
// bucket.
const HeaderBucketNode = "X-Hearth-Bucket-Node"

// Keys of BucketOwnersBucket (a bucket's name and a node's are valid key
// characters).
const (
	bucketOwnerPrefix = "bucket."
	s3AddrPrefix      = "s3."
)

// bucketOwner is a bucket's entry.
type bucketOwner struct {
	Node    string    `json:"node"`
	Created time.Time `json:"created"`
}

// bucketOwners is the owners' record, followed by a watch (a lookup that
// misses asks the bucket itself: a bucket just made on another host).
type bucketOwners struct {
	kv   jetstream.KeyValue
	node string

	mu     sync.Mutex
	owners map[string]bucketOwner // bucket → owner
	addrs  map[string]string      // node → S3 address

	cancel context.CancelFunc
	done   chan struct{}
}

func openBucketOwners(ctx context.Context, js jetstream.JetStream, replicas int, node string, log *slog.Logger) (*bucketOwners, error) {
	var kv jetstream.KeyValue
	err := broker.Retry(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketOwnersBucket,
			Description: "Which Hearth host owns each S3 bucket, and each host's S3 address", History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bucket owners: %w", err)
	}
	o := &bucketOwners{kv: kv, node: node, owners: map[string]bucketOwner{}, addrs: map[string]string{}}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watching the bucket owners: %w", err)
	}
	for u := range w.Updates() {
		if u == nil {
			break
		}
		o.apply(u, log)
	}
	o.cancel, o.done = cancel, make(chan struct{})
	go func() {
		defer close(o.done)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-wctx.Done():
				return
			case u, ok := <-w.Updates():
				if !ok {
					return
				}
				if u != nil {
					o.apply(u, log)
				}
			}
		}
	}()
	return o, nil
}

func (o *bucketOwners) apply(u jetstream.KeyValueEntry, log *slog.Logger) {
	o.mu.Lock()
	defer o.mu.Unlock()
	put := u.Operation() == jetstream.KeyValuePut
	switch k := u.Key(); {
	case strings.HasPrefix(k, bucketOwnerPrefix):
		name := strings.TrimPrefix(k, bucketOwnerPrefix)
		if !put {
			delete(o.owners, name)
			return
		}
		var e bucketOwner
		if err := json.Unmarshal(u.Value(), &e); err != nil {
			log.Warn("bucket owners: an entry that is not an owner", "key", k, "err", err)
			return
		}
		o.owners[name] = e
	case strings.HasPrefix(k, s3AddrPrefix):
		if !put {
			delete(o.addrs, strings.TrimPrefix(k, s3AddrPrefix))
			return
		}
		o.addrs[strings.TrimPrefix(k, s3AddrPrefix)] = string(u.Value())
	}
}

func (o *bucketOwners) stop() {
	if o == nil || o.cancel == nil {
		return
	}
	o.cancel()
	<-o.done
}

// validKey reports whether name can be a key of the record (a bucket
// name always is; a request may carry anything).
func validKey(name string) bool {
	if name == "" || len(name) > 255 || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Owner is the node that owns bucket; ok is false when none is recorded.
func (o *bucketOwners) Owner(ctx context.Context, bucket string) (string, bool, error) {
	if !validKey(bucket) {
		return "", false, nil
	}
	o.mu.Lock()
	e, ok := o.owners[bucket]
	o.mu.Unlock()
	if ok {
		return e.Node, true, nil
	}
	ent, err := o.kv.Get(ctx, bucketOwnerPrefix+bucket)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if err := json.Unmarshal(ent.Value(), &e); err != nil {
		return "", false, fmt.Errorf("bucket %s's owner: %w", bucket, err)
	}
	return e.Node, true, nil
}

// Addr is node's S3 address, "" when it told none.
func (o *bucketOwners) Addr(node string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.addrs[node]
}

// setAddr tells the others this host's S3 address.
func (o *bucketOwners) setAddr(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, broker.LeaderWait)
	defer cancel()
	_, err := o.kv.PutString(ctx, s3AddrPrefix+o.node, addr)
	return err
}

// claim records this host as bucket's owner unless another host is:
// the owner recorded, and whether this host made the record now.
func (o *bucketOwners) claim(ctx context.Context, bucket string, created time.Time) (owner string, made bool, rev uint64, err error) {
	if !validKey(bucket) {
		return "", false, 0, gofakes3.ResourceError(gofakes3.ErrInvalidBucketName, bucket)
	}
	b, _ := json.Marshal(bucketOwner{Node: o.node, Created: created.UTC()})
	for {
		rev, err = o.kv.Create(ctx, bucketOwnerPrefix+bucket, b)
		if err == nil {
			o.mu.Lock()
			o.owners[bucket] = bucketOwner{Node: o.node, Created: created.UTC()}
			o.mu.Unlock()
			return o.node, true, rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", false, 0, err
		}
		e, err := o.kv.Get(ctx, bucketOwnerPrefix+bucket)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			// A replica that has not the winner's entry yet (reads may
			// be served by any), or the bucket was removed since: again.
			select {
			case <-ctx.Done():
				return "", false, 0, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return "", false, 0, err
		}
		var have bucketOwner
		if err := json.Unmarshal(e.Value(), &have); err != nil {
			return "", false, 0, fmt.Errorf("bucket %s's owner: %w", bucket, err)
		}
		return have.Node, false, e.Revision(), nil
	}
}

// release forgets bucket's owner, when it is this host.
func (o *bucketOwners) release(ctx context.Context, bucket string) error {
	if !validKey(bucket) {
		return nil
	}
	o.mu.Lock()
	cached, mine := o.owners[bucket]
	o.mu.Unlock()
	mine = mine && cached.Node == o.node
	var e jetstream.KeyValueEntry
	var err error
	for try := 0; ; try++ {
		e, err = o.kv.Get(ctx, bucketOwnerPrefix+bucket)
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		}
		// Reads may be served by a replica behind the leader: an entry
		// this host knows it made is looked for a little longer.
		if !mine || try == 25 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		return err
	}
	var have bucketOwner
	if json.Unmarshal(e.Value(), &have) == nil && have.Node != o.node {
		return nil
	}
	if err := o.kv.Delete(ctx, bucketOwnerPrefix+bucket, jetstream.LastRevision(e.Revision())); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	o.mu.Lock()
	delete(o.owners, bucket)
	o.mu.Unlock()
	return nil
}

// others are the buckets the record gives to hosts other than this one.
func (o *bucketOwners) others() map[string]bucketOwner {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]bucketOwner{}
	for name, e := range o.owners {
		if e.Node != o.node {
			out[name] = e
		}
	}
	return out
}

// bucketBackend is the S3 endpoint's backend: this host's objects, with,
// in a cluster, the owners' record kept as buckets are made and removed,
// and a list of every live host's buckets.
type bucketBackend struct {
	*objects.Store
	owners *bucketOwners // nil standalone
	// up reports whether node is up (membership).
	up func(node string) bool
}

// backendWait bounds the record's reads and writes for one request
// (gofakes3's backend calls carry no context).
const backendWait = broker.LeaderWait

// CreateBucket claims the name for this host before making it: a name
// another host owns (or claimed first in a race) already exists.
func (b *bucketBackend) CreateBucket(name string) error {
	if b.owners == nil {
		return b.Store.CreateBucket(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendWait)
	defer cancel()
	owner, made, _, err := b.owners.claim(ctx, name, time.Now())
	if err != nil {
		var ge gofakes3.Error
		if errors.As(err, &ge) {
			return err
		}
		return fmt.Errorf("claiming bucket %s for host %s: %w", name, b.owners.node, err)
	}
	if owner != b.owners.node {
		return gofakes3.ResourceError(gofakes3.ErrBucketAlreadyExists, name)
	}
	if err := b.Store.CreateBucket(name); err != nil {
		if made {
			_ = b.owners.release(ctx, name)
		}
		return err
	}
	return nil
}

// DeleteBucket removes the bucket and then its record.
func (b *bucketBackend) DeleteBucket(name string) error {
	return b.forget(name, b.Store.DeleteBucket(name))
}

// ForceDeleteBucket removes the bucket with its objects, then its record.
func (b *bucketBackend) ForceDeleteBucket(name string) error {
	return b.forget(name, b.Store.ForceDeleteBucket(name))
}

func (b *bucketBackend) forget(name string, err error) error {
	if err != nil || b.owners == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendWait)
	defer cancel()
	if err := b.owners.release(ctx, name); err != nil {
		return fmt.Errorf("bucket %s is removed, but forgetting it in the cluster failed: %w", name, err)
	}
	return nil
}

// ListBuckets is this host's buckets and, in a cluster, those of every
// live host (a down host's are back when it is), by name.
func (b *bucketBackend) ListBuckets() ([]gofakes3.BucketInfo, error) {
	local, err := b.Store.ListBuckets()
	if err != nil || b.owners == nil {
		return local, err
	}
	seen := map[string]bool{}
	for _, i := range local {
		seen[i.Name] = true
	}
	for name, e := range b.owners.others() {
		if seen[name] || !b.up(e.Node) {
			continue
		}
		local = append(local, gofakes3.BucketInfo{Name: name, CreationDate: gofakes3.NewContentTime(e.Created)})
	}
	slices.SortFunc(local, func(x, y gofakes3.BucketInfo) int { return strings.Compare(x.Name, y.Name) })
	return local, nil
}

// bucketRouter sends a request for a bucket another host owns to that
// host; the rest to next (this host's endpoint).
type bucketRouter struct {
	node   string
	domain string // the endpoint's virtual-host domain
	owners interface {
		Owner(ctx context.Context, bucket string) (string, bool, error)
		Addr(node string) string
	}
	hosts func(node string) (cluster.HostStatus, bool)
	proxy *hostProxy
	next  http.Handler
}

// requestBucket is the bucket r is for, as the endpoint reads it:
// <bucket>.s3.<domain> virtual-host style, else the path's first segment;
// "" for ListBuckets.
func requestBucket(r *http.Request, domain string) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if b, ok := strings.CutSuffix(strings.ToLower(host), ".s3."+domain); ok && b != "" && !strings.Contains(b, ".") {
		return b
	}
	b, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return b
}

func (br *bucketRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(HeaderForwarded) != "" {
		// Served here, whatever this host's record says: never a second
		// hop. The header grants nothing: the endpoint checks the
		// signature as for any request.
		r.Header.Del(HeaderForwarded)
		br.next.ServeHTTP(w, r)
		return
	}
	bucket := requestBucket(r, br.domain)
	if bucket == "" {
		br.next.ServeHTTP(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
	node, ok, err := br.owners.Owner(ctx, bucket)
	cancel()
	if err != nil {
		s3Unavailable(w, r, fmt.Sprintf("Looking up the host that owns bucket %s: %v", bucket, err))
		return
	}
	if !ok || node == br.node {
		br.next.ServeHTTP(w, r)
		return
	}
	h, ok := br.hosts(node)
	switch {
	case !ok:
		s3Unavailable(w, r, fmt.Sprintf("Bucket %s is on host %s, which is not in the cluster.", bucket, node))
		return
	case h.State != cluster.StateUp:
		s3Unavailable(w, r, fmt.Sprintf("Bucket %s is on host %s, which is %s: the bucket is back when that host is.", bucket, node, h.State))
		return
	}
	addr := br.owners.Addr(node)
	if addr == "" {
		s3Unavailable(w, r, fmt.Sprintf("Bucket %s is on host %s, which serves no S3 listener (--s3-listen).", bucket, node))
		return
	}
	br.proxy.forward(w, r, hop{node: node, addr: addr, answerHeader: HeaderBucketNode, unreachable: func(w http.ResponseWriter, err error) {
		s3Unavailable(w, r, fmt.Sprintf("Bucket %s is on host %s, which did not answer at %s: %v", bucket, node, addr, err))
	}})
}

// s3Unavailable answers S3's 503 ServiceUnavailable, in its XML shape.
func s3Unavailable(w http.ResponseWriter, r *http.Request, msg string) {
	s3api.WriteError(w, r, &s3api.Error{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Message: msg})
}

// openBucketRoutes makes the buckets the cluster's: the function keys'
// master, this host's buckets recorded as its own, its S3 address told
// once it listens, and the router; standalone it does nothing.
func (s *Server) openBucketRoutes(ctx context.Context) error {
	if s.member == nil {
		return nil
	}
	if err := s.syncFunctionKeys(ctx, s.buckets.fnKeys); err != nil {
		return err
	}
	owners, err := openBucketOwners(ctx, s.broker.JetStream(), s.broker.Replicas(), s.cfg.Cluster.Node, s.log)
	if err != nil {
		return err
	}
	have, err := s.buckets.objs.ListBuckets()
	if err != nil {
		owners.stop()
		return err
	}
	for _, i := range have {
		var owner string
		err := broker.Retry(ctx, func(ctx context.Context) (err error) {
			owner, _, _, err = owners.claim(ctx, i.Name, i.CreationDate.Time)
			return err
		})
		if err != nil {
			owners.stop()
			return fmt.Errorf("recording bucket %s: %w", i.Name, err)
		}
		if owner != s.cfg.Cluster.Node {
			// Two hosts made one name before they joined: the first
			// recorded keeps it; this one's copy is reached only by a
			// request forwarded here (none are).
			s.log.Warn("bucket is recorded as another host's: this host's copy is not served to the cluster", "bucket", i.Name, "owner", owner)
		}
	}
	s.buckets.joinCluster(owners, s.cfg.Cluster.Node, s.hostStatus)
	return nil
}
