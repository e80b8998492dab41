// Package async runs Lambda's asynchronous (Event) invocations durably. An
// event is stored in a JetStream stream before the caller gets its 202;
// workers take events from the stream and run each through the one
// invocation path (invoke.Service) as a synchronous invocation; a function
// error is retried after Lambda's delays (1 min, then 2 min) up to
// MaximumRetryAttempts; a throttle or a host error is retried with a
// back-off (1 s doubling to 5 min) until the event is MaximumEventAgeInSeconds
// old. When an event succeeds its record goes to the OnSuccess destination;
// when it is given up, to the OnFailure destination, and the event itself
// to the function's dead-letter queue.
//
// What an event has been through (its attempts, its last answer, when it
// may run again) is in the stored message itself: a retry is a new message
// published before the old one is acknowledged, so a daemon that dies at
// any point finds every event again (at least once, as Lambda says).
package async

import (
	"time"
)

// Event is an asynchronous invocation as the stream keeps it.
type Event struct {
	RequestID     string `json:"requestId"`
	Function      string `json:"function"`
	Qualifier     string `json:"qualifier,omitempty"`
	Payload       []byte `json:"payload,omitempty"`
	ClientContext string `json:"clientContext,omitempty"`
	TraceID       string `json:"traceId,omitempty"`
	// FirstSeen is when the event was accepted: its age counts from it.
	FirstSeen time.Time `json:"firstSeen"`
	// Invokes counts the attempts that ran the function (the record's
	// approximateInvokeCount), FunctionErrors those that ended in a
	// function error, SystemRetries the throttles and host errors since
	// (for the back-off).
	Invokes        int `json:"invokes,omitempty"`
	FunctionErrors int `json:"functionErrors,omitempty"`
	SystemRetries  int `json:"systemRetries,omitempty"`
	// NotBefore is when the event may run again (a retry's delay).
	NotBefore time.Time `json:"notBefore,omitzero"`
	// Last is the last attempt's answer, for the record.
	Last *Response `json:"last,omitempty"`
	// Done is set once the event has ended: only its record and its
	// dead-letter message remain to be delivered.
	Done *Done `json:"done,omitempty"`
}

// Response is what an attempt that ran the function answered.
type Response struct {
	StatusCode    int    `json:"statusCode"`
	Version       string `json:"version"`
	FunctionError string `json:"functionError,omitempty"`
	Payload       []byte `json:"payload,omitempty"`
	// ErrorMessage is the function error's message, for the dead-letter
	// queue's ErrorMessage attribute.
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// Done is an ended event's deliveries: the condition its record carries,
// and which deliveries were made (a daemon that restarts makes only the
// others).
type Done struct {
	Condition string          `json:"condition"`
	At        time.Time       `json:"at"`
	Delivered map[string]bool `json:"delivered,omitempty"`
	// Attempts counts the rounds of delivery that failed.
	Attempts int `json:"attempts,omitempty"`
}

// Settings are a function's asynchronous invocation settings at a
// qualifier, Lambda's defaults filled in.
type Settings struct {
	MaxRetries int
	MaxAge     time.Duration
	// OnSuccess and OnFailure are destinations' ARNs, DeadLetter a
	// queue's; empty for none.
	OnSuccess, OnFailure, DeadLetter string
}

// Lambda's defaults and bounds.
const (
	DefaultMaxRetries = 2
	DefaultMaxAge     = 6 * time.Hour
	MinMaxAgeSeconds  = 60
	MaxMaxAgeSeconds  = 21600
)
