package s3api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
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
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/objects"
	"github.com/hearthdev/hearth/internal/s3api"
)

type keys map[string]string

func (k keys) Secret(id string) (string, bool) { s, ok := k[id]; return s, ok }

// scopes: "ADMIN" is the daemon's key, "FN" a function's limited to
// bucket "allowed".
type scopes struct{}

func (scopes) Scope(_ context.Context, id, token string) (s3api.Scope, error) {
	switch id {
	case "ADMIN":
		return s3api.Scope{Admin: true}, nil
	case "FN":
		if token != "tok" {
			return s3api.Scope{}, errors.New("bad token")
		}
		return s3api.Scope{Function: "f", Buckets: []string{"allowed"}}, nil
	}
	return s3api.Scope{}, errors.New("no one")
}

func newEndpoint(t *testing.T) string {
	t.Helper()
	store, err := objects.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v := api.NewS3Verifier(keys{"ADMIN": "adminsecret", "FN": "fnsecret"}, "local")
	h := s3api.New(s3api.Config{Backend: store, Verifier: v, Scopes: scopes{}, Log: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// client is the SDK's s3 client at url without UsePathStyle: an endpoint
// that is an IP address makes it use path-style addresses, as a function's
// (http://127.0.0.1:9002) does.
func client(url, id, secret, token string) *s3.Client {
	return s3.New(s3.Options{BaseEndpoint: aws.String(url), Region: "local",
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, token), RetryMaxAttempts: 1})
}

func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return fmt.Sprint(err)
}

// signedChunks builds a STREAMING-AWS4-HMAC-SHA256-PAYLOAD request putting
// chunks, signed with aws-sdk-go-v2's own signers: the seed with v4.Signer,
// each chunk with v4.StreamSigner (S3's chunk string-to-sign is the event
// stream's with no headers). tamper, when set, changes a byte of chunk 1
// after signing.
func signedChunks(t *testing.T, url, key string, chunks []string, tamper bool) *http.Request {
	t.Helper()
	total := 0
	for _, c := range chunks {
		total += len(c)
	}
	req, err := http.NewRequest(http.MethodPut, url+"/bucket1/"+key, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	req.Header.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
	req.Header.Set("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(total))
	creds := aws.Credentials{AccessKeyID: "ADMIN", SecretAccessKey: "adminsecret"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "s3", "local", now,
		func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
		t.Fatal(err)
	}
	auth := req.Header.Get("Authorization")
	seed, _ := hex.DecodeString(auth[strings.LastIndex(auth, "=")+1:])
	ss := v4.NewStreamSigner(creds, "s3", "local", seed)
	var body bytes.Buffer
	for i, c := range append(chunks, "") {
		sig, err := ss.GetSignature(context.Background(), nil, []byte(c), now)
		if err != nil {
			t.Fatal(err)
		}
		if tamper && i == 1 {
			c = "X" + c[1:]
		}
		fmt.Fprintf(&body, "%x;chunk-signature=%x\r\n%s\r\n", len(c), sig, c)
	}
	req.Body = io.NopCloser(&body)
	req.ContentLength = int64(body.Len())
	return req
}

func TestChunkedSigned(t *testing.T) {
	url := newEndpoint(t)
	ctx := context.Background()
	c := client(url, "ADMIN", "adminsecret", "")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket1")}); err != nil {
		t.Fatal(err)
	}
	chunks := []string{strings.Repeat("a", 70000), strings.Repeat("b", 1000), "end"}
	for _, tc := range []struct {
		name   string
		tamper bool
		status int
	}{{"genuine", false, 200}, {"tampered", true, 400}} {
		resp, err := http.DefaultClient.Do(signedChunks(t, url, tc.name, chunks, tc.tamper))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: %d %s", tc.name, resp.StatusCode, b)
		}
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket1"), Key: aws.String(tc.name)})
		if tc.tamper {
			if errCode(err) != "NoSuchKey" {
				t.Errorf("a tampered body was stored: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(out.Body)
		if string(got) != strings.Join(chunks, "") || out.ContentEncoding != nil {
			t.Errorf("stored %d bytes, encoding %v", len(got), out.ContentEncoding)
		}
	}
}

// unsignedTrailer builds a STREAMING-UNSIGNED-PAYLOAD-TRAILER put with a
// CRC32 trailer, as recent SDKs send with flexible checksums.
func TestChunkedTrailerChecksum(t *testing.T) {
	url := newEndpoint(t)
	ctx := context.Background()
	c := client(url, "ADMIN", "adminsecret", "")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket1")}); err != nil {
		t.Fatal(err)
	}
	data := "checksummed body"
	sum := crc32.ChecksumIEEE([]byte(data))
	good := base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, sum))
	bad := base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, sum+1))
	for _, tc := range []struct {
		key, crc string
		status   int
	}{{"good", good, 200}, {"bad", bad, 400}} {
		body := fmt.Sprintf("%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n", len(data), data, tc.crc)
		req, _ := http.NewRequest(http.MethodPut, url+"/bucket1/"+tc.key, strings.NewReader(body))
		req.Header.Set("X-Amz-Content-Sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
		req.Header.Set("Content-Encoding", "aws-chunked")
		req.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
		req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
		if err := v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: "ADMIN", SecretAccessKey: "adminsecret"}, req,
			"STREAMING-UNSIGNED-PAYLOAD-TRAILER", "s3", "local", time.Now(), func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s", tc.key, resp.StatusCode, b)
		}
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket1"), Key: aws.String("good")})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(out.Body); string(got) != data {
		t.Errorf("stored %q", got)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bucket1"), Key: aws.String("bad")}); err == nil {
		t.Error("a body whose checksum failed was stored")
	}
}

// A body that is not the one signed is refused and not stored.
func TestSignedBodyMismatch(t *testing.T) {
	url := newEndpoint(t)
	ctx := context.Background()
	c := client(url, "ADMIN", "adminsecret", "")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket1")}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, url+"/bucket1/k", nil)
	sum := sha256.Sum256([]byte("signed body"))
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	if err := v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: "ADMIN", SecretAccessKey: "adminsecret"}, req,
		hex.EncodeToString(sum[:]), "s3", "local", time.Now(), func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }); err != nil {
		t.Fatal(err)
	}
	req.Body, req.ContentLength = io.NopCloser(strings.NewReader("other body!")), 11
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bucket1"), Key: aws.String("k")}); err == nil {
		t.Error("a body that is not the one signed was stored")
	}
}

// A function's key reaches the objects of its buckets and nothing else.
func TestFunctionScope(t *testing.T) {
	url := newEndpoint(t)
	ctx := context.Background()
	admin := client(url, "ADMIN", "adminsecret", "")
	for _, b := range []string{"allowed", "other"} {
		if _, err := admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("k"), Body: strings.NewReader(b)}); err != nil {
			t.Fatal(err)
		}
	}
	fn := client(url, "FN", "fnsecret", "tok")
	if _, err := fn.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("allowed"), Key: aws.String("k")}); err != nil {
		t.Errorf("get from its bucket: %v", err)
	}
	if _, err := fn.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("allowed"), Key: aws.String("new"), Body: strings.NewReader("x")}); err != nil {
		t.Errorf("put to its bucket: %v", err)
	}
	if _, err := fn.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("allowed")}); err != nil {
		t.Errorf("list its bucket: %v", err)
	}
	denied := map[string]error{}
	_, denied["get other"] = fn.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("other"), Key: aws.String("k")})
	_, denied["put other"] = fn.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("other"), Key: aws.String("k"), Body: strings.NewReader("x")})
	_, denied["copy from other"] = fn.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("allowed"), Key: aws.String("stolen"), CopySource: aws.String("other/k")})
	_, denied["create bucket"] = fn.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("mine")})
	_, denied["delete bucket"] = fn.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("allowed")})
	_, denied["list buckets"] = fn.ListBuckets(ctx, &s3.ListBucketsInput{})
	// A function's keys do not see nor change where a bucket's events go.
	_, denied["get notification"] = fn.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String("allowed")})
	_, denied["put notification"] = fn.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String("allowed"),
		NotificationConfiguration: &types.NotificationConfiguration{}})
	for what, err := range denied {
		if errCode(err) != "AccessDenied" {
			t.Errorf("%s: %v, want AccessDenied", what, err)
		}
	}
	if _, err := client(url, "FN", "fnsecret", "").GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("allowed"), Key: aws.String("k")}); errCode(err) != "InvalidToken" {
		t.Errorf("without its session token: %v", err)
	}
}
