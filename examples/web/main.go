// Command web is a small web application behind a function URL, written
// with aws-lambda-go's function-URL event types:
//
//	/            an HTML page; with ?api=URL its script calls that URL (CORS)
//	/greet       {"message":"Hello, <name>!"}; sets a cookie, reports cookies
//	/echo        the request as the function decoded it
//	/binary      the request body, back, as binary
//	/big?bytes=N a body of N bytes
//	/fail        an error
//	/slow?ms=N   answers after N ms
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

const page = `<!doctype html>
<html><head><title>Hearth</title></head>
<body>
<h1>Served by a function URL</h1>
<p id="result">waiting</p>
<script>
const api = %q;
if (api) {
  fetch(api + "greet?name=Browser", {method: "GET"})
    .then(r => r.json())
    .then(j => { document.getElementById("result").textContent = j.message; })
    .catch(e => { document.getElementById("result").textContent = "failed: " + e; });
}
</script>
</body></html>
`

func jsonResponse(status int, v any) events.LambdaFunctionURLResponse {
	b, _ := json.Marshal(v)
	return events.LambdaFunctionURLResponse{StatusCode: status, Headers: map[string]string{"content-type": "application/json"}, Body: string(b)}
}

func handle(ctx context.Context, req events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	q := req.QueryStringParameters
	switch strings.TrimSuffix(req.RawPath, "/") {
	case "":
		return events.LambdaFunctionURLResponse{StatusCode: 200, Headers: map[string]string{"content-type": "text/html; charset=utf-8"},
			Body: fmt.Sprintf(page, html.EscapeString(q["api"]))}, nil
	case "/greet":
		name := q["name"]
		if name == "" {
			name = "world"
		}
		resp := jsonResponse(200, map[string]any{"message": "Hello, " + name + "!", "cookies": req.Cookies})
		resp.Cookies = []string{"visited=yes; Path=/", "name=" + name + "; Path=/"}
		return resp, nil
	case "/echo":
		return jsonResponse(200, req), nil
	case "/binary":
		return events.LambdaFunctionURLResponse{StatusCode: 200, Headers: map[string]string{"content-type": "application/octet-stream"},
			Body: req.Body, IsBase64Encoded: req.IsBase64Encoded}, nil
	case "/big":
		n, _ := strconv.Atoi(q["bytes"])
		return events.LambdaFunctionURLResponse{StatusCode: 200, Headers: map[string]string{"content-type": "text/plain"},
			Body: strings.Repeat("x", n)}, nil
	case "/fail":
		return events.LambdaFunctionURLResponse{}, errors.New("this path always fails")
	case "/slow":
		ms, _ := strconv.Atoi(q["ms"])
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return jsonResponse(200, map[string]int{"slept": ms}), nil
	}
	return jsonResponse(404, map[string]string{"error": "no route " + req.RawPath}), nil
}

func main() { lambda.Start(handle) }
