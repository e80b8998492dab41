package sqsapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/queue"
)

// attributeValue is a MessageAttributeValue; BinaryValue is base64 in
// JSON, as encoding/json reads []byte.
type attributeValue struct {
	DataType         string
	StringValue      string   `json:",omitempty"`
	BinaryValue      []byte   `json:",omitempty"`
	StringListValues []string `json:",omitempty"`
	BinaryListValues [][]byte `json:",omitempty"`
}

type sendEntry struct {
	Id                     string
	MessageBody            string
	DelaySeconds           *int
	MessageAttributes      map[string]attributeValue
	MessageGroupId         string
	MessageDeduplicationId string
}

func (e sendEntry) message() (queue.Message, error) {
	if e.MessageGroupId != "" || e.MessageDeduplicationId != "" {
		return queue.Message{}, invalidParameter("The request include parameter that is not valid for this queue type: MessageGroupId and MessageDeduplicationId are for FIFO queues, which Hearth does not have.")
	}
	m := queue.Message{Body: e.MessageBody}
	if e.DelaySeconds != nil {
		if *e.DelaySeconds < 0 || *e.DelaySeconds > int(queue.MaxDelay/time.Second) {
			return m, invalidParameter("Value %d for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900.", *e.DelaySeconds)
		}
		m.DelaySeconds = *e.DelaySeconds
	}
	if len(e.MessageAttributes) > 0 {
		m.Attributes = map[string]queue.MessageAttribute{}
		for n, a := range e.MessageAttributes {
			if len(a.StringListValues) > 0 || len(a.BinaryListValues) > 0 {
				return m, invalidParameter("Message attribute list values in SendMessage operation are not supported.")
			}
			m.Attributes[n] = queue.MessageAttribute{DataType: a.DataType, StringValue: a.StringValue, BinaryValue: a.BinaryValue}
		}
	}
	return m, nil
}

func (h *Handler) sendMessage(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct {
		QueueUrl string
		sendEntry
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	name, err := queueName(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	m, err := in.message()
	if err != nil {
		return nil, err
	}
	sent, err := h.q.Send(ctx, name, m)
	if err != nil {
		return nil, err
	}
	out := map[string]string{"MessageId": sent.MessageID, "MD5OfMessageBody": sent.MD5OfBody}
	if d := queue.MD5OfAttributes(m.Attributes); d != "" {
		out["MD5OfMessageAttributes"] = d
	}
	return out, nil
}

var batchID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// checkBatch checks a batch's ids as SQS does: 1 to 10 entries, each id
// valid and distinct.
func checkBatch(ids []string) error {
	if len(ids) == 0 {
		return &apiError{status: 400, typ: "com.amazonaws.sqs#EmptyBatchRequest", query: "AWS.SimpleQueueService.EmptyBatchRequest",
			msg: "There should be at least one entry in the request."}
	}
	if len(ids) > queue.MaxBatch {
		return &apiError{status: 400, typ: "com.amazonaws.sqs#TooManyEntriesInBatchRequest", query: "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
			msg: "Maximum number of entries per request are 10. You have sent " + itoa(len(ids)) + "."}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !batchID.MatchString(id) {
			return &apiError{status: 400, typ: "com.amazonaws.sqs#InvalidBatchEntryId", query: "AWS.SimpleQueueService.InvalidBatchEntryId",
				msg: "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long."}
		}
		if seen[id] {
			return &apiError{status: 400, typ: "com.amazonaws.sqs#BatchEntryIdsNotDistinct", query: "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
				msg: "Id " + id + " repeated."}
		}
		seen[id] = true
	}
	return nil
}

// failure is a batch entry's error, with the code SQS gives it.
type failure struct {
	Id          string
	SenderFault bool
	Code        string
	Message     string
}

func (h *Handler) failed(ctx context.Context, id string, err error) failure {
	e := h.toAPIError(requestID(ctx), err)
	return failure{Id: id, SenderFault: !e.server, Code: e.query, Message: e.msg}
}

func (h *Handler) sendMessageBatch(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct {
		QueueUrl string
		Entries  []sendEntry
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	name, err := queueName(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if _, err := h.q.Get(ctx, name); err != nil {
		return nil, err
	}
	ids := make([]string, len(in.Entries))
	size := 0
	for i, e := range in.Entries {
		ids[i] = e.Id
		size += len(e.MessageBody)
		for n, a := range e.MessageAttributes {
			size += len(n) + len(a.DataType) + len(a.StringValue) + len(a.BinaryValue)
		}
	}
	if err := checkBatch(ids); err != nil {
		return nil, err
	}
	if size > queue.MaxMessageBytes {
		return nil, &apiError{status: 400, typ: "com.amazonaws.sqs#BatchRequestTooLong", query: "AWS.SimpleQueueService.BatchRequestTooLong",
			msg: "Batch requests cannot be longer than " + itoa(queue.MaxMessageBytes) + " bytes. You have sent " + itoa(size) + " bytes."}
	}
	type success struct {
		Id, MessageId, MD5OfMessageBody string
		MD5OfMessageAttributes          string `json:",omitempty"`
	}
	out := struct {
		Successful []success
		Failed     []failure
	}{Successful: []success{}, Failed: []failure{}}
	for _, e := range in.Entries {
		m, err := e.message()
		var sent queue.Sent
		if err == nil {
			sent, err = h.q.Send(ctx, name, m)
		}
		if err != nil {
			if errors.Is(err, queue.ErrNotFound) {
				return nil, err
			}
			out.Failed = append(out.Failed, h.failed(ctx, e.Id, err))
			continue
		}
		out.Successful = append(out.Successful, success{Id: e.Id, MessageId: sent.MessageID, MD5OfMessageBody: sent.MD5OfBody,
			MD5OfMessageAttributes: queue.MD5OfAttributes(m.Attributes)})
	}
	return out, nil
}

// systemAttributes are the system attributes a receive can ask for.
var systemAttributes = []string{"ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp", "SentTimestamp", "SenderId"}

func (h *Handler) receiveMessage(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct {
		QueueUrl                    string
		AttributeNames              []string
		MessageSystemAttributeNames []string
		MessageAttributeNames       []string
		MaxNumberOfMessages         *int
		VisibilityTimeout           *int
		WaitTimeSeconds             *int
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	name, err := queueName(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	n := 1
	if in.MaxNumberOfMessages != nil {
		n = *in.MaxNumberOfMessages
	}
	wait := time.Duration(-1) // the queue's ReceiveMessageWaitTimeSeconds
	if in.WaitTimeSeconds != nil {
		if *in.WaitTimeSeconds < 0 || *in.WaitTimeSeconds > int(queue.MaxWait/time.Second) {
			return nil, invalidParameter("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", *in.WaitTimeSeconds)
		}
		wait = seconds(in.WaitTimeSeconds)
	}
	var vis time.Duration // the queue's VisibilityTimeout
	if in.VisibilityTimeout != nil {
		if *in.VisibilityTimeout < 0 || *in.VisibilityTimeout > int(queue.MaxVisibility/time.Second) {
			return nil, invalidParameter("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided.", *in.VisibilityTimeout)
		}
		vis = seconds(in.VisibilityTimeout)
		if vis == 0 {
			vis = -1 // visible again at once
		}
	}
	wantSys := map[string]bool{}
	for _, a := range append(in.AttributeNames, in.MessageSystemAttributeNames...) {
		if a == "All" {
			for _, s := range systemAttributes {
				wantSys[s] = true
			}
		}
		wantSys[a] = true
	}
	got, err := h.q.Receive(ctx, name, n, wait, vis)
	if err != nil {
		return nil, err
	}
	type message struct {
		MessageId, ReceiptHandle, MD5OfBody, Body string
		Attributes                                map[string]string         `json:",omitempty"`
		MD5OfMessageAttributes                    string                    `json:",omitempty"`
		MessageAttributes                         map[string]attributeValue `json:",omitempty"`
	}
	out := struct{ Messages []message }{Messages: []message{}}
	for _, m := range got {
		msg := message{MessageId: m.MessageID, ReceiptHandle: m.ReceiptHandle, MD5OfBody: m.MD5OfBody, Body: m.Body}
		for k, v := range m.Attributes {
			if wantSys[k] {
				if msg.Attributes == nil {
					msg.Attributes = map[string]string{}
				}
				msg.Attributes[k] = v
			}
		}
		picked := map[string]queue.MessageAttribute{}
		for k, v := range m.MessageAttributes {
			if wantAttribute(in.MessageAttributeNames, k) {
				picked[k] = v
			}
		}
		if len(picked) > 0 {
			msg.MessageAttributes = map[string]attributeValue{}
			for k, v := range picked {
				msg.MessageAttributes[k] = attributeValue{DataType: v.DataType, StringValue: v.StringValue, BinaryValue: v.BinaryValue}
			}
			msg.MD5OfMessageAttributes = queue.MD5OfAttributes(picked)
		}
		out.Messages = append(out.Messages, msg)
	}
	return out, nil
}

// wantAttribute tells whether a receive asked for the message attribute
// name: "All", ".*", the name, or a prefix ending in ".*".
func wantAttribute(asked []string, name string) bool {
	for _, a := range asked {
		if a == "All" || a == ".*" || a == name {
			return true
		}
		if p, ok := strings.CutSuffix(a, ".*"); ok && strings.HasPrefix(name, p+".") {
			return true
		}
	}
	return false
}

func (h *Handler) deleteMessage(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct{ QueueUrl, ReceiptHandle string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	name, err := queueName(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if in.ReceiptHandle == "" {
		return nil, missingParameter("ReceiptHandle")
	}
	return struct{}{}, h.q.Delete(ctx, name, in.ReceiptHandle)
}

type handleEntry struct {
	Id, ReceiptHandle string
	VisibilityTimeout *int
}

// eachEntry runs fn on each entry of a batch, reporting each's result.
func (h *Handler) eachEntry(ctx context.Context, body []byte, fn func(name string, e handleEntry) error) (any, error) {
	var in struct {
		QueueUrl string
		Entries  []handleEntry
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	name, err := queueName(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if _, err := h.q.Get(ctx, name); err != nil {
		return nil, err
	}
	ids := make([]string, len(in.Entries))
	for i, e := range in.Entries {
		ids[i] = e.Id
	}
	if err := checkBatch(ids); err != nil {
		return nil, err
	}
	type success struct{ Id string }
	out := struct {
		Successful []success
		Failed     []failure
	}{Successful: []success{}, Failed: []failure{}}
	for _, e := range in.Entries {
		err := fn(name, e)
		if e.ReceiptHandle == "" {
			err = missingParameter("ReceiptHandle")
		}
		if err != nil {
			if errors.Is(err, queue.ErrNotFound) {
				return nil, err
			}
			out.Failed = append(out.Failed, h.failed(ctx, e.Id, err))
			continue
		}
		out.Successful = append(out.Successful, success{e.Id})
	}
	return out, nil
}

func (h *Handler) deleteMessageBatch(ctx context.Context, r *http.Request, body []byte) (any, error) {
	return h.eachEntry(ctx, body, func(name string, e handleEntry) error {
		if e.ReceiptHandle == "" {
			return nil
		}
		return h.q.Delete(ctx, name, e.ReceiptHandle)
	})
}

func (h *Handler) changeMessageVisibility(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct {
		QueueUrl, ReceiptHandle string
		VisibilityTimeout       *int
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	name, err := queueName(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if in.ReceiptHandle == "" {
		return nil, missingParameter("ReceiptHandle")
	}
	if in.VisibilityTimeout == nil {
		return nil, missingParameter("VisibilityTimeout")
	}
	return struct{}{}, h.changeVisibility(ctx, name, in.ReceiptHandle, *in.VisibilityTimeout)
}

func (h *Handler) changeVisibility(ctx context.Context, name, handle string, secs int) error {
	if secs < 0 || secs > int(queue.MaxVisibility/time.Second) {
		return invalidParameter("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided.", secs)
	}
	return h.q.ChangeVisibility(ctx, name, handle, time.Duration(secs)*time.Second)
}

func (h *Handler) changeMessageVisibilityBatch(ctx context.Context, r *http.Request, body []byte) (any, error) {
	return h.eachEntry(ctx, body, func(name string, e handleEntry) error {
		if e.ReceiptHandle == "" {
			return nil
		}
		if e.VisibilityTimeout == nil {
			return missingParameter("VisibilityTimeout")
		}
		return h.changeVisibility(ctx, name, e.ReceiptHandle, *e.VisibilityTimeout)
	})
}
