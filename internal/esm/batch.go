package esm

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// ErrNoQueue is what Queues.NameOf answers for an ARN that names none of
// Hearth's queues.
var ErrNoQueue = errors.New("no such queue")

// Queues is the part of Hearth's queues (queue.Service) the pollers use.
type Queues interface {
	// NameOf returns the name of the queue an ARN names; an error wrapping
	// ErrNoQueue when there is none.
	NameOf(arn string) (string, error)
	// Receive waits up to wait for up to max (1 to 10) messages and hides
	// them for visibility (0: the queue's VisibilityTimeout).
	Receive(ctx context.Context, name string, max int, wait, visibility time.Duration) ([]Message, error)
	Delete(ctx context.Context, name, receiptHandle string) error
	ChangeVisibility(ctx context.Context, name, receiptHandle string, d time.Duration) error
	Stats(ctx context.Context, name string) (QueueStats, error)
}

// Message is a message received, as queue.Received holds it.
type Message struct {
	MessageID, ReceiptHandle, Body, MD5OfBody string
	// MD5OfMessageAttributes is SQS's digest of MessageAttributes, as the
	// queue computed it ("" for none).
	MD5OfMessageAttributes string
	// Attributes are the system attributes: ApproximateReceiveCount,
	// SentTimestamp, ApproximateFirstReceiveTimestamp, SenderId.
	Attributes        map[string]string
	MessageAttributes map[string]MessageAttribute
}

// MessageAttribute is a message attribute.
type MessageAttribute struct {
	DataType    string
	StringValue string
	BinaryValue []byte
}

// QueueStats counts a queue's messages, as queue.Stats does.
type QueueStats struct {
	Visible, InFlight, Delayed int
	OldestAge                  time.Duration
}

// maxReceive is how many messages one Receive returns at most, as SQS's
// ReceiveMessage.
const maxReceive = 10

// batchBudget is how many bytes of bodies a batch gathers at most: one
// more Receive of the largest messages (10 × 256 KiB) then still fits the
// 6 MB of a synchronous invocation, with the records' other fields.
const batchBudget = 6<<20 - maxReceive*(256<<10+2<<10)

// record turns a message into the record Lambda gives the function.
func record(m Message, sourceARN, region string) events.SQSMessage {
	r := events.SQSMessage{MessageId: m.MessageID, ReceiptHandle: m.ReceiptHandle, Body: m.Body, Md5OfBody: m.MD5OfBody,
		Attributes: m.Attributes, MessageAttributes: map[string]events.SQSMessageAttribute{},
		EventSource: "aws:sqs", EventSourceARN: sourceARN, AWSRegion: region}
	if r.Attributes == nil {
		r.Attributes = map[string]string{}
	}
	for k, a := range m.MessageAttributes {
		ra := events.SQSMessageAttribute{DataType: a.DataType, StringListValues: []string{}, BinaryListValues: [][]byte{}}
		if a.BinaryValue != nil {
			ra.BinaryValue = a.BinaryValue
		} else {
			s := a.StringValue
			ra.StringValue = &s
		}
		r.MessageAttributes[k] = ra
	}
	if len(m.MessageAttributes) > 0 {
		r.Md5OfMessageAttributes = m.MD5OfMessageAttributes
	}
	return r
}

// filterView is a record as the filter sees it: the record's JSON, with a
// body that is JSON decoded (so a pattern can look into it) and any other
// body kept as its string.
func filterView(r events.SQSMessage) map[string]any {
	var v map[string]any
	b, err := json.Marshal(r)
	if err == nil {
		err = json.Unmarshal(b, &v)
	}
	if err != nil {
		return map[string]any{"body": r.Body}
	}
	var body any
	if json.Unmarshal([]byte(r.Body), &body) == nil {
		v["body"] = body
	}
	return v
}

// Outcome is what became of a batch the function was given: the receipt
// handles to delete and how many messages failed.
type Outcome struct {
	Delete []string
	Failed int
	// Invalid says why a ReportBatchItemFailures response was refused
	// (then the whole batch failed, as in Lambda).
	Invalid string
}

// outcome reads a function's answer to a batch. A function error fails
// the whole batch. Without ReportBatchItemFailures any other answer
// succeeds it. With it, the answer lists the messages that failed
// (events.SQSEventResponse); null, {}, or no or an empty batchItemFailures
// is success, and, as in Lambda, an answer that is not that shape, or an
// itemIdentifier missing, empty or not one of the batch's message IDs,
// fails the whole batch.
func outcome(batch []events.SQSMessage, payload []byte, funcErr bool, report bool) Outcome {
	all := func(invalid string) Outcome { return Outcome{Failed: len(batch), Invalid: invalid} }
	if funcErr {
		return all("")
	}
	var del []string
	if !report {
		for _, r := range batch {
			del = append(del, r.ReceiptHandle)
		}
		return Outcome{Delete: del}
	}
	var resp *struct {
		BatchItemFailures []map[string]json.RawMessage `json:"batchItemFailures"`
	}
	if len(strings.TrimSpace(string(payload))) > 0 {
		if err := json.Unmarshal(payload, &resp); err != nil {
			return all("the response is not an SQSEventResponse: " + err.Error())
		}
	}
	failed := map[string]bool{}
	if resp != nil {
		ids := map[string]bool{}
		for _, r := range batch {
			ids[r.MessageId] = true
		}
		for _, f := range resp.BatchItemFailures {
			var id string
			raw, ok := f["itemIdentifier"]
			if !ok || json.Unmarshal(raw, &id) != nil || id == "" {
				return all("a batchItemFailures entry has no itemIdentifier")
			}
			if !ids[id] {
				return all("the itemIdentifier " + id + " is not a message of the batch")
			}
			failed[id] = true
		}
	}
	for _, r := range batch {
		if !failed[r.MessageId] {
			del = append(del, r.ReceiptHandle)
		}
	}
	return Outcome{Delete: del, Failed: len(failed)}
}
