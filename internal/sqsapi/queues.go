package sqsapi

import (
	"context"
	"encoding/base64"
	"net/http"
	"sort"
	"strconv"

	"github.com/hearthdev/hearth/internal/queue"
)

func (h *Handler) createQueue(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct {
		QueueName  string
		Attributes map[string]string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.QueueName == "" {
		return nil, missingParameter("QueueName")
	}
	q, err := h.q.Create(ctx, in.QueueName, in.Attributes)
	if err != nil {
		return nil, err
	}
	return map[string]string{"QueueUrl": queueURL(r, q.Name)}, nil
}

func (h *Handler) getQueueURL(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct{ QueueName string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.QueueName == "" {
		return nil, missingParameter("QueueName")
	}
	q, err := h.q.Get(ctx, in.QueueName)
	if err != nil {
		return nil, err
	}
	return map[string]string{"QueueUrl": queueURL(r, q.Name)}, nil
}

// page cuts a sorted list of names after the NextToken (the last name
// given, in base64) to at most maxResults (1–1000); without maxResults,
// all of them, up to 1000, and no token.
func page(names []string, nextToken string, maxResults *int) ([]string, string, error) {
	if maxResults != nil && (*maxResults < 1 || *maxResults > 1000) {
		return nil, "", invalidParameter("Value %d for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000.", *maxResults)
	}
	if nextToken != "" {
		after, err := base64.RawURLEncoding.DecodeString(nextToken)
		if err != nil {
			return nil, "", invalidParameter("Invalid NextToken value.")
		}
		i := sort.SearchStrings(names, string(after)+"\x00")
		names = names[i:]
	}
	limit := 1000
	if maxResults != nil {
		limit = *maxResults
	}
	if len(names) <= limit {
		return names, "", nil
	}
	names = names[:limit]
	if maxResults == nil {
		return names, "", nil
	}
	return names, base64.RawURLEncoding.EncodeToString([]byte(names[len(names)-1])), nil
}

func (h *Handler) listQueues(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct {
		QueueNamePrefix string
		NextToken       string
		MaxResults      *int
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	qs, err := h.q.List(ctx, in.QueueNamePrefix)
	if err != nil {
		return nil, err
	}
	return urlPage(r, qs, in.NextToken, in.MaxResults, "QueueUrls")
}

func urlPage(r *http.Request, qs []queue.Queue, nextToken string, maxResults *int, member string) (any, error) {
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = q.Name
	}
	names, next, err := page(names, nextToken, maxResults)
	if err != nil {
		return nil, err
	}
	urls := make([]string, len(names))
	for i, n := range names {
		urls[i] = queueURL(r, n)
	}
	out := map[string]any{member: urls}
	if next != "" {
		out["NextToken"] = next
	}
	return out, nil
}

func (h *Handler) listDeadLetterSourceQueues(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct {
		QueueUrl   string
		NextToken  string
		MaxResults *int
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	name, err := queueName(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	qs, err := h.q.DeadLetterSources(ctx, name)
	if err != nil {
		return nil, err
	}
	// The model names this member queueUrls, in lower case.
	return urlPage(r, qs, in.NextToken, in.MaxResults, "queueUrls")
}

// queueRequest is a request that names only its queue.
func queueRequest(body []byte) (string, error) {
	var in struct{ QueueUrl string }
	if err := decode(body, &in); err != nil {
		return "", err
	}
	return queueName(in.QueueUrl)
}

func (h *Handler) deleteQueue(ctx context.Context, r *http.Request, body []byte) (any, error) {
	name, err := queueRequest(body)
	if err != nil {
		return nil, err
	}
	return struct{}{}, h.q.DeleteQueue(ctx, name)
}

func (h *Handler) purgeQueue(ctx context.Context, r *http.Request, body []byte) (any, error) {
	name, err := queueRequest(body)
	if err != nil {
		return nil, err
	}
	return struct{}{}, h.q.Purge(ctx, name)
}

// computed are the attributes GetQueueAttributes reports besides the
// settings.
var computed = []string{"QueueArn", "CreatedTimestamp", "LastModifiedTimestamp", "ApproximateNumberOfMessages",
	"ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"}

func (h *Handler) getQueueAttributes(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct {
		QueueUrl       string
		AttributeNames []string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	name, err := queueName(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	q, err := h.q.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	all := q.Attributes.Strings()
	known := func(n string) bool {
		_, ok := all[n]
		return ok || n == "All" || n == "RedrivePolicy" || n == "Policy" || n == "RedriveAllowPolicy" ||
			n == "KmsMasterKeyId" || n == "KmsDataKeyReusePeriodSeconds" || n == "SqsManagedSseEnabled" || contains(computed, n)
	}
	want := map[string]bool{}
	for _, n := range in.AttributeNames {
		if !known(n) {
			return nil, &apiError{status: 400, typ: "com.amazonaws.sqs#InvalidAttributeName", query: "InvalidAttributeName", msg: "Unknown Attribute " + n + "."}
		}
		want[n] = true
	}
	if len(want) == 0 {
		return map[string]any{}, nil
	}
	all["QueueArn"] = q.ARN
	all["CreatedTimestamp"] = strconv.FormatInt(q.Created.Unix(), 10)
	all["LastModifiedTimestamp"] = strconv.FormatInt(q.Modified.Unix(), 10)
	if want["All"] || want["ApproximateNumberOfMessages"] || want["ApproximateNumberOfMessagesNotVisible"] || want["ApproximateNumberOfMessagesDelayed"] {
		st, err := h.q.Stats(ctx, name)
		if err != nil {
			return nil, err
		}
		all["ApproximateNumberOfMessages"] = strconv.Itoa(st.Visible)
		all["ApproximateNumberOfMessagesNotVisible"] = strconv.Itoa(st.InFlight)
		all["ApproximateNumberOfMessagesDelayed"] = strconv.Itoa(st.Delayed)
	}
	out := map[string]string{}
	for n, v := range all {
		if want["All"] || want[n] {
			out[n] = v
		}
	}
	return map[string]any{"Attributes": out}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (h *Handler) setQueueAttributes(ctx context.Context, r *http.Request, body []byte) (any, error) {
	var in struct {
		QueueUrl   string
		Attributes map[string]string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	name, err := queueName(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if len(in.Attributes) == 0 {
		return nil, missingParameter("Attributes")
	}
	for n := range in.Attributes {
		if contains(computed, n) {
			return nil, &apiError{status: 400, typ: "com.amazonaws.sqs#InvalidAttributeName", query: "InvalidAttributeName",
				msg: "Unknown Attribute " + n + "."}
		}
	}
	return struct{}{}, h.q.SetAttributes(ctx, name, in.Attributes)
}
