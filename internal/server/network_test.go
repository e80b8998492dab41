package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
)

// signedPut sends a signed PUT with a JSON body; it returns the status
// and the body.
func (d *daemon) signedPut(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPut, d.url+path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	signRequest(t, r, body, d.creds, time.Now())
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestAPINetworkPolicy sets and reads a function's egress policy on a real
// daemon whose default policy allows private ranges; it boots no VM.
func TestAPINetworkPolicy(t *testing.T) {
	def := network.Policy{Enabled: true, AllowPrivate: true}
	d := startWith(t, server.Config{DataDir: t.TempDir(), KeepWarm: time.Minute, NetworkPolicy: &def})
	ctx := context.Background()
	created, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("net"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./examples/hello")}})
	if err != nil {
		t.Fatal(err)
	}
	var got network.Policy
	if err := json.Unmarshal(d.signedGet(t, "/hearth/v1/functions/net/network-policy"), &got); err != nil || !reflect.DeepEqual(got, def) {
		t.Fatalf("a new function's policy %+v (%v), want the daemon's %+v", got, err, def)
	}

	const lan = `{"Enabled":true,"Allow":[{"Cidr":"10.201.0.0/24","Ports":["80","8000-8100"]}],"Deny":[{"Cidr":"10.201.0.9","Protocol":"tcp"}],"AllowPrivate":false}`
	if code, b := d.signedPut(t, "/hearth/v1/functions/net/network-policy", lan); code != http.StatusOK || string(b) != lan+"\n" && string(b) != lan {
		t.Fatalf("PUT: %d %s", code, b)
	}
	if b := d.signedGet(t, "/hearth/v1/functions/net/network-policy"); strings.TrimSpace(string(b)) != lan {
		t.Fatalf("GET: %s\nwant %s", b, lan)
	}
	if b := d.signedGet(t, "/2015-03-31/functions/net/configuration"); !strings.Contains(string(b), `"HearthNetworkPolicy":`+lan) {
		t.Fatalf("configuration lacks the policy: %s", b)
	}
	cfg, err := d.client.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("net")})
	if err != nil || aws.ToString(cfg.RevisionId) == aws.ToString(created.RevisionId) {
		t.Fatalf("the policy change kept revision %s (%v): the old environments would stay", aws.ToString(created.RevisionId), err)
	}

	code, b := d.signedPut(t, "/hearth/v1/functions/net/network-policy", `{"Enabled":true,"Allow":[{"Cidr":"10.1.2.3/8"}]}`)
	if code != http.StatusBadRequest || !strings.Contains(string(b), "did you mean 10.0.0.0/8?") {
		t.Fatalf("a bad CIDR: %d %s", code, b)
	}
	if b := d.signedGet(t, "/hearth/v1/functions/net/network-policy"); strings.TrimSpace(string(b)) != lan {
		t.Fatalf("a refused policy changed the stored one: %s", b)
	}
	// The signature is checked, as on every Hearth route.
	resp, err := http.Get(d.url + "/hearth/v1/functions/net/network-policy")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an unsigned GET: %d", resp.StatusCode)
	}
}
