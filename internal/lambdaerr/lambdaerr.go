// Package lambdaerr holds the errors Hearth returns to its callers, in the
// shape of the AWS Lambda API: an exception name, a message and an HTTP
// status. Lower layers return them for bad input so that the CLI and the API
// can answer exactly as Lambda would.
package lambdaerr

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a Lambda API error.
type Error struct {
	// Type is the exception name, e.g. "InvalidParameterValueException".
	Type    string
	Message string
	// Status is the HTTP status the API answers with.
	Status int
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func newf(typ string, status int, format string, args ...any) *Error {
	return &Error{Type: typ, Status: status, Message: fmt.Sprintf(format, args...)}
}

// InvalidParameter is Lambda's InvalidParameterValueException (400).
func InvalidParameter(format string, args ...any) *Error {
	return newf("InvalidParameterValueException", http.StatusBadRequest, format, args...)
}

// PreconditionFailed is Lambda's PreconditionFailedException (412): a
// RevisionId that is not the current one.
func PreconditionFailed(format string, args ...any) *Error {
	return newf("PreconditionFailedException", http.StatusPreconditionFailed, format, args...)
}

// UnknownOperation answers a request for an operation Hearth does not
// serve: 404 for a path it does not know, 405 for a known path with another
// method.
func UnknownOperation(status int, format string, args ...any) *Error {
	return newf("UnknownOperationException", status, format, args...)
}

// RequestTooLarge is Lambda's RequestTooLargeException (413).
func RequestTooLarge(format string, args ...any) *Error {
	return newf("RequestTooLargeException", http.StatusRequestEntityTooLarge, format, args...)
}

// ResourceNotFound is Lambda's ResourceNotFoundException (404).
func ResourceNotFound(format string, args ...any) *Error {
	return newf("ResourceNotFoundException", http.StatusNotFound, format, args...)
}

// Service is Lambda's ServiceException (500): Hearth itself, or the host,
// could not do what was asked.
func Service(format string, args ...any) *Error {
	return newf("ServiceException", http.StatusInternalServerError, format, args...)
}

// Unavailable is a ServiceException answered 503: the host cannot do it
// now, and a retry (later, or through another host) may. The SDKs read
// the type from the error's name and retry on 503; the API adds
// Retry-After.
func Unavailable(format string, args ...any) *Error {
	return newf("ServiceException", http.StatusServiceUnavailable, format, args...)
}

// NoQuorum is the answer to a configuration write on a host that cannot
// reach the cluster's quorum (cut off from the other hosts, or while the
// configuration log's leader is being elected).
func NoQuorum() *Error {
	return Unavailable("this host cannot reach the cluster's quorum; the configuration cannot be changed here now (retry later, or through another host)")
}

// ResourceConflict is Lambda's ResourceConflictException (409).
func ResourceConflict(format string, args ...any) *Error {
	return newf("ResourceConflictException", http.StatusConflict, format, args...)
}

// Throttled is Lambda's TooManyRequestsException (429); Reason says which
// limit was reached.
type Throttled struct {
	Err    *Error
	Reason string
}

func (t *Throttled) Error() string { return t.Err.Error() }
func (t *Throttled) Unwrap() error { return t.Err }

// TooManyRequests is a throttling error for reason.
func TooManyRequests(reason, format string, args ...any) *Throttled {
	return &Throttled{Err: newf("TooManyRequestsException", http.StatusTooManyRequests, format, args...), Reason: reason}
}

// InvalidSignature is the 403 for a request whose signature does not match.
func InvalidSignature(format string, args ...any) *Error {
	return newf("InvalidSignatureException", http.StatusForbidden, format, args...)
}

// UnrecognizedClient is the 403 for an unknown or missing access key.
func UnrecognizedClient(format string, args ...any) *Error {
	return newf("UnrecognizedClientException", http.StatusForbidden, format, args...)
}
