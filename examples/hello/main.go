// Command hello is the smallest Hearth function: it greets the name in its
// event. It is an ordinary AWS Lambda function in Go, built as `bootstrap`
// for the provided runtime.
package main

import (
	"context"
	"fmt"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Name string `json:"name"`
}

type response struct {
	Message  string `json:"message"`
	Function string `json:"function"`
}

func handle(ctx context.Context, ev event) (response, error) {
	if ev.Name == "" {
		ev.Name = "world"
	}
	return response{
		Message:  fmt.Sprintf("Hello, %s!", ev.Name),
		Function: lambdacontext.FunctionName,
	}, nil
}

func main() { lambda.Start(handle) }
