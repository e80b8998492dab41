package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/broker/brokertest"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/objects"
	"github.com/hearthdev/hearth/internal/s3api"
)

func TestRequestBucket(t *testing.T) {
	for _, tc := range []struct{ host, path, want string }{
		{"127.0.0.1:9001", "/photos/a/b.jpg", "photos"},
		{"127.0.0.1:9001", "/photos", "photos"},
		{"127.0.0.1:9001", "/", ""},
		{"photos.s3.localhost:9001", "/a/b.jpg", "photos"},
		{"Photos.S3.localhost", "/", "photos"},
		{"a.b.s3.localhost", "/x/y", "x"}, // not a virtual host: path-style
		{"s3.localhost", "/x/y", "x"},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+tc.path, nil)
		if got := requestBucket(r, "localhost"); got != tc.want {
			t.Errorf("%s%s: %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

type s3Keys map[string]string

func (k s3Keys) Secret(id string) (string, bool) { s, ok := k[id]; return s, ok }

type adminScopes struct{}

func (adminScopes) Scope(context.Context, string, string) (s3api.Scope, error) {
	return s3api.Scope{Admin: true}, nil
}

// fakeBucketOwners is a fixed record.
type fakeBucketOwners struct {
	owners map[string]string
	addrs  map[string]string
}

func (f fakeBucketOwners) Owner(_ context.Context, b string) (string, bool, error) {
	n, ok := f.owners[b]
	return n, ok, nil
}
func (f fakeBucketOwners) Addr(node string) string { return f.addrs[node] }

// s3Host is one host's endpoint: its objects, the endpoint, and its
// router in front.
type s3Host struct {
	objs *objects.Store
	srv  *httptest.Server
}

func newS3Host(t *testing.T, node string, owners fakeBucketOwners, hosts map[string]cluster.HostStatus) *s3Host {
	t.Helper()
	objs, err := objects.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := s3api.New(s3api.Config{Backend: objs, Verifier: api.NewS3Verifier(s3Keys{"ADMIN": "adminsecret"}, "local"),
		Scopes: adminScopes{}, Log: slog.New(slog.DiscardHandler)})
	r := &bucketRouter{node: node, domain: "localhost", owners: owners, proxy: newHostProxy(node), next: h,
		hosts: func(n string) (cluster.HostStatus, bool) { s, ok := hosts[n]; return s, ok }}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &s3Host{objs: objs, srv: srv}
}

// twoS3Hosts are a, up, which owns bucket on-a, and b.
func twoS3Hosts(t *testing.T) (a, b *s3Host) {
	t.Helper()
	owners := fakeBucketOwners{owners: map[string]string{"on-a": "a"}, addrs: map[string]string{}}
	hosts := map[string]cluster.HostStatus{}
	a = newS3Host(t, "a", owners, hosts)
	b = newS3Host(t, "b", owners, hosts)
	owners.addrs["a"] = strings.TrimPrefix(a.srv.URL, "http://")
	hosts["a"] = cluster.HostStatus{Host: cluster.Host{Node: "a"}, State: cluster.StateUp}
	if err := a.objs.CreateBucket("on-a"); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func s3ClientAt(url, secret string) *s3.Client {
	return s3.New(s3.Options{BaseEndpoint: aws.String(url), Region: "local", UsePathStyle: true,
		Credentials: awscreds.NewStaticCredentialsProvider("ADMIN", secret, ""), RetryMaxAttempts: 1})
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// A request for a bucket another host owns goes there as it came: the
// signature made for b's address verifies on a (Host kept), bodies pass
// whole (an 8 MiB object, and a multipart upload), and the answer says
// which host served it; a wrong secret is refused by a, not let through
// by b.
func TestBucketForwarding(t *testing.T) {
	ctx := context.Background()
	a, b := twoS3Hosts(t)
	cb := s3ClientAt(b.srv.URL, "adminsecret")
	big := make([]byte, 8<<20)
	_, _ = rand.Read(big)
	// A body the SDK cannot seek goes unhashed, as it is read.
	var mode string
	if _, err := cb.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("on-a"), Key: aws.String("big"),
		Body: struct{ io.Reader }{bytes.NewReader(big)}, ContentLength: aws.Int64(int64(len(big)))},
		s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware),
		func(o *s3.Options) { o.HTTPClient = modeClient{&mode} }); err != nil {
		t.Fatalf("put through b: %v", err)
	}
	if mode != "UNSIGNED-PAYLOAD" {
		t.Fatalf("the put's payload mode: %q", mode)
	}
	// aws-chunked frames with a trailing checksum, from a pipe (no
	// length: chunked on the wire too), pass the hop and are checked on a.
	putChunked(t, b.srv.URL+"/on-a/chunked", big, true)
	putChunked(t, b.srv.URL+"/on-a/chunked-bad", big, false)
	if _, err := a.objs.HeadObject("on-a", "chunked-bad"); err == nil {
		t.Fatal("a body whose trailing checksum failed was stored")
	}
	if obj, err := a.objs.GetObject("on-a", "chunked", nil); err != nil {
		t.Fatalf("the chunked object is not on a: %v", err)
	} else {
		got, _ := io.ReadAll(obj.Contents)
		obj.Contents.Close()
		if !bytes.Equal(got, big) {
			t.Fatalf("a holds %d bytes, not the 8 MiB sent in aws-chunked frames", len(got))
		}
	}
	// The object is on a's disk, not b's.
	obj, err := a.objs.GetObject("on-a", "big", nil)
	if err != nil {
		t.Fatalf("the object is not on a: %v", err)
	}
	got, _ := io.ReadAll(obj.Contents)
	obj.Contents.Close()
	if !bytes.Equal(got, big) {
		t.Fatalf("a holds %d bytes, not the 8 MiB put through b", len(got))
	}
	if ok, _ := b.objs.BucketExists("on-a"); ok {
		t.Fatal("b made the bucket")
	}
	// Read back through b, and see the hop.
	out, err := cb.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("on-a"), Key: aws.String("big")})
	if err != nil {
		t.Fatalf("get through b: %v", err)
	}
	got, _ = io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, big) {
		t.Fatalf("got %d bytes through b, not the object", len(got))
	}
	node := headerOf(t, b.srv.URL+"/on-a/big")
	if node != "a" {
		t.Fatalf("%s = %q, want a", HeaderBucketNode, node)
	}
	// Multipart through b.
	mp, err := cb.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("on-a"), Key: aws.String("mp")})
	if err != nil {
		t.Fatalf("multipart through b: %v", err)
	}
	part, err := cb.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("on-a"), Key: aws.String("mp"), UploadId: mp.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(big[:5<<20])})
	if err != nil {
		t.Fatalf("part through b: %v", err)
	}
	if _, err := cb.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("on-a"), Key: aws.String("mp"), UploadId: mp.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: []s3types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag}}}}); err != nil {
		t.Fatalf("complete through b: %v", err)
	}
	if _, err := a.objs.HeadObject("on-a", "mp"); err != nil {
		t.Fatalf("the multipart object is not on a: %v", err)
	}
	// A wrong secret is a's to refuse.
	if _, err := s3ClientAt(b.srv.URL, "wrong").GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("on-a"), Key: aws.String("big")}); apiCode(err) != "SignatureDoesNotMatch" {
		t.Fatalf("a wrong secret through b: %v, want SignatureDoesNotMatch", err)
	}
}

// headerOf is HeaderBucketNode on an (unsigned, so refused) GET of url.
func headerOf(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.Header.Get(HeaderBucketNode)
}

// The hop's header grants nothing: a request that carries it is served
// by the host it reached, which checks its signature as any other's, and
// does not have the other host's bucket.
func TestBucketForgedForwardHeader(t *testing.T) {
	a, b := twoS3Hosts(t)
	forged := func(o *s3.Options) {
		o.HTTPClient = headerClient{HeaderForwarded, "a"}
	}
	ctx := context.Background()
	cb := s3ClientAt(b.srv.URL, "adminsecret")
	_, err := cb.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("on-a"), Key: aws.String("k"), Body: strings.NewReader("x")}, forged)
	if apiCode(err) != "NoSuchBucket" {
		t.Fatalf("a signed put with a forged hop header: %v, want NoSuchBucket (served by b)", err)
	}
	_, err = s3ClientAt(b.srv.URL, "wrong").GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("on-a"), Key: aws.String("k")}, forged)
	if apiCode(err) != "SignatureDoesNotMatch" {
		t.Fatalf("a forged hop header with a wrong secret: %v, want SignatureDoesNotMatch", err)
	}
	if _, err := a.objs.HeadObject("on-a", "k"); err == nil {
		t.Fatal("an object reached a")
	}
}

// putChunked puts data at url as STREAMING-UNSIGNED-PAYLOAD-TRAILER
// frames of 64 KiB with a CRC32 trailer (a wrong one unless good), written
// into a pipe as the request is sent; it checks the answer (200, or 400
// for a wrong checksum).
func putChunked(t *testing.T, url string, data []byte, good bool) {
	t.Helper()
	sum := crc32.ChecksumIEEE(data)
	if !good {
		sum++
	}
	pr, pw := io.Pipe()
	go func() {
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 64<<10)
			fmt.Fprintf(pw, "%x\r\n", n)
			_, _ = pw.Write(rest[:n])
			_, _ = io.WriteString(pw, "\r\n")
			rest = rest[n:]
		}
		fmt.Fprintf(pw, "0\r\nx-amz-checksum-crc32:%s\r\n\r\n", base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, sum)))
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPut, url, pr)
	req.Header.Set("X-Amz-Content-Sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
	req.Header.Set("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
	req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "ADMIN", SecretAccessKey: "adminsecret"}, req,
		"STREAMING-UNSIGNED-PAYLOAD-TRAILER", "s3", "local", time.Now(), func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	want := http.StatusOK
	if !good {
		want = http.StatusBadRequest
	}
	if res.StatusCode != want || res.Header.Get(HeaderBucketNode) != "a" {
		t.Fatalf("aws-chunked put (good checksum %v) through b: %d from %q, want %d from a: %s", good, res.StatusCode, res.Header.Get(HeaderBucketNode), want, body)
	}
}

// modeClient notes a request's X-Amz-Content-Sha256.
type modeClient struct{ mode *string }

func (m modeClient) Do(r *http.Request) (*http.Response, error) {
	*m.mode = r.Header.Get("X-Amz-Content-Sha256")
	return http.DefaultClient.Do(r)
}

// headerClient adds a header to each request.
type headerClient struct{ name, value string }

func (h headerClient) Do(r *http.Request) (*http.Response, error) {
	r.Header.Set(h.name, h.value)
	return http.DefaultClient.Do(r)
}

// An owner down, gone or not answering: S3's 503 ServiceUnavailable in
// XML, naming the host.
func TestBucketOwnerDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	owners := fakeBucketOwners{owners: map[string]string{"on-down": "d", "on-gone": "g", "on-mute": "m"},
		addrs: map[string]string{"d": deadAddr, "m": deadAddr}}
	hosts := map[string]cluster.HostStatus{
		"d": {Host: cluster.Host{Node: "d"}, State: cluster.StateDown},
		"m": {Host: cluster.Host{Node: "m"}, State: cluster.StateUp},
	}
	b := newS3Host(t, "b", owners, hosts)
	for _, tc := range []struct{ bucket, host, says string }{
		{"on-down", "d", "which is down"},
		{"on-gone", "g", "not in the cluster"},
		{"on-mute", "m", "did not answer"},
	} {
		t.Run(tc.bucket, func(t *testing.T) {
			res, err := http.Get(b.srv.URL + "/" + tc.bucket + "/k")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			var e struct {
				Code, Message string
			}
			if err := xml.Unmarshal(body, &e); err != nil {
				t.Fatalf("not XML: %q", body)
			}
			if res.StatusCode != http.StatusServiceUnavailable || e.Code != "ServiceUnavailable" ||
				!strings.Contains(e.Message, "host "+tc.host) || !strings.Contains(e.Message, tc.says) ||
				res.Header.Get("Content-Type") != "application/xml" {
				t.Fatalf("%d %s %q", res.StatusCode, res.Header.Get("Content-Type"), body)
			}
		})
	}
	// The SDK reads it as S3's error.
	_, err := s3ClientAt(b.srv.URL, "adminsecret").GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("on-down"), Key: aws.String("k")})
	if apiCode(err) != "ServiceUnavailable" {
		t.Fatalf("the SDK reads %v", err)
	}
}

// The owners' record on a replicated bucket: a name goes to the first
// host that claims it (racing claims: one winner), the others see it,
// a host's release forgets only its own, and ListBuckets through any host
// lists every live host's buckets.
func TestBucketOwners(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	log := slog.New(slog.DiscardHandler)
	nodes := []string{"a", "b", "c"}
	var owners []*bucketOwners
	var backends []*bucketBackend
	up := map[string]bool{"a": true, "b": true, "c": true}
	for i, br := range bs {
		o, err := openBucketOwners(ctx, br.JetStream(), br.Replicas(), nodes[i], log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(o.stop)
		objs, err := objects.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		owners = append(owners, o)
		backends = append(backends, &bucketBackend{Store: objs, owners: o, up: func(n string) bool { return up[n] }})
	}
	// Racing creates of one name: exactly one host makes it.
	for round := range 5 {
		name := "race-" + string(rune('0'+round))
		errs := make(chan error, 3)
		for _, b := range backends {
			go func() { errs <- b.CreateBucket(name) }()
		}
		won := 0
		for range backends {
			err := <-errs
			switch {
			case err == nil:
				won++
			case !strings.Contains(err.Error(), "BucketAlreadyExists"):
				t.Fatalf("a lost race answers %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d hosts made %s", round, won, name)
		}
		owner, ok, err := owners[2].Owner(ctx, name)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		made := 0
		for i, b := range backends {
			if ok, _ := b.Store.BucketExists(name); ok {
				made++
				if nodes[i] != owner {
					t.Fatalf("%s is on %s, recorded on %s", name, nodes[i], owner)
				}
			}
		}
		if made != 1 {
			t.Fatalf("%s is on %d hosts' disks", name, made)
		}
	}
	if err := backends[0].CreateBucket("on-a"); err != nil {
		t.Fatal(err)
	}
	if err := backends[1].CreateBucket("on-b"); err != nil {
		t.Fatal(err)
	}
	if err := backends[2].CreateBucket("on-a"); err == nil || !strings.Contains(err.Error(), "BucketAlreadyExists") {
		t.Fatalf("creating a's bucket on c: %v", err)
	}
	names := func(b *bucketBackend) string {
		l, err := b.ListBuckets()
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, i := range l {
			if !strings.HasPrefix(i.Name, "race-") {
				n = append(n, i.Name)
			}
		}
		return strings.Join(n, " ")
	}
	eventually(t, "c lists a's and b's buckets", func() bool { return names(backends[2]) == "on-a on-b" })
	up["b"] = false
	if got := names(backends[2]); got != "on-a" {
		t.Fatalf("with b down c lists %q", got)
	}
	up["b"] = true
	// c's release of a's bucket forgets nothing; a's delete does.
	if err := owners[2].release(ctx, "on-a"); err != nil {
		t.Fatal(err)
	}
	if n, ok, _ := owners[0].Owner(ctx, "on-a"); !ok || n != "a" {
		t.Fatalf("c's release forgot a's bucket: %q %v", n, ok)
	}
	if err := backends[0].DeleteBucket("on-a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c forgets the deleted bucket", func() bool { return names(backends[2]) == "on-b" })
	if err := backends[2].CreateBucket("on-a"); err != nil {
		t.Fatalf("the name of a deleted bucket is not free: %v", err)
	}
}
