// Package funcurl serves function URLs: each request to
// <url-id>.lambda-url.<domain> (or /fn-url/<url-id>/… where wildcard names
// do not resolve) becomes a Lambda payload-format-2.0 event, is invoked, and
// the function's answer becomes the HTTP response, as Lambda does. Every
// request is handled on its own goroutine: a slow function blocks nobody.
package funcurl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// Invoker is the invocation path; invoke.Service is it.
type Invoker interface {
	Invoke(ctx context.Context, req invoke.Request) (*invoke.Result, error)
}

// URLConfigs finds a function URL's configuration by its id; the store is
// one.
type URLConfigs interface {
	URLConfigByID(ctx context.Context, id string) (store.URLConfig, error)
}

// Verifier checks SigV4 signatures, for AWS_IAM URLs.
type Verifier interface {
	Verify(r *http.Request) error
}

// Config is what the function-URL handler needs.
type Config struct {
	URLs     URLConfigs
	Invoker  Invoker
	Verifier Verifier
	Timeouts Timeouts
	Log      *slog.Logger
}

// Timeouts bound the writes to a client, which may be slow or hostile and
// never read: nothing is written while the function runs, so they start
// when there is something to write, and a long invocation is never cut.
type Timeouts struct {
	// StreamWrite bounds one chunk of a streamed response (and its
	// status line): a client that takes longer is abandoned, and the rest
	// of the stream dropped. Default 30 s.
	StreamWrite time.Duration
	// AnswerWrite bounds writing a buffered answer (at most 6 MB, so 2
	// minutes is 50 KB/s) or an error. Default 2 min.
	AnswerWrite time.Duration
}

func (t Timeouts) orDefaults() Timeouts {
	if t.StreamWrite <= 0 {
		t.StreamWrite = 30 * time.Second
	}
	if t.AnswerWrite <= 0 {
		t.AnswerWrite = 2 * time.Minute
	}
	return t
}

// Handler is the function-URL HTTP handler.
type Handler struct {
	cfg Config
}

// New returns the funcurl.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Timeouts = cfg.Timeouts.orDefaults()
	return &Handler{cfg: cfg}
}

// MaxPayload is Lambda's limit on a function URL's request and response.
const MaxPayload = 6 << 20

// PathPrefix routes by path where host names cannot: /fn-url/<url-id>/…
const PathPrefix = "/fn-url/"

// route finds the URL id and the function's path in a request.
func route(r *http.Request) (id, path, domain string, ok bool) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	path = r.URL.EscapedPath()
	if i := strings.Index(host, ".lambda-url."); i > 0 {
		return host[:i], path, host, true
	}
	if rest, found := strings.CutPrefix(path, PathPrefix); found {
		id, tail, _ := strings.Cut(rest, "/")
		return id, "/" + tail, host, id != ""
	}
	return "", "", "", false
}

// message answers with Lambda's function-URL error body.
func message(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", strings.ReplaceAll(http.StatusText(status), " ", "")+"Exception")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Message": msg})
}

func (f *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, path, domain, ok := route(r)
	if !ok {
		message(w, http.StatusNotFound, "Not Found: use http://<url-id>.lambda-url.<domain>/ or "+PathPrefix+"<url-id>/")
		return
	}
	cfg, err := f.cfg.URLs.URLConfigByID(r.Context(), id)
	if err != nil {
		message(w, http.StatusNotFound, "Not Found")
		return
	}
	if cfg.Cors != nil && r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		preflight(w, r, cfg.Cors)
		return
	}
	if cfg.Cors != nil {
		corsHeaders(w, r, cfg.Cors)
	}
	// A body over Lambda's limit is refused before a byte of it is read
	// when its length is declared, and as soon as it goes over otherwise;
	// no body over it could make an event under the limit.
	if r.ContentLength > MaxPayload {
		refuseTooLarge(w)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxPayload)
	var iam *iamCaller
	if cfg.AuthType == "AWS_IAM" {
		// The verifier refuses an unsigned request (or one for another
		// service, region or host, or by an unknown key) before it reads
		// the body.
		if f.cfg.Verifier == nil {
			message(w, http.StatusForbidden, "Forbidden")
			return
		}
		if err := f.cfg.Verifier.Verify(r); err != nil {
			if isTooLarge(err) {
				refuseTooLarge(w)
				return
			}
			message(w, http.StatusForbidden, "Forbidden")
			return
		}
		iam = callerOf(r)
	}
	event, err := buildEvent(r, id, domain, path, iam)
	if err != nil {
		if isTooLarge(err) {
			refuseTooLarge(w)
			return
		}
		message(w, http.StatusBadRequest, "Bad Request: the request body could not be read")
		return
	}
	req := invoke.Request{Function: cfg.Function, Qualifier: cfg.Qualifier, Payload: event}
	var stream *streamWriter
	if cfg.InvokeMode == "RESPONSE_STREAM" {
		stream = newStreamWriter(w, f.cfg.Timeouts)
		req.Stream = stream
	}
	// The invocation runs to its end even if the client hangs up (a browser
	// navigating away).
	res, err := f.cfg.Invoker.Invoke(r.Context(), req)
	if stream != nil && stream.started() {
		// The status is sent: an error now can only end the stream early.
		stream.finish()
		return
	}
	// Nothing was written while the function ran: the answer's own time
	// starts now.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(f.cfg.Timeouts.AnswerWrite))
	if err != nil {
		var th *lambdaerr.Throttled
		le, _ := lambdaerr.As(err)
		switch {
		case asThrottled(err, &th):
			w.Header().Set("Retry-After", "1")
			message(w, http.StatusTooManyRequests, "Rate Exceeded.")
		case le != nil && le.Status == http.StatusNotFound:
			// The URL's function or alias is gone.
			message(w, http.StatusNotFound, "Not Found")
		case le != nil && le.Status == http.StatusRequestEntityTooLarge:
			message(w, http.StatusRequestEntityTooLarge, le.Message)
		default:
			// The error's text may hold host paths or a guest's console:
			// it goes to the log, the caller gets a request id to quote.
			requestID := uuid.NewString()
			f.cfg.Log.Warn("function url invocation failed", "url", id, "request_id", requestID, "err", err)
			w.Header().Set("X-Amzn-RequestId", requestID)
			message(w, http.StatusInternalServerError, "Internal Server Error")
		}
		return
	}
	if res.RequestID != "" {
		w.Header().Set("X-Amzn-RequestId", res.RequestID)
	}
	if res.Error != nil {
		// A function error, a crash or a timeout: Lambda answers 502.
		message(w, http.StatusBadGateway, "Internal Server Error")
		return
	}
	if stream != nil {
		stream.finish()
		return
	}
	writeResponse(w, res.Payload)
}

// refuseTooLarge answers 413 with Lambda's message.
func refuseTooLarge(w http.ResponseWriter) {
	message(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request must be smaller than %d bytes for the InvokeFunction operation", MaxPayload))
}

// isTooLarge says whether err is a body over the bound: the
// MaxBytesReader's error, or a RequestTooLargeException.
func isTooLarge(err error) bool {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return true
	}
	le, ok := lambdaerr.As(err)
	return ok && le.Status == http.StatusRequestEntityTooLarge
}
