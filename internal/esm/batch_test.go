package esm

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

func TestOutcome(t *testing.T) {
	batch := []events.SQSMessage{{MessageId: "a", ReceiptHandle: "ra"}, {MessageId: "b", ReceiptHandle: "rb"}, {MessageId: "c", ReceiptHandle: "rc"}}
	all := []string{"ra", "rb", "rc"}
	tests := []struct {
		name        string
		payload     string
		funcErr     bool
		report      bool
		wantDelete  []string
		wantFailed  int
		wantInvalid bool
	}{
		{"success", `"ok"`, false, false, all, 0, false},
		{"a function error", `{"errorMessage":"x"}`, true, false, nil, 3, false},
		{"a function error, reporting", `{"errorMessage":"x"}`, true, true, nil, 3, false},
		{"no answer", ``, false, true, all, 0, false},
		{"null", `null`, false, true, all, 0, false},
		{"{}", `{}`, false, true, all, 0, false},
		{"null list", `{"batchItemFailures":null}`, false, true, all, 0, false},
		{"empty list", `{"batchItemFailures":[]}`, false, true, all, 0, false},
		{"one failed", `{"batchItemFailures":[{"itemIdentifier":"b"}]}`, false, true, []string{"ra", "rc"}, 1, false},
		{"two failed, one twice", `{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"c"},{"itemIdentifier":"a"}]}`, false, true, []string{"rb"}, 2, false},
		{"all failed", `{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"b"},{"itemIdentifier":"c"}]}`, false, true, nil, 3, false},
		{"not JSON", `not json`, false, true, nil, 3, true},
		{"a string", `"ok"`, false, true, nil, 3, true},
		{"a list", `[]`, false, true, nil, 3, true},
		{"an empty identifier", `{"batchItemFailures":[{"itemIdentifier":""}]}`, false, true, nil, 3, true},
		{"a null identifier", `{"batchItemFailures":[{"itemIdentifier":null}]}`, false, true, nil, 3, true},
		{"a bad key name", `{"batchItemFailures":[{"itemidentifier":"a"}]}`, false, true, nil, 3, true},
		{"an unknown identifier", `{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"zz"}]}`, false, true, nil, 3, true},
		{"a number identifier", `{"batchItemFailures":[{"itemIdentifier":7}]}`, false, true, nil, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := outcome(batch, []byte(tt.payload), tt.funcErr, tt.report)
			if !slices.Equal(o.Delete, tt.wantDelete) || o.Failed != tt.wantFailed || (o.Invalid != "") != tt.wantInvalid {
				t.Errorf("outcome = %+v, want delete %v, %d failed, invalid %v", o, tt.wantDelete, tt.wantFailed, tt.wantInvalid)
			}
		})
	}
}

// The record has every field of Lambda's SQS record, under aws-lambda-go's
// names, and the MD5 of the message attributes as SQS computes it.
func TestRecordShape(t *testing.T) {
	m := Message{MessageID: "id-1", ReceiptHandle: "rh-1", Body: "hi", MD5OfBody: "49f68a5c8493ec2c0bf489821c21fc3b",
		MD5OfMessageAttributes: "8991a9f5f691296fdb6425edc0e57109",
		Attributes:             map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000", "SenderId": "hearth", "ApproximateFirstReceiveTimestamp": "1700000000001"},
		MessageAttributes:      map[string]MessageAttribute{"color": {DataType: "String", StringValue: "blue"}, "raw": {DataType: "Binary", BinaryValue: []byte{1, 2}}}}
	b, err := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{record(m, "arn:aws:sqs:local:000000000000:q", "local")}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Records []map[string]any `json:"Records"`
	}
	if err := json.Unmarshal(b, &got); err != nil || len(got.Records) != 1 {
		t.Fatalf("%s: %v", b, err)
	}
	r := got.Records[0]
	want := map[string]any{"messageId": "id-1", "receiptHandle": "rh-1", "body": "hi", "md5OfBody": "49f68a5c8493ec2c0bf489821c21fc3b",
		"eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:local:000000000000:q", "awsRegion": "local"}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %v, want %v", k, r[k], v)
		}
	}
	if a := r["attributes"].(map[string]any); a["ApproximateReceiveCount"] != "1" || a["SenderId"] != "hearth" {
		t.Errorf("attributes %v", a)
	}
	color := r["messageAttributes"].(map[string]any)["color"].(map[string]any)
	if color["stringValue"] != "blue" || color["dataType"] != "String" || fmt.Sprint(color["stringListValues"]) != "[]" {
		t.Errorf("messageAttributes.color %v", color)
	}
	raw := r["messageAttributes"].(map[string]any)["raw"].(map[string]any)
	if raw["binaryValue"] != "AQI=" || raw["stringValue"] != nil {
		t.Errorf("messageAttributes.raw %v", raw)
	}
	if r["md5OfMessageAttributes"] != "8991a9f5f691296fdb6425edc0e57109" {
		t.Errorf("md5OfMessageAttributes %v", r["md5OfMessageAttributes"])
	}
}
