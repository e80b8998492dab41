// Command testsqsfunction is a Lambda function for Hearth's event source
// mapping tests: it takes an events.SQSEvent and answers an
// events.SQSEventResponse. A message whose body starts with "fail" is
// reported failed the first time it is received (its
// ApproximateReceiveCount is 1), and processed when it comes back; every
// other message is processed at once. Each processed message is written to
// its log as "processed <messageId> <body>", so a test can count them.
//
// Every record is also logged as "seen <messageId> <unix-nanos> <body>
// <clock-epoch>", the nanoseconds being the guest's wall clock when the
// handler started: `hearth bench events` measures from a send time in the
// body to that moment. The agent sets the wall clock from the host's at
// each boot, resume and clone, a little late; the epoch (the wall clock
// less the monotonic time since init) changes exactly when it is set, so
// the bench can tell apart, and calibrate, each setting of the clock.
package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// initTime carries the monotonic clock, which setting the wall clock
// does not move.
var initTime = time.Now()

func handle(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	// Read first, before any output: the moment the handler started.
	now := time.Now()
	started := now.UnixNano()
	epoch := started - int64(now.Sub(initTime))
	for _, r := range ev.Records {
		fmt.Printf("seen %s %d %s %d\n", r.MessageId, started, r.Body, epoch)
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
