package clustertest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/clustertest"
	"github.com/hearthdev/hearth/internal/testvm"
)

// invoked is one invocation's answer as a caller sees it.
type invoked struct {
	node, start string
	payload     []byte
	tail        string
}

func invokeVia(t *testing.T, h *clustertest.Host, fn string, payload []byte) invoked {
	t.Helper()
	out, err := h.Lambda().Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: payload,
		LogType: types.LogTypeTail})
	if err != nil {
		t.Fatalf("invoke %s through %s: %v", fn, h.Node, err)
	}
	if out.FunctionError != nil {
		t.Fatalf("invoke %s through %s: function error %s: %s", fn, h.Node, *out.FunctionError, out.Payload)
	}
	var got invoked
	got.payload = out.Payload
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		got.node = raw.Header.Get(api.NodeHeader)
		got.start = raw.Header.Get("X-Hearth-Start-Type")
	}
	tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
	got.tail = string(tail)
	return got
}

// Three hosts, each in its own namespace: a function created through a is
// invoked through b (cold, there: every host is as idle), then through c
// and a, which forward it to b's warm environment; b serves its own call
// locally; a payload past NATS's 1 MB max_payload goes both ways; a
// function URL made through a is served by every host's URL listener.
func TestThreeHostsRoute(t *testing.T) {
	testvm.Driver(t)
	zip, err := os.ReadFile(testvm.FunctionZip(t, "./examples/hello"))
	if err != nil {
		t.Fatal(err)
	}
	c := clustertest.Start(t, clustertest.Options{})
	a, b, cc := c.Host("a"), c.Host("b"), c.Host("c")
	ctx := context.Background()
	if _, err := a.Lambda().CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(60)}); err != nil {
		t.Fatal(err)
	}
	urlOut, err := a.Lambda().CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("hello"),
		AuthType: types.FunctionUrlAuthTypeNone})
	if err != nil {
		t.Fatal(err)
	}

	first := invokeVia(t, b, "hello", []byte(`{"name":"b"}`))
	if first.node != "b" || first.start != "cold" || !strings.Contains(string(first.payload), "Hello, b!") {
		t.Fatalf("first call through b: ran on %q (%s): %s", first.node, first.start, first.payload)
	}
	// The others learn of b's warm environment from its heartbeats.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, h := range []*clustertest.Host{a, cc} {
		err := c.WaitFor(wctx, h, "b warm with hello", func(st api.ClusterStatus) bool {
			for _, hs := range st.Hosts {
				if hs.Node == "b" && hs.Load.Functions["hello"].Warm > 0 {
					return true
				}
			}
			return false
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		via      *clustertest.Host
		wantNode string
	}{
		{cc, "b"}, // forwarded
		{a, "b"},  // forwarded (a made the function: it has no environment of it)
		{b, "b"},  // local
	}
	for _, tt := range tests {
		got := invokeVia(t, tt.via, "hello", []byte(fmt.Sprintf(`{"name":"via %s"}`, tt.via.Node)))
		if got.node != tt.wantNode || got.start != "warm" || !strings.Contains(string(got.payload), "Hello, via "+tt.via.Node+"!") {
			t.Errorf("through %s: ran on %q (%s), want %s warm: %s", tt.via.Node, got.node, got.start, tt.wantNode, got.payload)
		}
		if !strings.Contains(got.tail, "START RequestId: ") || !strings.Contains(got.tail, "REPORT RequestId: ") {
			t.Errorf("through %s: log tail %q", tt.via.Node, got.tail)
		}
	}
	// 2 MB each way: in parts over NATS.
	big := strings.Repeat("x", 2<<20)
	got := invokeVia(t, cc, "hello", []byte(`{"name":"`+big+`"}`))
	if got.node != "b" || !strings.Contains(string(got.payload), "Hello, "+big+"!") {
		t.Errorf("2 MB through c: ran on %q, %d bytes back", got.node, len(got.payload))
	}

	u, err := url.Parse(aws.ToString(urlOut.FunctionUrl))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Hosts {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/", nil)
		req.Host = u.Hostname()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("URL through %s: %v", h.Node, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var msg struct{ Message string }
		_ = json.Unmarshal(body, &msg)
		if resp.StatusCode != 200 || msg.Message != "Hello, world!" {
			t.Errorf("URL through %s: %d %s", h.Node, resp.StatusCode, body)
		}
	}
}
