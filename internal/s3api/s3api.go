// Package s3api is Hearth's S3-compatible endpoint: gofakes3 speaks the
// protocol over the buckets of package objects, and this package stands in
// front of it with what gofakes3 does not do: SigV4 (api.Verifier, service
// "s3"), the bodies S3 clients send (a signed hash checked as the body
// streams; aws-chunked, with chunk signatures or trailing checksums,
// decoded and checked), the scope of a function's keys, virtual-host
// style addresses (<bucket>.s3.<domain>), and bounds on what a request may
// send.
package s3api

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/johannesboyne/gofakes3"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// DefaultMaxObjectBytes bounds one request's body: S3's bound on a single
// PUT (and on a part), 5 GiB.
const DefaultMaxObjectBytes = 5 << 30

// Scope is what a verified key may touch.
type Scope struct {
	// Admin is the daemon's own keys: everything.
	Admin bool
	// Function is the function whose key it is; it may use objects in
	// Buckets (all buckets when All), and never make or remove a bucket.
	Function string
	All      bool
	Buckets  []string
}

func (s Scope) allows(bucket string) bool {
	return s.Admin || s.All || slices.Contains(s.Buckets, bucket)
}

// Scopes says who an access key is; a key that is no one's is an error.
type Scopes interface {
	Scope(ctx context.Context, accessKeyID, sessionToken string) (Scope, error)
}

// Config configures the endpoint.
type Config struct {
	Backend  gofakes3.Backend
	Verifier *api.Verifier // api.NewS3Verifier
	Scopes   Scopes
	// Domain makes <bucket>.s3.<Domain> virtual-host addresses; empty is
	// "localhost".
	Domain         string
	MaxObjectBytes int64
	// Notifications serves the ?notification sub-resource of buckets,
	// which gofakes3 does not; nil answers NotImplemented.
	Notifications Notifications
	Log           *slog.Logger
}

// Notifications keeps buckets' notification configurations
// (s3events.Notifier). Errors that are *Error are answered as they are.
type Notifications interface {
	// NotificationConfiguration is a bucket's configuration as S3's XML.
	NotificationConfiguration(ctx context.Context, bucket string) ([]byte, error)
	// PutNotificationConfiguration checks and keeps one; with
	// skipDestinationValidation its targets need not exist yet.
	PutNotificationConfiguration(ctx context.Context, bucket string, xml []byte, skipDestinationValidation bool) error
}

// Handler serves S3.
type Handler struct {
	cfg  Config
	fake http.Handler
}

// New returns the endpoint's handler.
func New(cfg Config) *Handler {
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	if cfg.MaxObjectBytes == 0 {
		cfg.MaxObjectBytes = DefaultMaxObjectBytes
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	// Clock skew is the Verifier's to check; versions are not kept.
	g := gofakes3.New(cfg.Backend, gofakes3.WithoutVersioning(), gofakes3.WithTimeSkewLimit(0),
		gofakes3.WithLogger(logger{cfg.Log}))
	return &Handler{cfg: cfg, fake: g.Server()}
}

// logger hands gofakes3's errors to slog; the rest is noise.
type logger struct{ l *slog.Logger }

func (l logger) Print(level gofakes3.LogLevel, v ...any) {
	if level == gofakes3.LogErr {
		l.l.Warn("s3", "err", fmt.Sprint(v...))
	}
}

// Error is an S3 error, in S3's XML shape.
type Error struct {
	Status  int
	Code    string
	Message string
	// ArgumentName and ArgumentValue say which argument an
	// InvalidArgument is about.
	ArgumentName, ArgumentValue string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, e *Error) { WriteError(w, r, e) }

// WriteError answers e in S3's XML shape (headers only to a HEAD).
func WriteError(w http.ResponseWriter, r *http.Request, e *Error) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.Status)
	if r.Method == http.MethodHead {
		return
	}
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName       xml.Name `xml:"Error"`
		Code          string
		Message       string
		ArgumentName  string `xml:",omitempty"`
		ArgumentValue string `xml:",omitempty"`
		Resource      string `xml:",omitempty"`
		RequestID     string `xml:"RequestId"`
	}{Code: e.Code, Message: e.Message, ArgumentName: e.ArgumentName, ArgumentValue: e.ArgumentValue, Resource: r.URL.Path, RequestID: "0"})
}

// authError turns the Verifier's error into S3's.
func authError(err error) *Error {
	le, ok := lambdaerr.As(err)
	if !ok {
		return &Error{Status: http.StatusBadRequest, Code: "IncompleteBody", Message: err.Error()}
	}
	switch {
	case strings.HasPrefix(le.Message, "Signature expired"):
		return &Error{Status: http.StatusForbidden, Code: "RequestTimeTooSkewed", Message: "The difference between the request time and the server's time is too large."}
	case le.Type == "UnrecognizedClientException" && strings.Contains(le.Message, "not signed"):
		return &Error{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Access Denied: " + le.Message}
	case le.Type == "UnrecognizedClientException":
		return &Error{Status: http.StatusForbidden, Code: "InvalidAccessKeyId", Message: "The AWS Access Key Id you provided does not exist in our records."}
	case le.Type == "RequestTooLargeException":
		return &Error{Status: http.StatusBadRequest, Code: "EntityTooLarge", Message: le.Message}
	default:
		return &Error{Status: http.StatusForbidden, Code: "SignatureDoesNotMatch", Message: le.Message}
	}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.serve(w, r); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()}
		}
		h.fail(w, r, e)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Query().Has("X-Amz-Signature") {
		return &Error{Status: http.StatusNotImplemented, Code: "NotImplemented", Message: "Presigned URLs are not supported; sign requests with an Authorization header."}
	}
	signed, err := h.cfg.Verifier.VerifyDeclaredPayload(r)
	if err != nil {
		return authError(err)
	}
	token := r.Header.Get("X-Amz-Security-Token")
	if token != "" && !slices.Contains(signed.SignedHeaders, "x-amz-security-token") {
		return &Error{Status: http.StatusForbidden, Code: "AccessDenied", Message: "X-Amz-Security-Token must be signed."}
	}
	scope, err := h.cfg.Scopes.Scope(r.Context(), signed.AccessKeyID, token)
	if err != nil {
		return &Error{Status: http.StatusForbidden, Code: "InvalidToken", Message: err.Error()}
	}
	h.virtualHost(r)
	if err := authorize(scope, r); err != nil {
		return err
	}
	if err := h.body(r, signed); err != nil {
		return err
	}
	if bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/"); bucket != "" && key == "" && r.URL.Query().Has("notification") {
		return h.notification(w, r, bucket)
	}
	h.fake.ServeHTTP(w, r)
	return nil
}

// maxNotificationBytes bounds a notification configuration as sent.
const maxNotificationBytes = 1 << 20

// notification serves GET and PUT of a bucket's ?notification.
func (h *Handler) notification(w http.ResponseWriter, r *http.Request, bucket string) error {
	n := h.cfg.Notifications
	if n == nil {
		return &Error{Status: http.StatusNotImplemented, Code: "NotImplemented", Message: "Bucket notifications are not served here."}
	}
	switch r.Method {
	case http.MethodGet:
		b, err := n.NotificationConfiguration(r.Context(), bucket)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/xml")
		_, _ = w.Write(b)
		return nil
	case http.MethodPut:
		b, err := io.ReadAll(io.LimitReader(r.Body, maxNotificationBytes+1))
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				return e
			}
			return &Error{Status: http.StatusBadRequest, Code: "IncompleteBody", Message: err.Error()}
		}
		if len(b) > maxNotificationBytes {
			return &Error{Status: http.StatusBadRequest, Code: "EntityTooLarge", Message: "The notification configuration is too large."}
		}
		skip := strings.EqualFold(r.Header.Get("X-Amz-Skip-Destination-Validation"), "true")
		if err := n.PutNotificationConfiguration(r.Context(), bucket, b, skip); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	return &Error{Status: http.StatusMethodNotAllowed, Code: "MethodNotAllowed", Message: "The specified method is not allowed against this resource."}
}

// virtualHost moves the bucket of <bucket>.s3.<domain>[:port] into the
// path, where gofakes3 looks for it. The signature was checked on the
// request as sent.
func (h *Handler) virtualHost(r *http.Request) {
	host := r.Host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	bucket, ok := strings.CutSuffix(strings.ToLower(host), ".s3."+h.cfg.Domain)
	if !ok || bucket == "" || strings.Contains(bucket, ".") {
		return
	}
	r.URL.Path = "/" + bucket + r.URL.Path
	if r.URL.RawPath != "" {
		r.URL.RawPath = "/" + bucket + r.URL.RawPath
	}
}

// authorize checks that scope may do r. A function may use the objects of
// its buckets (and list and head them); it may not list, make or remove
// buckets.
func authorize(scope Scope, r *http.Request) error {
	if scope.Admin {
		return nil
	}
	denied := &Error{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Access Denied"}
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if bucket == "" || !scope.allows(bucket) {
		return denied
	}
	if key == "" {
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodGet && !q.Has("versioning") && !q.Has("policy") && !q.Has("acl") && !q.Has("notification"),
			r.Method == http.MethodHead,
			r.Method == http.MethodPost && q.Has("delete"):
		default:
			return denied
		}
	}
	// A copy reads another object: its bucket must be allowed too.
	if src := r.Header.Get("X-Amz-Copy-Source"); src != "" {
		if u, err := url.PathUnescape(src); err == nil {
			src = u
		}
		b, _, _ := strings.Cut(strings.TrimPrefix(src, "/"), "/")
		if !scope.allows(b) {
			return denied
		}
	}
	return nil
}

// Values of X-Amz-Content-Sha256 for a body sent in aws-chunked frames.
const (
	streamingSigned        = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingSignedTrailer = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamingUnsigned      = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	unsignedPayload        = "UNSIGNED-PAYLOAD"
)

// body bounds r's body and makes it the object's bytes, checked against
// what the signature declared: gofakes3 then sees a plain body of
// Content-Length bytes, unsigned.
func (h *Handler) body(r *http.Request, signed api.Signed) error {
	max := h.cfg.MaxObjectBytes
	tooLarge := &Error{Status: http.StatusBadRequest, Code: "EntityTooLarge", Message: fmt.Sprintf("Your proposed upload exceeds the maximum allowed size (%d bytes)", max)}
	switch signed.PayloadHash {
	case streamingSigned, streamingSignedTrailer, streamingUnsigned:
		n, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		if err != nil || n < 0 {
			return &Error{Status: http.StatusBadRequest, Code: "MissingContentLength", Message: "X-Amz-Decoded-Content-Length is required with aws-chunked"}
		}
		if n > max {
			return tooLarge
		}
		var cr *chunkedReader
		switch signed.PayloadHash {
		case streamingUnsigned:
			cr = newChunkedReader(r.Body, nil, n)
		default:
			cr = newChunkedReader(r.Body, newChunkSigner(signed), n)
		}
		cr.trailer = signed.PayloadHash != streamingSigned
		r.Body = readCloser{cr, r.Body}
		r.ContentLength = n
		r.Header.Set("Content-Length", strconv.FormatInt(n, 10))
		r.Header.Del("X-Amz-Decoded-Content-Length")
		r.Header.Del("X-Amz-Trailer")
		var enc []string
		for _, e := range strings.Split(r.Header.Get("Content-Encoding"), ",") {
			if e = strings.TrimSpace(e); e != "" && e != "aws-chunked" {
				enc = append(enc, e)
			}
		}
		if len(enc) > 0 {
			r.Header.Set("Content-Encoding", strings.Join(enc, ","))
		} else {
			r.Header.Del("Content-Encoding")
		}
	case unsignedPayload:
		if r.ContentLength > max {
			return tooLarge
		}
		r.Body = readCloser{io.LimitReader(r.Body, max+1), r.Body}
	default:
		if len(signed.PayloadHash) != 64 {
			return &Error{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: "X-Amz-Content-Sha256 must be a SHA-256 in hex, UNSIGNED-PAYLOAD or a STREAMING- value"}
		}
		if r.ContentLength > max {
			return tooLarge
		}
		r.Body = readCloser{newHashChecker(io.LimitReader(r.Body, max+1), signed.PayloadHash), r.Body}
	}
	// gofakes3 decodes STREAMING- bodies itself, without checking them:
	// it must see a plain body.
	r.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
