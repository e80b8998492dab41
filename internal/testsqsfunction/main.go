// Command testsqsfunction is a Lambda function for Hearth's event source
// mapping tests: it takes an events.SQSEvent and answers an
// events.SQSEventResponse. A message whose body starts with "fail" is
// reported failed the first time it is received (its
// ApproximateReceiveCount is 1), and processed when it comes back; every
// other message is processed at once. Each processed message is written to
// its log as "processed <messageId> <body>", so a test can count them.
//
// Every record is also logged as "seen <messageId> <unix-nanos> <body>",
// the nanoseconds being the guest's wall clock when the handler started
// (the agent sets it from the host's at each boot and resume): `hearth
// bench events` measures from a send time in the body to that moment.
package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	// Read first, before any output: the moment the handler started.
	started := time.Now().UnixNano()
	for _, r := range ev.Records {
		fmt.Printf("seen %s %d %s\n", r.MessageId, started, r.Body)
	}
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for _, r := range ev.Records {
		if strings.HasPrefix(r.Body, "fail") && r.Attributes["ApproximateReceiveCount"] == "1" {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			fmt.Printf("failed %s %s\n", r.MessageId, r.Body)
			continue
		}
		fmt.Printf("processed %s %s %s %s\n", r.MessageId, r.Body, r.EventSource, r.EventSourceARN)
	}
	return resp, nil
}

func main() { lambda.Start(handle) }
