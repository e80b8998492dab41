package clustertest_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/clustertest"
	"github.com/hearthdev/hearth/internal/testvm"
)

// A cold start goes to the host that has the function's code image built:
// a function created through a runs first on b (cold: b fetches its zip
// and builds its initramfs); b's environment is then retired (a
// configuration update through b), so no host has one; a cold start asked
// through a, which would run on a on an even tie, goes to b, which tells
// in its heartbeat that it has the code ready.
func TestColdStartGoesWhereTheCodeIsReady(t *testing.T) {
	testvm.Driver(t)
	zip, err := os.ReadFile(testvm.FunctionZip(t, "./examples/hello"))
	if err != nil {
		t.Fatal(err)
	}
	c := clustertest.Start(t, clustertest.Options{})
	a, b := c.Host("a"), c.Host("b")
	ctx := context.Background()
	out, err := a.Lambda().CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(60)})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := base64.StdEncoding.DecodeString(aws.ToString(out.CodeSha256))
	if err != nil {
		t.Fatal(err)
	}
	key := cluster.CodeKey(hex.EncodeToString(sum), nil)

	t0 := time.Now()
	first := invokeVia(t, b, "hello", []byte(`{"name":"b"}`))
	unready := time.Since(t0)
	if first.node != "b" || first.start != "cold" {
		t.Fatalf("first call through b: ran on %q (%s)", first.node, first.start)
	}
	// Retired on b: the next call is a cold start wherever it goes.
	if _, err := b.Lambda().UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("hello"),
		Description: aws.String("v2")}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = c.WaitFor(wctx, a, "b with hello's code ready and no environment of it", func(st api.ClusterStatus) bool {
		for _, h := range st.Hosts {
			if h.Node == "b" {
				return h.Load.Ready.HasCode(key) && h.Load.Functions["hello"] == (cluster.FunctionLoad{})
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		got, err := a.Lambda().GetFunction(wctx, &lambda.GetFunctionInput{FunctionName: aws.String("hello")})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(got.Configuration.Description) == "v2" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.Hosts {
		if h.Node != "b" && h.Load.Ready.HasCode(key) {
			t.Fatalf("host %s has hello's code ready too: the test shows nothing", h.Node)
		}
		t.Logf("host %s: in flight %d, memory %d/%d MB, CPU %.2f, ready %+v", h.Node, h.Load.InFlight, h.Load.MemoryMB, h.Load.MemoryLimitMB, h.Load.CPU, h.Load.Ready)
	}

	t0 = time.Now()
	second := invokeVia(t, a, "hello", []byte(`{"name":"a"}`))
	ready := time.Since(t0)
	if second.node != "b" || second.start != "cold" {
		t.Fatalf("a cold start through a ran on %q (%s); want b, which has the code ready", second.node, second.start)
	}
	t.Logf("cold start on b: %v the first time (zip fetched, initramfs built), %v through a with the code ready there", unready.Round(time.Millisecond), ready.Round(time.Millisecond))
}
