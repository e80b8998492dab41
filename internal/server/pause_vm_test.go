package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/server"
)

// Through the daemon: an idle environment is paused after keep-warm, the
// gauges count it, and the next call continues it (REPORT says paused),
// with the guest's memory.
func TestPausedThroughTheDaemon(t *testing.T) {
	d := startWith(t, server.Config{DataDir: t.TempDir(), KeepWarm: time.Second, KeepPaused: time.Hour})
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("counter"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./examples/counter")}}); err != nil {
		t.Fatal(err)
	}
	call := func() (int, string) {
		t.Helper()
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("counter"), Payload: []byte(`{}`), LogType: types.LogTypeTail})
		if err != nil {
			t.Fatal(err)
		}
		var c struct{ Count int }
		if err := json.Unmarshal(out.Payload, &c); err != nil {
			t.Fatalf("%s: %v", out.Payload, err)
		}
		tail, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
		_, start, _ := strings.Cut(string(tail), "Start Type: ")
		return c.Count, strings.TrimSpace(start)
	}
	if n, _ := call(); n != 1 {
		t.Fatalf("first call %d", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for d.srv.Scheduler().Stats().Paused != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := d.srv.Scheduler().Stats(); st.Paused != 1 || st.Warm != 0 || st.Suspended != 0 {
		t.Fatalf("after the keep-warm time: %+v, want one paused env", st)
	}
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "hearth_environments_paused 1") {
		t.Errorf("/metrics does not count the paused env")
	}
	// The first call reached a guest through the API: its host share is in.
	if !strings.Contains(string(b), "hearth_invocation_host_seconds_count 1") {
		t.Errorf("/metrics lacks the first call's host share")
	}
	if n, start := call(); n != 2 || start != "paused" {
		t.Fatalf("call to the paused env: count %d start %q, want 2 paused", n, start)
	}
}
