// Command testfn is a Lambda function for Hearth's tests: its event picks
// what it does, including every way a function can misbehave.
//
//	{"action":"echo", ...}          returns the event and its Lambda context
//	{"action":"panic"}              panics in the handler
//	{"action":"error"}              returns an error
//	{"action":"sleep","ms":N}       sleeps N ms, then answers
//	{"action":"flood","bytes":N}    writes N bytes to stdout, then answers
//	{"action":"exit","code":N}      exits the process mid-invocation
//	{"action":"big","bytes":N}      returns a string of N bytes
//	{"action":"random"}             returns 16 bytes from crypto/rand
//
// With TESTFN_INIT=exit the process exits during init; with
// TESTFN_INIT=initerror it reports an init error through the Runtime API.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action string `json:"action"`
	MS     int    `json:"ms"`
	Bytes  int    `json:"bytes"`
	Code   int    `json:"code"`
}

var inits int

func init() {
	inits++
	switch os.Getenv("TESTFN_INIT") {
	case "exit":
		fmt.Fprintln(os.Stderr, "testfn: exiting during init")
		os.Exit(3)
	case "initerror":
		body := `{"errorMessage":"cannot load configuration","errorType":"ConfigError"}`
		url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Lambda-Runtime-Function-Error-Type", "ConfigError")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		os.Exit(1)
	}
}

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var ev event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, err
	}
	fmt.Printf("testfn: action %q\n", ev.Action)
	switch ev.Action {
	case "panic":
		panic("testfn was asked to panic")
	case "error":
		return nil, errors.New("testfn was asked to fail")
	case "sleep":
		time.Sleep(time.Duration(ev.MS) * time.Millisecond)
		return map[string]int{"slept": ev.MS}, nil
	case "flood":
		line := bytes.Repeat([]byte("x"), 1023)
		line = append(line, '\n')
		for n := 0; n < ev.Bytes; n += len(line) {
			os.Stdout.Write(line)
		}
		return map[string]int{"flooded": ev.Bytes}, nil
	case "exit":
		os.Exit(ev.Code)
	case "big":
		return strings.Repeat("b", ev.Bytes), nil
	case "random":
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		return map[string]string{"random": hex.EncodeToString(b)}, nil
	}
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	return map[string]any{
		"event":        raw,
		"requestId":    lc.AwsRequestID,
		"functionArn":  lc.InvokedFunctionArn,
		"functionName": lambdacontext.FunctionName,
		"memoryMB":     lambdacontext.MemoryLimitInMB,
		"deadlineMs":   deadline.UnixMilli(),
		"inits":        inits,
		"env": map[string]string{
			"AWS_LAMBDA_RUNTIME_API":          os.Getenv("AWS_LAMBDA_RUNTIME_API"),
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
			"LAMBDA_TASK_ROOT":                os.Getenv("LAMBDA_TASK_ROOT"),
			"_HANDLER":                        os.Getenv("_HANDLER"),
			"TESTFN_VAR":                      os.Getenv("TESTFN_VAR"),
		},
		"cwd":     must(os.Getwd()),
		"nowUnix": time.Now().Unix(),
	}, nil
}

func must(s string, _ error) string { return s }

func main() { lambda.Start(handle) }
