package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hearthdev/hearth/internal/microvm"
)

func newMVMAPI(t *testing.T) (*API, *FakeMicroVMs) {
	t.Helper()
	f := NewFakeMicroVMs()
	return New(Config{Invoker: noInvoker{}, Keys: testKeys{"AKIDTEST": "secret"}, Region: "local", MicroVMs: f}), f
}

func mustCall(t *testing.T, a *API, method, target string, body any, want int) map[string]any {
	t.Helper()
	code, h, b := call(t, a, method, target, body)
	if code != want {
		typ, _, msg := lambdaError(t, h, b)
		t.Fatalf("%s %s: %d %s %s, want %d", method, target, code, typ, msg, want)
	}
	out := map[string]any{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %q is not JSON: %v", method, target, b, err)
		}
	}
	return out
}

// keys are the members of m, for checking a shape against AWS's.
func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func checkKeys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("%s lacks %q; has %v", what, k, keys(m))
		}
	}
}

func createImage(t *testing.T, a *API, name string) {
	t.Helper()
	mustCall(t, a, "POST", "/2025-09-09/microvm-images", map[string]any{"name": name, "imageUri": "127.0.0.1:5000/agent:v1",
		"resources": []any{map[string]any{"minimumMemoryInMiB": 1024}},
		"hooks": map[string]any{"port": 9000, "microvmImageHooks": map[string]any{"ready": "ENABLED", "validate": "ENABLED"},
			"microvmHooks": map[string]any{"run": "ENABLED", "suspend": "ENABLED", "resume": "ENABLED", "terminate": "DISABLED"}}}, 200)
}

func TestMicrovmShapes(t *testing.T) {
	a, f := newMVMAPI(t)
	createImage(t, a, "agent")

	run := mustCall(t, a, "POST", "/2025-09-09/microvms", map[string]any{"imageIdentifier": "agent",
		"idlePolicy":     map[string]any{"maxIdleDurationSeconds": 300, "suspendedDurationSeconds": 86400, "autoResumeEnabled": true},
		"runHookPayload": `{"session":1}`, "clientToken": "t1"}, 200)
	checkKeys(t, "RunMicrovm", run, "microvmId", "state", "endpoint", "imageArn", "imageVersion", "idlePolicy", "startedAt")
	if run["state"] != "RUNNING" || run["imageVersion"] != "1" || run["imageArn"] != fakeARN+"agent" {
		t.Errorf("RunMicrovm = %v", run)
	}
	if _, ok := run["startedAt"].(float64); !ok {
		t.Errorf("startedAt %v is not epoch seconds (a JSON number)", run["startedAt"])
	}
	ip, _ := run["idlePolicy"].(map[string]any)
	if ip["maxIdleDurationSeconds"] != 300.0 || ip["suspendedDurationSeconds"] != 86400.0 || ip["autoResumeEnabled"] != true {
		t.Errorf("idlePolicy = %v", ip)
	}
	id := run["microvmId"].(string)

	// The same clientToken with the same input is the same MicroVM.
	again := mustCall(t, a, "POST", "/2025-09-09/microvms", map[string]any{"imageIdentifier": "agent",
		"idlePolicy":     map[string]any{"maxIdleDurationSeconds": 300, "suspendedDurationSeconds": 86400, "autoResumeEnabled": true},
		"runHookPayload": `{"session":1}`, "clientToken": "t1"}, 200)
	if again["microvmId"] != id {
		t.Errorf("same clientToken ran %v, then %v", id, again["microvmId"])
	}

	get := mustCall(t, a, "GET", "/2025-09-09/microvms/"+id, nil, 200)
	checkKeys(t, "GetMicrovm", get, "microvmId", "state", "endpoint", "imageArn", "imageVersion", "startedAt")
	if _, ok := get["terminatedAt"]; ok {
		t.Errorf("a running MicroVM has terminatedAt: %v", get)
	}

	list := mustCall(t, a, "GET", "/2025-09-09/microvms?maxResults=1", nil, 200)
	items, _ := list["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("ListMicrovms items = %v", list)
	}
	checkKeys(t, "MicrovmItem", items[0].(map[string]any), "microvmId", "state", "imageArn", "imageVersion", "startedAt")

	tok := mustCall(t, a, "POST", "/2025-09-09/microvms/"+id+"/auth-token", map[string]any{"expirationInMinutes": 60,
		"allowedPorts": []any{map[string]any{"port": 8080}, map[string]any{"range": map[string]any{"startPort": 9000, "endPort": 9010}}, map[string]any{"allPorts": map[string]any{}}}}, 200)
	at, _ := tok["authToken"].(map[string]any)
	if s, _ := at["X-aws-proxy-auth"].(string); s == "" {
		t.Errorf("CreateMicrovmAuthToken = %v", tok)
	}
	last := f.Tokens[len(f.Tokens)-1]
	wantPorts := []microvm.PortRange{{Start: 8080, End: 8080}, {Start: 9000, End: 9010}, {Start: 1, End: 65535}}
	if last.TTL != time.Hour || len(last.Ports) != 3 || last.Ports[0] != wantPorts[0] || last.Ports[1] != wantPorts[1] || last.Ports[2] != wantPorts[2] {
		t.Errorf("token minted with %+v", last)
	}

	// Suspend, resume and terminate answer 200 with an empty body.
	for _, op := range []struct{ method, path string }{{"POST", "/suspend"}, {"POST", "/resume"}, {"DELETE", ""}, {"DELETE", ""}} {
		code, _, b := call(t, a, op.method, "/2025-09-09/microvms/"+id+op.path, nil)
		if code != 200 || len(b) != 0 {
			t.Errorf("%s %s: %d %q", op.method, op.path, code, b)
		}
	}
	term := mustCall(t, a, "GET", "/2025-09-09/microvms/"+id, nil, 200)
	if term["state"] != "TERMINATED" || term["terminatedAt"] == nil {
		t.Errorf("after TerminateMicrovm: %v", term)
	}
}

func TestMicrovmImageShapes(t *testing.T) {
	a, _ := newMVMAPI(t)
	created := mustCall(t, a, "POST", "/2025-09-09/microvm-images", map[string]any{"name": "agent", "imageUri": "127.0.0.1:5000/agent:v1",
		"resources": []any{map[string]any{"minimumMemoryInMiB": 512}}, "environmentVariables": map[string]any{"A": "1"}}, 200)
	checkKeys(t, "CreateMicrovmImage", created, "imageArn", "imageVersion", "name", "state", "createdAt", "resources")
	if created["imageArn"] != fakeARN+"agent" || created["imageVersion"] != "1" || created["state"] != "CREATED" {
		t.Errorf("CreateMicrovmImage = %v", created)
	}
	updated := mustCall(t, a, "PUT", "/2025-09-09/microvm-images/agent", map[string]any{"imageUri": "127.0.0.1:5000/agent:broken"}, 200)
	if updated["imageVersion"] != "2" || updated["state"] != "UPDATE_FAILED" || updated["latestFailedImageVersion"] != "2" {
		t.Errorf("UpdateMicrovmImage = %v", updated)
	}
	img := mustCall(t, a, "GET", "/2025-09-09/microvm-images/agent", nil, 200)
	checkKeys(t, "GetMicrovmImage", img, "imageArn", "name", "state", "createdAt", "updatedAt", "latestFailedImageVersion")
	// A failed update leaves the last good version active, and says so.
	if img["latestActiveImageVersion"] != "1" || img["latestFailedImageVersion"] != "2" {
		t.Errorf("GetMicrovmImage after a failed update = %v, want active 1 and failed 2", img)
	}

	ver := mustCall(t, a, "GET", "/2025-09-09/microvm-images/agent/versions/1", nil, 200)
	checkKeys(t, "GetMicrovmImageVersion", ver, "imageArn", "imageVersion", "state", "status", "createdAt", "resources", "environmentVariables")
	if ver["state"] != "SUCCESSFUL" || ver["status"] != "ACTIVE" {
		t.Errorf("version 1 = %v", ver)
	}
	v2 := mustCall(t, a, "GET", "/2025-09-09/microvm-images/agent/versions/2", nil, 200)
	if v2["state"] != "FAILED" || v2["status"] != "INACTIVE" || v2["stateReason"] == nil {
		t.Errorf("version 2 = %v", v2)
	}
	vers := mustCall(t, a, "GET", "/2025-09-09/microvm-images/agent/versions?maxResults=1", nil, 200)
	if items, _ := vers["items"].([]any); len(items) != 1 || vers["nextToken"] != "1" {
		t.Errorf("ListMicrovmImageVersions = %v", vers)
	}
	imgs := mustCall(t, a, "GET", "/2025-09-09/microvm-images?nameFilter=age", nil, 200)
	items, _ := imgs["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("ListMicrovmImages = %v", imgs)
	}
	checkKeys(t, "MicrovmImageSummary", items[0].(map[string]any), "imageArn", "name", "state", "createdAt")
	del := mustCall(t, a, "DELETE", "/2025-09-09/microvm-images/agent", nil, 200)
	if del["imageIdentifier"] != "agent" || del["state"] != "DELETED" {
		t.Errorf("DeleteMicrovmImage = %v", del)
	}
	// Deleting a deleted image succeeds, as AWS documents.
	mustCall(t, a, "DELETE", "/2025-09-09/microvm-images/agent", nil, 200)
}

// TestMicrovmBadInput checks every refusal's type, status and message.
func TestMicrovmBadInput(t *testing.T) {
	a, f := newMVMAPI(t)
	createImage(t, a, "agent")
	run := mustCall(t, a, "POST", "/2025-09-09/microvms", map[string]any{"imageIdentifier": "agent"}, 200)
	id := run["microvmId"].(string)
	idle := func(m map[string]any) map[string]any {
		return map[string]any{"imageIdentifier": "agent", "idlePolicy": m}
	}
	ports := func(p ...any) map[string]any { return map[string]any{"expirationInMinutes": 5, "allowedPorts": p} }
	tests := []struct {
		name, method, path string
		body               any
		status             int
		typ, msg           string
	}{
		{"run without image", "POST", "/2025-09-09/microvms", map[string]any{}, 400, "ValidationException", "imageIdentifier is required"},
		{"run not JSON", "POST", "/2025-09-09/microvms", "{", 400, "ValidationException", "not valid JSON"},
		{"run unknown image", "POST", "/2025-09-09/microvms", map[string]any{"imageIdentifier": "nope"}, 404, "ResourceNotFoundException", "image nope"},
		{"run idle partial", "POST", "/2025-09-09/microvms", idle(map[string]any{"maxIdleDurationSeconds": 300}), 400, "ValidationException", "needs all of"},
		{"run idle short", "POST", "/2025-09-09/microvms", idle(map[string]any{"maxIdleDurationSeconds": 0, "suspendedDurationSeconds": 0, "autoResumeEnabled": false}), 400, "ValidationException", "at least 1"},
		{"run suspended negative", "POST", "/2025-09-09/microvms", idle(map[string]any{"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": -1, "autoResumeEnabled": false}), 400, "ValidationException", "suspendedDurationSeconds"},
		{"run max duration 0", "POST", "/2025-09-09/microvms", map[string]any{"imageIdentifier": "agent", "maximumDurationInSeconds": 0}, 400, "ValidationException", "maximumDurationInSeconds"},
		{"run payload too big", "POST", "/2025-09-09/microvms", map[string]any{"imageIdentifier": "agent", "runHookPayload": strings.Repeat("x", 16<<10+1)}, 400, "ValidationException", "runHookPayload is 16385 bytes"},
		{"run token too long", "POST", "/2025-09-09/microvms", map[string]any{"imageIdentifier": "agent", "clientToken": strings.Repeat("t", 129)}, 400, "ValidationException", "clientToken"},
		{"run body too big", "POST", "/2025-09-09/microvms", map[string]any{"imageIdentifier": "agent", "x": strings.Repeat("x", 300<<10)}, 400, "ValidationException", "larger than"},
		{"get unknown", "GET", "/2025-09-09/microvms/nope", nil, 404, "ResourceNotFoundException", "MicroVM nope"},
		{"list maxResults 0", "GET", "/2025-09-09/microvms?maxResults=0", nil, 400, "ValidationException", "maxResults"},
		{"list maxResults 51", "GET", "/2025-09-09/microvms?maxResults=51", nil, 400, "ValidationException", "maxResults"},
		{"list bad token", "GET", "/2025-09-09/microvms?nextToken=zz", nil, 400, "ValidationException", "nextToken"},
		{"resume running", "POST", "/2025-09-09/microvms/" + id + "/resume", nil, 409, "ConflictException", "is RUNNING, not SUSPENDED"},
		{"suspend unknown", "POST", "/2025-09-09/microvms/nope/suspend", nil, 404, "ResourceNotFoundException", ""},
		{"terminate unknown", "DELETE", "/2025-09-09/microvms/nope", nil, 404, "ResourceNotFoundException", ""},
		{"token no expiry", "POST", "/2025-09-09/microvms/" + id + "/auth-token", map[string]any{"allowedPorts": []any{map[string]any{"port": 1}}}, 400, "ValidationException", "expirationInMinutes"},
		{"token expiry 61", "POST", "/2025-09-09/microvms/" + id + "/auth-token", map[string]any{"expirationInMinutes": 61, "allowedPorts": []any{map[string]any{"port": 1}}}, 400, "ValidationException", "1 to 60"},
		{"token no ports", "POST", "/2025-09-09/microvms/" + id + "/auth-token", ports(), 400, "ValidationException", "at least one"},
		{"token two members", "POST", "/2025-09-09/microvms/" + id + "/auth-token", ports(map[string]any{"port": 1, "allPorts": map[string]any{}}), 400, "ValidationException", "exactly one"},
		{"token port 0", "POST", "/2025-09-09/microvms/" + id + "/auth-token", ports(map[string]any{"port": 0}), 400, "ValidationException", "port must be 1 to 65535"},
		{"token range reversed", "POST", "/2025-09-09/microvms/" + id + "/auth-token", ports(map[string]any{"range": map[string]any{"startPort": 9, "endPort": 8}}), 400, "ValidationException", "range"},
		{"token unknown", "POST", "/2025-09-09/microvms/nope/auth-token", ports(map[string]any{"port": 1}), 404, "ResourceNotFoundException", ""},
		{"image no name", "POST", "/2025-09-09/microvm-images", map[string]any{"imageUri": "a/b:c"}, 400, "ValidationException", "name is required"},
		{"image bad name", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "a b", "imageUri": "a/b:c"}, 400, "ValidationException", "name is required"},
		{"image no uri", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "x"}, 400, "ValidationException", "imageUri is required"},
		{"image bad uri", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "x", "imageUri": "UPPER:::"}, 400, "ValidationException", "not an OCI image reference"},
		{"image code artifact", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "x", "codeArtifact": map[string]any{"uri": "s3://b/k.zip"}}, 400, "ValidationException", "instead of codeArtifact"},
		{"image memory", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "x", "imageUri": "a/b:c", "resources": []any{map[string]any{"minimumMemoryInMiB": 64}}}, 400, "ValidationException", "minimumMemoryInMiB"},
		{"image hook state", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "x", "imageUri": "a/b:c", "hooks": map[string]any{"port": 9000, "microvmImageHooks": map[string]any{"ready": "ON"}}}, 400, "ValidationException", "ENABLED or DISABLED"},
		{"image hook port", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "x", "imageUri": "a/b:c", "hooks": map[string]any{"port": 0}}, 400, "ValidationException", "hooks.port"},
		{"image hook timeout", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "x", "imageUri": "a/b:c", "hooks": map[string]any{"port": 9000, "microvmImageHooks": map[string]any{"ready": "ENABLED"}, "microvmHooks": map[string]any{"run": "ENABLED", "runTimeoutInSeconds": 61}}}, 400, "ValidationException", "1 to 60 seconds"},
		{"image hooks without ready", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "x", "imageUri": "a/b:c", "hooks": map[string]any{"port": 9000, "microvmHooks": map[string]any{"run": "ENABLED"}}}, 400, "ValidationException", "need the ready hook"},
		{"image taken", "POST", "/2025-09-09/microvm-images", map[string]any{"name": "agent", "imageUri": "a/b:c"}, 409, "ConflictException", "image agent exists"},
		{"image unknown", "GET", "/2025-09-09/microvm-images/nope", nil, 404, "ResourceNotFoundException", ""},
		{"update unknown", "PUT", "/2025-09-09/microvm-images/nope", map[string]any{"imageUri": "a/b:c"}, 404, "ResourceNotFoundException", ""},
		{"update other name", "PUT", "/2025-09-09/microvm-images/agent", map[string]any{"name": "other", "imageUri": "a/b:c"}, 400, "ValidationException", "does not match"},
		{"delete image in use", "DELETE", "/2025-09-09/microvm-images/agent", nil, 409, "ConflictException", "runs from image agent"},
		{"version unknown", "GET", "/2025-09-09/microvm-images/agent/versions/9", nil, 404, "ResourceNotFoundException", ""},
		{"files no path", "GET", "/hearth/v1/microvms/" + id + "/files/stat", nil, 400, "ValidationException", "absolute path"},
		{"files relative path", "GET", "/hearth/v1/microvms/" + id + "/files/stat?path=etc", nil, 400, "ValidationException", "absolute path"},
		{"files not there", "GET", "/hearth/v1/microvms/" + id + "/files/stat?path=/nope", nil, 404, "ResourceNotFoundException", "/nope"},
		{"files unknown vm", "GET", "/hearth/v1/microvms/nope/files/stat?path=/x", nil, 404, "ResourceNotFoundException", ""},
		{"rm root", "DELETE", "/hearth/v1/microvms/" + id + "/files?path=/", nil, 400, "ValidationException", "root"},
		{"rm recursive bad", "DELETE", "/hearth/v1/microvms/" + id + "/files?path=/x&recursive=maybe", nil, 400, "ValidationException", "recursive"},
		{"exec unknown vm", "GET", "/hearth/v1/microvms/nope/exec", nil, 404, "ResourceNotFoundException", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any = tt.body
			if s, ok := tt.body.(string); ok {
				body = json.RawMessage(s)
			}
			code, h, b := rawCall(t, a, tt.method, tt.path, body)
			typ, _, msg := lambdaError(t, h, b)
			if code != tt.status || typ != tt.typ || !strings.Contains(msg, tt.msg) {
				t.Errorf("%d %s %q; want %d %s containing %q", code, typ, msg, tt.status, tt.typ, tt.msg)
			}
			if strings.Contains(msg, "Exception") {
				t.Errorf("message %q repeats the exception's name", msg)
			}
		})
	}
	if f.HeldNow() != 0 {
		t.Errorf("%d holds not released", f.HeldNow())
	}
}

// rawCall is call with a json.RawMessage body sent as is.
func rawCall(t *testing.T, a *API, method, target string, body any) (int, http.Header, []byte) {
	t.Helper()
	if raw, ok := body.(json.RawMessage); ok && !json.Valid(raw) {
		return callBytes(t, a, method, target, raw)
	}
	return call(t, a, method, target, body)
}

func TestMicrovmsAbsent(t *testing.T) {
	a := New(Config{Invoker: noInvoker{}, Keys: testKeys{"AKIDTEST": "secret"}, Region: "local"})
	code, h, b := call(t, a, "GET", "/2025-09-09/microvms", nil)
	typ, _, msg := lambdaError(t, h, b)
	if code != 404 || !strings.Contains(msg, "runs no MicroVMs") {
		t.Errorf("no MicroVMs: %d %s %s", code, typ, msg)
	}
}

// callBytes is call with b as the body, signed.
func callBytes(t *testing.T, a *API, method, target string, b []byte) (int, http.Header, []byte) {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:9000"+target, bytes.NewReader(b))
	sum := sha256.Sum256(b)
	creds := aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "lambda", "local", time.Now()); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	return w.Code, w.Header(), w.Body.Bytes()
}
