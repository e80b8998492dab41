// Package sqsapi serves Hearth's queues with Amazon SQS's AWS JSON 1.0
// protocol (POST / with X-Amz-Target: AmazonSQS.<Operation>, signed with
// SigV4 for service "sqs"), so that aws-sdk-go-v2's sqs client and
// `aws sqs` work against the daemon unmodified. Errors have SQS's shape:
// {"__type": "com.amazonaws.sqs#<Error>", "message"} with the query error
// code in x-amzn-query-error, which the SDK reports as the error's code.
package sqsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/queue"
)

// TargetPrefix starts the X-Amz-Target of SQS's operations.
const TargetPrefix = "AmazonSQS."

// SigningService is the service SQS requests are signed for.
const SigningService = "sqs"

// MaxRequestBytes bounds a request's body: a batch of ten messages of
// 256 KiB, with room for JSON's escapes.
const MaxRequestBytes = 8 << 20

// Verifier checks a request's signature (api.Verifier for service "sqs").
type Verifier interface {
	Verify(r *http.Request) error
}

// Config is what the handler needs.
type Config struct {
	Queues   *queue.Service
	Verifier Verifier
	Log      *slog.Logger
}

// Handler is the SQS API's HTTP handler.
type Handler struct {
	q   *queue.Service
	v   Verifier
	log *slog.Logger
	ops map[string]func(ctx context.Context, r *http.Request, body []byte) (any, error)
}

// New returns the handler.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	h := &Handler{q: cfg.Queues, v: cfg.Verifier, log: cfg.Log.With("part", "sqsapi")}
	h.ops = map[string]func(context.Context, *http.Request, []byte) (any, error){
		"CreateQueue":                  h.createQueue,
		"GetQueueUrl":                  h.getQueueURL,
		"ListQueues":                   h.listQueues,
		"DeleteQueue":                  h.deleteQueue,
		"GetQueueAttributes":           h.getQueueAttributes,
		"SetQueueAttributes":           h.setQueueAttributes,
		"PurgeQueue":                   h.purgeQueue,
		"ListDeadLetterSourceQueues":   h.listDeadLetterSourceQueues,
		"SendMessage":                  h.sendMessage,
		"SendMessageBatch":             h.sendMessageBatch,
		"ReceiveMessage":               h.receiveMessage,
		"DeleteMessage":                h.deleteMessage,
		"DeleteMessageBatch":           h.deleteMessageBatch,
		"ChangeMessageVisibility":      h.changeMessageVisibility,
		"ChangeMessageVisibilityBatch": h.changeMessageVisibilityBatch,
	}
	return h
}

// IsSQS tells a request for the SQS API from the Lambda API's.
func IsSQS(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("X-Amz-Target"), TargetPrefix)
}

// ServeHTTP verifies the request's signature, then runs its operation.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())
	r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
	if err := h.v.Verify(r); err != nil {
		h.writeError(w, err)
		return
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), TargetPrefix)
	fn, ok := h.ops[op]
	if !ok {
		h.writeError(w, &apiError{status: 400, typ: "com.amazonaws.sqs#UnsupportedOperation", query: "AWS.SimpleQueueService.UnsupportedOperation",
			msg: fmt.Sprintf("The operation %s is not supported by Hearth.", op)})
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		h.writeError(w, invalidParameter("The request could not be read: %v", err))
		return
	}
	out, err := fn(context.WithValue(r.Context(), requestIDKey{}, w.Header().Get("X-Amzn-RequestId")), r, body)
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(out)
}

// apiError is an error in SQS's shape.
type apiError struct {
	status int
	typ    string // the body's __type
	query  string // x-amzn-query-error's code
	msg    string
	server bool
}

func (e *apiError) Error() string { return e.msg }

func invalidParameter(format string, args ...any) error {
	return &apiError{status: 400, typ: "com.amazon.coral.service#InvalidParameterValueException", query: "InvalidParameterValue", msg: fmt.Sprintf(format, args...)}
}

func missingParameter(name string) error {
	return &apiError{status: 400, typ: "com.amazon.coral.service#MissingParameter", query: "MissingParameter",
		msg: fmt.Sprintf("The request must contain the parameter %s.", name)}
}

// queueErrors are the queue package's refusals as SQS's errors: the
// status and the query code of the SQS model's error (smithy's
// AWSQueryError traits in aws-sdk-go-v2's sqs schemas).
var queueErrors = map[string]struct {
	status int
	query  string
}{
	"QueueDoesNotExist":      {400, "AWS.SimpleQueueService.NonExistentQueue"},
	"QueueNameExists":        {400, "QueueAlreadyExists"},
	"InvalidAttributeName":   {400, "InvalidAttributeName"},
	"InvalidAttributeValue":  {400, "InvalidAttributeValue"},
	"InvalidMessageContents": {400, "InvalidMessageContents"},
	"ReceiptHandleIsInvalid": {404, "ReceiptHandleIsInvalid"},
	"UnsupportedOperation":   {400, "AWS.SimpleQueueService.UnsupportedOperation"},
}

// toAPIError gives err SQS's shape; an error that is none of the expected
// refusals is the daemon's own, logged under the request id and answered
// as InternalError without its text.
func (h *Handler) toAPIError(id string, err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var qe *queue.Error
	if errors.As(err, &qe) {
		switch qe.Code {
		case "InvalidParameterValue":
			return &apiError{status: 400, typ: "com.amazon.coral.service#InvalidParameterValueException", query: "InvalidParameterValue", msg: qe.Message}
		case "MissingParameter":
			return &apiError{status: 400, typ: "com.amazon.coral.service#MissingParameter", query: "MissingParameter", msg: qe.Message}
		}
		if m, ok := queueErrors[qe.Code]; ok {
			return &apiError{status: m.status, typ: "com.amazonaws.sqs#" + qe.Code, query: m.query, msg: qe.Message}
		}
	}
	var le *lambdaerr.Error
	if errors.As(err, &le) {
		// The signature's refusals: their names are the same in SQS.
		return &apiError{status: le.Status, typ: "com.amazon.coral.service#" + le.Type, query: strings.TrimSuffix(le.Type, "Exception"), msg: le.Message}
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &apiError{status: 413, typ: "com.amazon.coral.service#RequestEntityTooLarge", query: "RequestEntityTooLarge", msg: fmt.Sprintf("Request must be smaller than %d bytes", MaxRequestBytes)}
	}
	h.log.Error("sqsapi: internal error", "request_id", id, "err", err)
	return &apiError{status: 500, typ: "com.amazon.coral.service#InternalFailure", query: "InternalFailure", msg: "An internal error occurred. Request ID: " + id, server: true}
}

func (h *Handler) writeError(w http.ResponseWriter, err error) {
	e := h.toAPIError(w.Header().Get("X-Amzn-RequestId"), err)
	fault := "Sender"
	if e.server {
		fault = "Receiver"
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-Query-Error", e.query+";"+fault)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.typ, "message": e.msg})
}

// decode reads a request's JSON into v.
func decode(body []byte, v any) error {
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return invalidParameter("The request body is not valid JSON for this operation: %v", err)
	}
	return nil
}

// queueName reads the queue a QueueUrl names: its last path segment
// (http://<host>/000000000000/<name>, as this API makes them, or a bare
// name).
func queueName(queueURL string) (string, error) {
	if queueURL == "" {
		return "", missingParameter("QueueUrl")
	}
	name := queueURL[strings.LastIndex(queueURL, "/")+1:]
	if name == "" {
		return "", &apiError{status: 404, typ: "com.amazonaws.sqs#InvalidAddress", query: "InvalidAddress", msg: "The address " + queueURL + " is not valid for this endpoint."}
	}
	return name, nil
}

// queueURL is a queue's URL on the host the request came to.
func queueURL(r *http.Request, name string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/" + queue.AccountID + "/" + name
}

// seconds turns an optional count of seconds into a duration.
func seconds(n *int) time.Duration {
	if n == nil {
		return 0
	}
	return time.Duration(*n) * time.Second
}

func itoa(n int) string { return strconv.Itoa(n) }

type requestIDKey struct{}

// requestID is the id of the request ctx serves, for the log.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
