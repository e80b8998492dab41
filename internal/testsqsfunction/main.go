// Command testsqsfunction is a Lambda function for Hearth's event source
// mapping tests: it takes an events.SQSEvent and answers an
// events.SQSEventResponse. A message whose body starts with "fail" is
// reported failed the first time it is received (its
// ApproximateReceiveCount is 1), and processed when it comes back; every
// other message is processed at once. Each processed message is written to
// its log as "processed <messageId> <body>", so a test can count them.
package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
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
