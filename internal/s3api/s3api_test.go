package s3api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
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

// seen records the X-Amz-Content-Sha256 and Content-Encoding each request
// came with, to tell which body kinds a test exercised.
type seen struct {
	mu    sync.Mutex
	kinds []string
}

func (s *seen) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.kinds = append(s.kinds, r.Method+" "+r.Header.Get("X-Amz-Content-Sha256")+" "+r.Header.Get("Content-Encoding"))
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func newEndpoint(t *testing.T) (string, *seen) {
	t.Helper()
	store, err := objects.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v := api.NewS3Verifier(keys{"ADMIN": "adminsecret", "FN": "fnsecret"}, "local")
	h := s3api.New(s3api.Config{Backend: store, Verifier: v, Scopes: scopes{}, Log: slog.New(slog.DiscardHandler)})
	sn := &seen{}
	srv := httptest.NewServer(sn.wrap(h))
	t.Cleanup(srv.Close)
	return srv.URL, sn
}

func client(url, id, secret, token string) *s3.Client {
	return s3.New(s3.Options{BaseEndpoint: aws.String(url), Region: "local", UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, token), RetryMaxAttempts: 1})
}

func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return fmt.Sprint(err)
}

func TestProbe(t *testing.T) {
	url, sn := newEndpoint(t)
	ctx := context.Background()
	c := client(url, "ADMIN", "adminsecret", "")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bucket1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bucket1"), Key: aws.String("a/b.txt"), Body: strings.NewReader("hello world")}); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bucket1"), Key: aws.String("a/b.txt"), Range: aws.String("bytes=6-")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	t.Logf("%q", b)
	_ = bytes.NewReader
	_ = types.ObjectCannedACLPrivate
	t.Log(strings.Join(sn.kinds, "\n"))
}
