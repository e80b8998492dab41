package queue

import "fmt"

// Error is a refusal the caller can act on; Code is the name of SQS's
// error for it, so that the SQS API answers with it as it is.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Message
}

// Is makes errors.Is(err, ErrNotFound) true for every not-found error,
// whatever its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// The kinds of refusal, for errors.Is.
var (
	ErrNotFound              = &Error{Code: "QueueDoesNotExist"}
	ErrExists                = &Error{Code: "QueueNameExists"}
	ErrInvalidAttributeName  = &Error{Code: "InvalidAttributeName"}
	ErrInvalidAttributeValue = &Error{Code: "InvalidAttributeValue"}
	ErrInvalidParameter      = &Error{Code: "InvalidParameterValue"}
	ErrInvalidMessage        = &Error{Code: "InvalidMessageContents"}
	ErrReceiptInvalid        = &Error{Code: "ReceiptHandleIsInvalid"}
	ErrUnsupported           = &Error{Code: "UnsupportedOperation"}
)

func errorf(kind *Error, format string, args ...any) error {
	return &Error{Code: kind.Code, Message: fmt.Sprintf(format, args...)}
}

func notFound(name string) error {
	return errorf(ErrNotFound, "The specified queue does not exist: %s", name)
}
