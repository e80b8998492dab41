package clustertest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/clustertest"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/testvm"
)

// hearthGet is a signed GET of one of h's /hearth/v1 routes.
func hearthGet(ctx context.Context, h *clustertest.Host, path string, out any) error {
	return hearthCall(ctx, h, http.MethodGet, path, nil, out)
}

// hearthCall is a signed request to one of h's /hearth/v1 routes; out,
// when not nil, gets the JSON answer.
func hearthCall(ctx context.Context, h *clustertest.Host, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, h.API+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	hexSum := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hexSum)
	creds := aws.Credentials{AccessKeyID: h.Keys.AccessKeyID, SecretAccessKey: h.Keys.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hexSum, "lambda", "local", time.Now()); err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// Invocations that ran on two hosts are all in the cost report of the
// third, which ran none, each under the host that ran it, exactly once.
func TestCostCoversTheCluster(t *testing.T) {
	testvm.Driver(t)
	zip, err := os.ReadFile(testvm.FunctionZip(t, "./examples/hello"))
	if err != nil {
		t.Fatal(err)
	}
	// hello2's code is another (counter ignores its payload), so that no
	// host has it ready when it cold-starts.
	counter, err := os.ReadFile(testvm.FunctionZip(t, "./examples/counter"))
	if err != nil {
		t.Fatal(err)
	}
	c := clustertest.Start(t, clustertest.Options{})
	a, b, cc := c.Host("a"), c.Host("b"), c.Host("c")
	ctx := context.Background()
	for fn, code := range map[string][]byte{"hello": zip, "hello2": counter} {
		if _, err := a.Lambda().CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(fn), Runtime: types.RuntimeProvidedal2023,
			Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: code}, Timeout: aws.Int32(60)}); err != nil {
			t.Fatal(err)
		}
	}
	ran := map[string]int{}
	// hello through b runs there (cold, then warm); hello2 through a
	// cold-starts on a host with no environment and its code ready
	// nowhere: a or c, never b, the most loaded.
	for range 2 {
		ran[invokeVia(t, b, "hello", []byte(`{"name":"b"}`)).node]++
	}
	ran[invokeVia(t, a, "hello2", []byte(`{"name":"a"}`)).node]++
	if ran["b"] != 2 || len(ran) != 2 {
		t.Fatalf("ran on %v; want hello twice on b and hello2 on another host", ran)
	}
	total := 3
	var rep meter.Report
	var hc api.HostCosts
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := hearthGet(ctx, cc, "/hearth/v1/cost", &rep); err != nil {
			t.Fatal(err)
		}
		if err := hearthGet(ctx, cc, "/hearth/v1/cost?by=host", &hc); err != nil {
			t.Fatal(err)
		}
		if rep.Total.Requests >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rep.Total.Requests != total {
		t.Fatalf("c's cost report: %d requests, want %d: %+v", rep.Total.Requests, total, rep.Functions)
	}
	got := map[string]int{}
	for _, h := range hc.Hosts {
		got[h.Host] = h.Total.Requests
	}
	for node, n := range ran {
		if got[node] != n {
			t.Errorf("c's cost by host: %v; want %v", got, ran)
		}
	}
	// And nothing arrives twice later.
	time.Sleep(time.Second)
	if err := hearthGet(ctx, cc, "/hearth/v1/cost", &rep); err != nil || rep.Total.Requests != total {
		t.Fatalf("later: %d requests, %v; want %d", rep.Total.Requests, err, total)
	}
}
