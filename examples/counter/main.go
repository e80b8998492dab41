// Command counter keeps a count in memory and returns it on every call: the
// count survives as long as the execution environment does, including
// across a suspend and a resume.
package main

import (
	"context"
	"os"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

var (
	count    atomic.Int64
	initedAt = time.Now()
)

type response struct {
	Count int64 `json:"count"`
	// InitedAt tells a resumed environment from a fresh one.
	InitedAt string `json:"initedAt"`
	PID      int    `json:"pid"`
}

func handle(ctx context.Context) (response, error) {
	return response{Count: count.Add(1), InitedAt: initedAt.UTC().Format(time.RFC3339Nano), PID: os.Getpid()}, nil
}

func main() { lambda.Start(handle) }
