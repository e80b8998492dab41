package rootfs

import (
	"errors"
	"fmt"
)

// Code says what is wrong with an image, for callers that map it onto
// Lambda's errors and state reason codes.
type Code string

const (
	// InvalidReference: the image URI does not parse.
	InvalidReference Code = "InvalidReference"
	// NotFound: the repository, tag or digest does not exist.
	NotFound Code = "ImageNotFound"
	// AccessDenied: the registry refused the credentials (or their absence).
	AccessDenied Code = "ImageAccessDenied"
	// Unreachable: the registry did not answer (refused, timed out, DNS).
	Unreachable Code = "RegistryUnreachable"
	// UnsupportedPlatform: the image is not built for linux/amd64.
	UnsupportedPlatform Code = "UnsupportedPlatform"
	// TooLarge: the image's layers, uncompressed, exceed the limit.
	TooLarge Code = "ImageTooLarge"
	// InvalidImage: the image is malformed or of an unsupported kind
	// (schema 1 manifest, unreadable tarball or layout, broken layer).
	InvalidImage Code = "InvalidImage"
	// InvalidEntryPoint: the entry point is not an absolute path to an
	// executable regular file in the image.
	InvalidEntryPoint Code = "InvalidEntryPoint"
)

// Error is a problem with an image (not with Hearth or the host). Message is
// written for the caller, in Lambda's words where Lambda has some.
type Error struct {
	Code    Code
	Message string
	Err     error // the underlying cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s (%v)", e.Code, e.Message, e.Err)
	}
	return string(e.Code) + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// StateReasonCode is Lambda's StateReasonCode for a function whose image
// failed with this error while the function was Pending.
func (e *Error) StateReasonCode() string {
	switch e.Code {
	case NotFound:
		return "ImageDeleted"
	case AccessDenied:
		return "ImageAccessDenied"
	case InvalidEntryPoint:
		return "FunctionError.InvalidEntryPoint"
	default:
		return "InvalidImage"
	}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// IsCode reports whether err carries an *Error with code c.
func IsCode(err error, c Code) bool {
	e, ok := AsError(err)
	return ok && e.Code == c
}

func newError(c Code, cause error, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...), Err: cause}
}
