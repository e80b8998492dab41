package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/hearthdev/hearth/internal/server"
)

func startS3(t *testing.T, data string) (*daemon, *s3.Client) {
	t.Helper()
	d := startWith(t, server.Config{DataDir: data, KeepWarm: time.Minute, S3Listen: "127.0.0.1:0"})
	return d, s3Client(d, "http://"+d.srv.S3Addr(), true)
}

func s3Client(d *daemon, endpoint string, pathStyle bool) *s3.Client {
	return s3.New(s3.Options{BaseEndpoint: aws.String(endpoint), Region: "local", UsePathStyle: pathStyle,
		Credentials:      credentials.NewStaticCredentialsProvider(d.creds.AccessKeyID, d.creds.SecretAccessKey, ""),
		RetryMaxAttempts: 1})
}

func s3Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

func getString(t *testing.T, c *s3.Client, bucket, key, rng string) string {
	t.Helper()
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if rng != "" {
		in.Range = aws.String(rng)
	}
	out, err := c.GetObject(context.Background(), in)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The S3 endpoint with aws-sdk-go-v2's client, against a real daemon:
// buckets, objects, ranges, listings, copies, multipart, errors, and a
// restart that keeps it all.
func TestBucketsWithTheSDK(t *testing.T) {
	data := t.TempDir()
	d, c := startS3(t, data)
	ctx := context.Background()
	b := aws.String("photos")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: b}); s3Code(err) != "BucketAlreadyExists" {
		t.Errorf("second create: %v", err)
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: b}); err != nil {
		t.Errorf("head: %v", err)
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("nope")}); err == nil {
		t.Error("head of a missing bucket succeeded")
	}
	for _, k := range []string{"in/a.jpg", "in/b.jpg", "in/deep/c.jpg", "out/x.png", "top.txt", "odd key+with %chars"} {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String(k), Body: strings.NewReader("data of " + k),
			ContentType: aws.String("image/jpeg"), Metadata: map[string]string{"origin": "test"}}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	if got := getString(t, c, "photos", "in/a.jpg", ""); got != "data of in/a.jpg" {
		t.Errorf("get: %q", got)
	}
	if got := getString(t, c, "photos", "odd key+with %chars", ""); got != "data of odd key+with %chars" {
		t.Errorf("get odd key: %q", got)
	}
	if got := getString(t, c, "photos", "in/a.jpg", "bytes=3-6"); got != "a of" {
		t.Errorf("range: %q", got)
	}
	if got := getString(t, c, "photos", "in/a.jpg", "bytes=-3"); got != "jpg" {
		t.Errorf("suffix range: %q", got)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: aws.String("in/a.jpg")})
	if err != nil || aws.ToString(head.ContentType) != "image/jpeg" || head.Metadata["origin"] != "test" || aws.ToInt64(head.ContentLength) != 16 {
		t.Errorf("head object: %+v %v", head, err)
	}
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: aws.String("missing")}); s3Code(err) != "NoSuchKey" {
		t.Errorf("missing key: %v", err)
	}

	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: b, Prefix: aws.String("in/"), Delimiter: aws.String("/")})
	if err != nil {
		t.Fatal(err)
	}
	var keys, prefixes []string
	for _, o := range list.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	for _, p := range list.CommonPrefixes {
		prefixes = append(prefixes, aws.ToString(p.Prefix))
	}
	if strings.Join(keys, ",") != "in/a.jpg,in/b.jpg" || strings.Join(prefixes, ",") != "in/deep/" {
		t.Errorf("list in/ by /: keys %v prefixes %v", keys, prefixes)
	}
	// Pages of 2 cover every key once.
	var all []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: b, MaxKeys: aws.Int32(2)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			all = append(all, aws.ToString(o.Key))
		}
	}
	if len(all) != 6 {
		t.Errorf("paged list: %v", all)
	}

	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: b, Key: aws.String("out/copy.jpg"), CopySource: aws.String("photos/in/b.jpg")}); err != nil {
		t.Fatal(err)
	}
	if got := getString(t, c, "photos", "out/copy.jpg", ""); got != "data of in/b.jpg" {
		t.Errorf("copy: %q", got)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: aws.String("top.txt")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: aws.String("top.txt")}); s3Code(err) != "NoSuchKey" {
		t.Errorf("deleted key: %v", err)
	}

	// Multipart: two parts of 5 MiB and a last one.
	part := make([]byte, 5<<20)
	_, _ = rand.Read(part)
	whole := append(append(append([]byte{}, part...), part...), []byte("tail")...)
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: aws.String("big.bin")})
	if err != nil {
		t.Fatal(err)
	}
	var done []types.CompletedPart
	for i, body := range [][]byte{part, part, []byte("tail")} {
		n := int32(i + 1)
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: aws.String("big.bin"), UploadId: up.UploadId, PartNumber: aws.Int32(n), Body: bytes.NewReader(body)})
		if err != nil {
			t.Fatalf("part %d: %v", n, err)
		}
		done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	}
	parts, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: b, Key: aws.String("big.bin"), UploadId: up.UploadId})
	if err != nil || len(parts.Parts) != 3 {
		t.Errorf("list parts: %v %v", parts, err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: b, Key: aws.String("big.bin"), UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatal(err)
	}
	if got := getString(t, c, "photos", "big.bin", ""); got != string(whole) {
		t.Errorf("multipart object: %d bytes, want %d", len(got), len(whole))
	}

	// Virtual-host style: <bucket>.s3.localhost, dialed to the endpoint.
	_, port, _ := net.SplitHostPort(d.srv.S3Addr())
	vh := s3.New(s3.Options{BaseEndpoint: aws.String("http://s3.localhost:" + port), Region: "local",
		Credentials:      credentials.NewStaticCredentialsProvider(d.creds.AccessKeyID, d.creds.SecretAccessKey, ""),
		RetryMaxAttempts: 1, HTTPClient: &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, d.srv.S3Addr())
		}}}})
	if got := getString(t, vh, "photos", "in/b.jpg", ""); got != "data of in/b.jpg" {
		t.Errorf("virtual host get: %q", got)
	}

	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: b}); s3Code(err) != "BucketNotEmpty" {
		t.Errorf("delete of a full bucket: %v", err)
	}

	// A wrong secret: 403, in S3's XML.
	bad := s3.New(s3.Options{BaseEndpoint: aws.String("http://" + d.srv.S3Addr()), Region: "local", UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(d.creds.AccessKeyID, "wrong", ""), RetryMaxAttempts: 1})
	if _, err := bad.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: aws.String("in/a.jpg")}); s3Code(err) != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: %v", err)
	}
	resp, err := http.Get("http://" + d.srv.S3Addr() + "/photos/in/a.jpg")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), "<Error><Code>AccessDenied</Code>") {
		t.Errorf("unsigned: %d %s", resp.StatusCode, body)
	}
	// The Lambda API does not serve S3, nor S3 the Lambda API.
	if _, err := s3Client(d, d.url, true).ListBuckets(ctx, &s3.ListBucketsInput{}); err == nil {
		t.Error("the API listener answered ListBuckets")
	}

	// A restart keeps every object.
	if err := d.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_, c2 := startS3(t, data)
	if got := getString(t, c2, "photos", "in/deep/c.jpg", ""); got != "data of in/deep/c.jpg" {
		t.Errorf("after restart: %q", got)
	}
	if got := getString(t, c2, "photos", "big.bin", ""); got != string(whole) {
		t.Errorf("multipart object after restart: %d bytes", len(got))
	}
	lb, err := c2.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil || len(lb.Buckets) != 1 || aws.ToString(lb.Buckets[0].Name) != "photos" {
		t.Errorf("buckets after restart: %+v %v", lb, err)
	}
}

// The aws CLI's s3 and s3api commands against a real daemon.
func TestBucketsWithTheAWSCLI(t *testing.T) {
	awsBin := "/usr/bin/aws"
	if _, err := os.Stat(awsBin); err != nil {
		t.Fatalf("the aws CLI is not installed: %v", err)
	}
	data := t.TempDir()
	d, c := startS3(t, data)
	home := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(awsBin, append(args, "--endpoint-url", "http://"+d.srv.S3Addr(), "--region", "local", "--output", "json")...)
		cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "AWS_SHARED_CREDENTIALS_FILE=" + server.CredentialsFile(data),
			"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_PAGER="}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("s3", "mb", "s3://cli-bucket")
	// 20 MiB: the CLI sends it in multipart chunks of 8 MiB.
	big := make([]byte, 20<<20)
	_, _ = rand.Read(big)
	src := filepath.Join(home, "big.bin")
	if err := os.WriteFile(src, big, 0o600); err != nil {
		t.Fatal(err)
	}
	run("s3", "cp", src, "s3://cli-bucket/dir/big.bin")
	small := filepath.Join(home, "small.txt")
	if err := os.WriteFile(small, []byte("small file"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("s3", "cp", small, "s3://cli-bucket/dir/sub/small.txt")
	if out := run("s3", "ls", "s3://cli-bucket/dir/"); !strings.Contains(out, "big.bin") || !strings.Contains(out, "PRE sub/") {
		t.Errorf("s3 ls: %s", out)
	}
	back := filepath.Join(home, "back.bin")
	run("s3", "cp", "s3://cli-bucket/dir/big.bin", back)
	if got, _ := os.ReadFile(back); !bytes.Equal(got, big) {
		t.Errorf("downloaded %d bytes, not what was uploaded", len(got))
	}
	if got := getString(t, c, "cli-bucket", "dir/big.bin", ""); got != string(big) {
		t.Error("the SDK reads another object than the CLI wrote")
	}

	run("s3api", "put-object", "--bucket", "cli-bucket", "--key", "api/one.txt", "--body", small, "--content-type", "text/plain")
	part := filepath.Join(home, "part.txt")
	run("s3api", "get-object", "--bucket", "cli-bucket", "--key", "api/one.txt", "--range", "bytes=0-4", part)
	if got, _ := os.ReadFile(part); string(got) != "small" {
		t.Errorf("get-object --range: %q", got)
	}
	var listed struct {
		Contents       []struct{ Key string }
		CommonPrefixes []struct{ Prefix string }
	}
	if err := json.Unmarshal([]byte(run("s3api", "list-objects-v2", "--bucket", "cli-bucket", "--prefix", "dir/", "--delimiter", "/")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Contents) != 1 || listed.Contents[0].Key != "dir/big.bin" || len(listed.CommonPrefixes) != 1 || listed.CommonPrefixes[0].Prefix != "dir/sub/" {
		t.Errorf("list-objects-v2: %+v", listed)
	}
	var mpu struct{ UploadId string }
	if err := json.Unmarshal([]byte(run("s3api", "create-multipart-upload", "--bucket", "cli-bucket", "--key", "api/mp.bin")), &mpu); err != nil {
		t.Fatal(err)
	}
	var partOut struct{ ETag string }
	if err := json.Unmarshal([]byte(run("s3api", "upload-part", "--bucket", "cli-bucket", "--key", "api/mp.bin", "--upload-id", mpu.UploadId,
		"--part-number", "1", "--body", small)), &partOut); err != nil {
		t.Fatal(err)
	}
	parts := filepath.Join(home, "parts.json")
	if err := os.WriteFile(parts, []byte(`{"Parts":[{"ETag":`+strings.ReplaceAll(strconvQuote(partOut.ETag), `\\`, `\`)+`,"PartNumber":1}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run("s3api", "complete-multipart-upload", "--bucket", "cli-bucket", "--key", "api/mp.bin", "--upload-id", mpu.UploadId,
		"--multipart-upload", "file://"+parts)
	if got := getString(t, c, "cli-bucket", "api/mp.bin", ""); got != "small file" {
		t.Errorf("multipart by s3api: %q", got)
	}
	run("s3api", "copy-object", "--bucket", "cli-bucket", "--key", "api/copy.txt", "--copy-source", "cli-bucket/api/one.txt")
	run("s3", "rm", "s3://cli-bucket/api/one.txt")
	if out := run("s3", "ls", "s3://cli-bucket/api/"); strings.Contains(out, "one.txt") || !strings.Contains(out, "copy.txt") {
		t.Errorf("after rm: %s", out)
	}
	run("s3", "rb", "s3://cli-bucket", "--force")
	if out := run("s3api", "list-buckets"); strings.Contains(out, "cli-bucket") {
		t.Errorf("after rb: %s", out)
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
