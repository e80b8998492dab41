// Command stream answers a function URL in RESPONSE_STREAM mode: it sends
// its status and headers at once, then a line every ?ms= milliseconds
// (300 by default), ?n= times (5 by default). With ?fail=1 it fails after
// the first line.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(ctx context.Context, req events.LambdaFunctionURLRequest) (*events.LambdaFunctionURLStreamingResponse, error) {
	n, _ := strconv.Atoi(req.QueryStringParameters["n"])
	if n <= 0 {
		n = 5
	}
	ms, _ := strconv.Atoi(req.QueryStringParameters["ms"])
	if ms <= 0 {
		ms = 300
	}
	fail := req.QueryStringParameters["fail"] == "1"
	r, w := io.Pipe()
	go func() {
		for i := 1; i <= n; i++ {
			if i > 1 {
				time.Sleep(time.Duration(ms) * time.Millisecond)
			}
			fmt.Fprintf(w, "line %d at %s\n", i, time.Now().UTC().Format(time.RFC3339Nano))
			if fail {
				w.CloseWithError(errors.New("the stream broke"))
				return
			}
		}
		w.Close()
	}()
	return &events.LambdaFunctionURLStreamingResponse{
		StatusCode: 201,
		Headers:    map[string]string{"content-type": "text/plain", "x-streamed": "yes"},
		Body:       r,
	}, nil
}

func main() { lambda.Start(handle) }
