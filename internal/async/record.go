package async

import (
	"encoding/json"
	"time"
)

// The conditions of an invocation record.
const (
	Success          = "Success"
	RetriesExhausted = "RetriesExhausted"
	EventAgeExceeded = "EventAgeExceeded"
)

// Record is Lambda's invocation record, the event a destination gets.
type Record struct {
	Version         string           `json:"version"`
	Timestamp       string           `json:"timestamp"`
	RequestContext  RequestContext   `json:"requestContext"`
	RequestPayload  json.RawMessage  `json:"requestPayload"`
	ResponseContext *ResponseContext `json:"responseContext,omitempty"`
	ResponsePayload json.RawMessage  `json:"responsePayload,omitempty"`
}

// RequestContext says which event the record is of, and how it ended.
type RequestContext struct {
	RequestID              string `json:"requestId"`
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// ResponseContext is the last attempt's answer.
type ResponseContext struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

// record makes e's invocation record. An event that never ran (throttled
// until it was too old) has no response to report.
func record(e *Event, arn, condition string, now time.Time) Record {
	r := Record{Version: "1.0", Timestamp: now.UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: RequestContext{RequestID: e.RequestID, FunctionArn: arn, Condition: condition,
			ApproximateInvokeCount: e.Invokes},
		RequestPayload: asJSON(e.Payload),
	}
	if l := e.Last; l != nil {
		r.ResponseContext = &ResponseContext{StatusCode: l.StatusCode, ExecutedVersion: l.Version, FunctionError: l.FunctionError}
		r.ResponsePayload = asJSON(l.Payload)
		if len(l.Payload) == 0 {
			r.ResponsePayload = json.RawMessage("null")
		}
	}
	return r
}

// asJSON is a payload as a JSON value: itself when it is JSON, else a
// string of it, so that a record is always valid JSON.
func asJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}
