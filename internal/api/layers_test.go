package api

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// zipOf is a zip of the files given (name, body, name, body…).
func zipOf(t *testing.T, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		w, err := zw.Create(files[i])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, files[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zerosZip is a small zip of one file of size zero bytes, which counts
// as size towards the 250 MB limit.
func zerosZip(t *testing.T, name string, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const layerArnPrefix = "arn:aws:lambda:local:000000000000:layer:"

type layerOut struct {
	LayerArn, LayerVersionArn, Description, CreatedDate, LicenseInfo string
	Version                                                          int64
	CompatibleRuntimes, CompatibleArchitectures                      []string
	Content                                                          *struct {
		Location, CodeSha256 string
		CodeSize             int64
	}
}

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}

func publish(t *testing.T, a *API, name string, body map[string]any) layerOut {
	t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	if _, ok := body["Content"]; !ok {
		body["Content"] = map[string]any{"ZipFile": zipOf(t, "python/"+name+".py", "x = 1\n")}
	}
	code, h, b := call(t, a, "POST", "/2018-10-31/layers/"+name+"/versions", body)
	if code != http.StatusCreated {
		typ, _, msg := lambdaError(t, h, b)
		t.Fatalf("publish %s: %d %s %s", name, code, typ, msg)
	}
	return decodeJSON[layerOut](t, b)
}

// wantError checks an answer is the Lambda error typ with status and a
// message holding msg.
func wantError(t *testing.T, code int, h http.Header, b []byte, status int, typ, msg string) {
	t.Helper()
	gotType, _, gotMsg := lambdaError(t, h, b)
	if code != status || gotType != typ || !strings.Contains(gotMsg, msg) {
		t.Errorf("got %d %s %q, want %d %s with %q", code, gotType, gotMsg, status, typ, msg)
	}
}

func TestPublishLayerVersion(t *testing.T) {
	a := newTestAPI(t)
	content := zipOf(t, "python/deps.py", "x = 1\n", "bin/tool", "#!/bin/sh\n")
	got := publish(t, a, "deps", map[string]any{"Content": map[string]any{"ZipFile": content}, "Description": "shared deps",
		"CompatibleRuntimes": []string{"python3.11", "nodejs18.x"}, "CompatibleArchitectures": []string{"x86_64"}, "LicenseInfo": "MIT"})
	if got.LayerArn != layerArnPrefix+"deps" || got.LayerVersionArn != layerArnPrefix+"deps:1" || got.Version != 1 ||
		got.Description != "shared deps" || got.LicenseInfo != "MIT" || got.CreatedDate == "" ||
		strings.Join(got.CompatibleRuntimes, ",") != "python3.11,nodejs18.x" || strings.Join(got.CompatibleArchitectures, ",") != "x86_64" {
		t.Errorf("publish answered %+v", got)
	}
	if got.Content == nil || got.Content.CodeSize != int64(len(content)) || got.Content.CodeSha256 == "" || got.Content.Location != "" {
		t.Errorf("Content %+v", got.Content)
	}
	// The layer's ARN names it as well as its name does.
	if again := publish(t, a, layerArnPrefix+"deps", nil); again.Version != 2 || again.LayerVersionArn != layerArnPrefix+"deps:2" {
		t.Errorf("second version %+v", again)
	}
	bigText := strings.Repeat("x", 257)
	tests := []struct {
		name   string
		layer  string
		body   map[string]any
		status int
		typ    string
		msg    string
	}{
		{"no content", "l", map[string]any{}, 400, "InvalidParameterValueException", "Content.ZipFile is required"},
		{"S3 content", "l", map[string]any{"Content": map[string]any{"S3Bucket": "b", "S3Key": "k"}}, 400, "InvalidParameterValueException", "only Content.ZipFile"},
		{"not a zip", "l", map[string]any{"Content": map[string]any{"ZipFile": []byte("not a zip")}}, 400, "InvalidParameterValueException", "Could not unzip"},
		{"an entry outside /opt", "l", map[string]any{"Content": map[string]any{"ZipFile": zipOf(t, "../etc/passwd", "x")}}, 400, "InvalidParameterValueException", "outside the task root"},
		{"an unknown runtime", "l", map[string]any{"Content": map[string]any{"ZipFile": content}, "CompatibleRuntimes": []string{"cobol85"}}, 400, "InvalidParameterValueException", `"cobol85"`},
		{"16 runtimes", "l", map[string]any{"Content": map[string]any{"ZipFile": content}, "CompatibleRuntimes": make([]string, 16)}, 400, "InvalidParameterValueException", "at most 15"},
		{"an unknown architecture", "l", map[string]any{"Content": map[string]any{"ZipFile": content}, "CompatibleArchitectures": []string{"mips"}}, 400, "InvalidParameterValueException", "[x86_64, arm64]"},
		{"a long description", "l", map[string]any{"Content": map[string]any{"ZipFile": content}, "Description": bigText}, 400, "InvalidParameterValueException", "Description"},
		{"a bad name", "no.dots", map[string]any{"Content": map[string]any{"ZipFile": content}}, 400, "InvalidParameterValueException", "LayerName"},
		{"another region's ARN", "arn:aws:lambda:us-east-1:000000000000:layer:l", map[string]any{"Content": map[string]any{"ZipFile": content}}, 404, "ResourceNotFoundException", "does not exist"},
		{"not JSON", "l", nil, 400, "InvalidParameterValueException", "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any = tt.body
			if tt.body == nil {
				body = "{"
			}
			code, h, b := call(t, a, "POST", "/2018-10-31/layers/"+tt.layer+"/versions", body)
			wantError(t, code, h, b, tt.status, tt.typ, tt.msg)
		})
	}
	// Nothing refused took a number.
	if next := publish(t, a, "l", nil); next.Version != 1 {
		t.Errorf("after refusals the first version of l is %d", next.Version)
	}
}

func TestGetLayerVersion(t *testing.T) {
	a := newTestAPI(t)
	pub := publish(t, a, "deps", map[string]any{"Description": "d"})
	tests := []struct {
		name   string
		target string
		status int
		typ    string
		msg    string
	}{
		{"by name", "/2018-10-31/layers/deps/versions/1", 200, "", ""},
		{"by the layer's ARN", "/2018-10-31/layers/" + layerArnPrefix + "deps/versions/1", 200, "", ""},
		{"by the version's ARN", "/2018-10-31/layers?find=LayerVersion&Arn=" + layerArnPrefix + "deps:1", 200, "", ""},
		{"a missing version", "/2018-10-31/layers/deps/versions/2", 404, "ResourceNotFoundException", "does not exist"},
		{"a missing layer", "/2018-10-31/layers/nope/versions/1", 404, "ResourceNotFoundException", "does not exist"},
		{"a version that is no number", "/2018-10-31/layers/deps/versions/x", 400, "InvalidParameterValueException", "VersionNumber"},
		{"version 0", "/2018-10-31/layers/deps/versions/0", 400, "InvalidParameterValueException", "VersionNumber"},
		{"a missing version's ARN", "/2018-10-31/layers?find=LayerVersion&Arn=" + layerArnPrefix + "deps:9", 404, "ResourceNotFoundException", "does not exist"},
		{"another account's ARN", "/2018-10-31/layers?find=LayerVersion&Arn=arn:aws:lambda:local:123456789012:layer:deps:1", 404, "ResourceNotFoundException", "does not exist"},
		{"an ARN without a version", "/2018-10-31/layers?find=LayerVersion&Arn=" + layerArnPrefix + "deps", 400, "InvalidParameterValueException", "not a layer version ARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, b := call(t, a, "GET", tt.target, nil)
			if tt.status != 200 {
				wantError(t, code, h, b, tt.status, tt.typ, tt.msg)
				return
			}
			got := decodeJSON[layerOut](t, b)
			if code != 200 || got.LayerVersionArn != pub.LayerVersionArn || got.LayerArn != pub.LayerArn || got.Description != "d" ||
				got.Content == nil || got.Content.CodeSha256 != pub.Content.CodeSha256 {
				t.Errorf("%d %s", code, b)
			}
		})
	}
}

type listLayersOut struct {
	Layers []struct {
		LayerName, LayerArn   string
		LatestMatchingVersion layerOut
	}
	NextMarker string
}

func TestListLayers(t *testing.T) {
	a := newTestAPI(t)
	publish(t, a, "a", map[string]any{"CompatibleRuntimes": []string{"python3.11"}})
	publish(t, a, "a", map[string]any{"CompatibleRuntimes": []string{"nodejs18.x"}, "CompatibleArchitectures": []string{"arm64"}})
	publish(t, a, "b", map[string]any{"CompatibleRuntimes": []string{"python3.11"}, "CompatibleArchitectures": []string{"x86_64"}})
	publish(t, a, "c", nil)
	tests := []struct {
		name     string
		query    string
		want     string // name:version, …
		wantNext string
	}{
		{"all, latest of each", "", "a:2,b:1,c:1", ""},
		{"by runtime: the latest that matches", "?CompatibleRuntime=python3.11", "a:1,b:1", ""},
		{"by architecture", "?CompatibleArchitecture=arm64", "a:2", ""},
		{"both", "?CompatibleRuntime=python3.11&CompatibleArchitecture=x86_64", "b:1", ""},
		{"first page", "?MaxItems=2", "a:2,b:1", "b"},
		{"next page", "?MaxItems=2&Marker=b", "c:1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, b := call(t, a, "GET", "/2018-10-31/layers"+tt.query, nil)
			out := decodeJSON[listLayersOut](t, b)
			var got []string
			for _, l := range out.Layers {
				if l.LayerArn != layerArnPrefix+l.LayerName || l.LatestMatchingVersion.LayerVersionArn == "" || l.LatestMatchingVersion.Content != nil {
					t.Errorf("item %+v", l)
				}
				got = append(got, l.LayerName+":"+string(rune('0'+l.LatestMatchingVersion.Version)))
			}
			if code != 200 || strings.Join(got, ",") != tt.want || out.NextMarker != tt.wantNext {
				t.Errorf("got %d %v next %q, want %s next %q", code, got, out.NextMarker, tt.want, tt.wantNext)
			}
		})
	}
	for _, q := range []string{"?MaxItems=0", "?MaxItems=51", "?CompatibleRuntime=cobol85", "?CompatibleArchitecture=mips"} {
		code, h, b := call(t, a, "GET", "/2018-10-31/layers"+q, nil)
		wantError(t, code, h, b, 400, "InvalidParameterValueException", "")
	}
}

func TestListLayerVersions(t *testing.T) {
	a := newTestAPI(t)
	for i := 0; i < 3; i++ {
		publish(t, a, "deps", map[string]any{"CompatibleRuntimes": []string{[]string{"python3.11", "nodejs18.x", "python3.11"}[i]}})
	}
	tests := []struct {
		name     string
		layer    string
		query    string
		want     string
		wantNext string
	}{
		{"newest first", "deps", "", "3,2,1", ""},
		{"filtered", "deps", "?CompatibleRuntime=python3.11", "3,1", ""},
		{"first page", "deps", "?MaxItems=2", "3,2", "2"},
		{"next page", "deps", "?MaxItems=2&Marker=2", "1", ""},
		{"a layer that does not exist", "nope", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, b := call(t, a, "GET", "/2018-10-31/layers/"+tt.layer+"/versions"+tt.query, nil)
			out := decodeJSON[struct {
				LayerVersions []layerOut
				NextMarker    string
			}](t, b)
			var got []string
			for _, v := range out.LayerVersions {
				got = append(got, string(rune('0'+v.Version)))
			}
			if code != 200 || out.LayerVersions == nil || strings.Join(got, ",") != tt.want || out.NextMarker != tt.wantNext {
				t.Errorf("got %d %s, want %s next %q", code, b, tt.want, tt.wantNext)
			}
		})
	}
	code, h, b := call(t, a, "GET", "/2018-10-31/layers/deps/versions?Marker=x", nil)
	wantError(t, code, h, b, 400, "InvalidParameterValueException", "Marker")
}

func TestDeleteLayerVersion(t *testing.T) {
	a := newTestAPI(t)
	publish(t, a, "deps", nil)
	publish(t, a, "deps", nil)
	for _, target := range []string{"/2018-10-31/layers/deps/versions/2", "/2018-10-31/layers/deps/versions/2", "/2018-10-31/layers/nope/versions/1"} {
		if code, _, b := call(t, a, "DELETE", target, nil); code != http.StatusNoContent {
			t.Errorf("DELETE %s: %d %s, want 204 (as Lambda, for a version that is not there too)", target, code, b)
		}
	}
	code, h, b := call(t, a, "GET", "/2018-10-31/layers/deps/versions/2", nil)
	wantError(t, code, h, b, 404, "ResourceNotFoundException", "does not exist")
	if v := publish(t, a, "deps", nil); v.Version != 3 {
		t.Errorf("a version after a deleted one is %d, want 3", v.Version)
	}
	code, h, b = call(t, a, "DELETE", "/2018-10-31/layers/deps/versions/x", nil)
	wantError(t, code, h, b, 400, "InvalidParameterValueException", "VersionNumber")
}

type fnLayersOut struct {
	Layers []struct {
		Arn      string
		CodeSize int64
	}
	CodeSha256 string
}

func TestFunctionLayers(t *testing.T) {
	a := newTestAPI(t)
	code := zipOf(t, "bootstrap", "#!/bin/sh\n")
	var arns []string
	for _, n := range []string{"l1", "l2", "l3", "l4", "l5", "l6"} {
		arns = append(arns, publish(t, a, n, nil).LayerVersionArn)
	}
	v2 := publish(t, a, "l1", nil).LayerVersionArn
	// Two layers of 100 MB unpacked and code of 70 MB: each fits, not all.
	big1 := publish(t, a, "big1", map[string]any{"Content": map[string]any{"ZipFile": zerosZip(t, "a", 100_000_000)}}).LayerVersionArn
	big2 := publish(t, a, "big2", map[string]any{"Content": map[string]any{"ZipFile": zerosZip(t, "b", 100_000_000)}}).LayerVersionArn
	bigCode := zerosZip(t, "bootstrap", 70_000_000)

	fn := createFn(t, a, "fn", map[string]any{"Code": map[string]any{"ZipFile": code}, "Layers": arns[:2]})
	got := decodeJSON[fnLayersOut](t, mustJSON(t, fn))
	if len(got.Layers) != 2 || got.Layers[0].Arn != arns[0] || got.Layers[1].Arn != arns[1] || got.Layers[0].CodeSize == 0 {
		t.Errorf("created with %+v", got.Layers)
	}
	if _, _, b := call(t, a, "GET", "/2015-03-31/functions/fn", nil); !strings.Contains(string(b), `"Layers":[{"Arn":"`+arns[0]) {
		t.Errorf("GetFunction: %s", b)
	}
	if _, _, b := call(t, a, "GET", "/2015-03-31/functions", nil); !strings.Contains(string(b), arns[1]) {
		t.Errorf("ListFunctions: %s", b)
	}
	missing := layerArnPrefix + "l1:9"
	refusals := []struct {
		name   string
		layers []string
		code   []byte
		msg    string
	}{
		{"six layers", arns, code, "more than 5 layers"},
		{"a missing version", []string{missing}, code, "Layer version " + missing + " does not exist."},
		{"another region's layer", []string{"arn:aws:lambda:eu-west-1:000000000000:layer:l1:1"}, code, "does not exist"},
		{"not an ARN", []string{"l1"}, code, "not a layer version ARN"},
		{"a layer twice", []string{arns[0], arns[0]}, code, "more than once"},
		{"two versions of a layer", []string{arns[0], v2}, code, "Two different versions of the same layer"},
		{"more than 250 MB with the code", []string{big1, big2}, bigCode, "exceeds the maximum allowed size of 262144000 bytes. The actual size is 270000000 bytes."},
	}
	for _, tt := range refusals {
		t.Run("create with "+tt.name, func(t *testing.T) {
			c, h, b := call(t, a, "POST", "/2015-03-31/functions", map[string]any{"FunctionName": "refused", "Role": "r",
				"Code": map[string]any{"ZipFile": tt.code}, "Layers": tt.layers})
			wantError(t, c, h, b, 400, "InvalidParameterValueException", tt.msg)
			if c, _, _ := call(t, a, "GET", "/2015-03-31/functions/refused", nil); c != 404 {
				t.Errorf("the refused function exists (%d)", c)
			}
		})
		t.Run("update-config with "+tt.name, func(t *testing.T) {
			if tt.code != nil && len(tt.code) > len(code) {
				// fn's code is small: make the code large first, with no layers.
				big := createFn(t, a, "bigfn-"+strings.ReplaceAll(tt.name, " ", "-"), map[string]any{"Code": map[string]any{"ZipFile": tt.code}})
				name := big["FunctionName"].(string)
				c, h, b := call(t, a, "PUT", "/2015-03-31/functions/"+name+"/configuration", map[string]any{"Layers": tt.layers})
				wantError(t, c, h, b, 400, "InvalidParameterValueException", tt.msg)
				return
			}
			c, h, b := call(t, a, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Layers": tt.layers})
			wantError(t, c, h, b, 400, "InvalidParameterValueException", tt.msg)
			if after := getLayers(t, a, "fn"); len(after) != 2 {
				t.Errorf("a refused update changed the layers to %v", after)
			}
		})
	}
	// One big layer fits; new code that makes it too large is refused.
	if c, h, b := call(t, a, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Layers": []string{big1, arns[2]}}); c != 200 {
		typ, _, msg := lambdaError(t, h, b)
		t.Fatalf("update-config with big1: %d %s %s", c, typ, msg)
	}
	if got := getLayers(t, a, "fn"); strings.Join(got, ",") != big1+","+arns[2] {
		t.Errorf("layers after update-config: %v", got)
	}
	bigger := zerosZip(t, "bootstrap", 170_000_000)
	c, h, b := call(t, a, "PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": bigger})
	wantError(t, c, h, b, 400, "InvalidParameterValueException", "Function code combined with layers exceeds")
	// Layers [] removes them; leaving Layers out keeps them.
	if c, _, b := call(t, a, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Layers": []string{arns[3]}}); c != 200 {
		t.Fatalf("%d %s", c, b)
	}
	if c, _, b := call(t, a, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Timeout": 9}); c != 200 {
		t.Fatalf("%d %s", c, b)
	}
	if got := getLayers(t, a, "fn"); len(got) != 1 || got[0] != arns[3] {
		t.Errorf("an update without Layers changed them: %v", got)
	}
	if c, _, b := call(t, a, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Layers": []string{}}); c != 200 || strings.Contains(string(b), `"Layers"`) {
		t.Errorf("Layers []: %d %s", c, b)
	}
}

// A layer version a function uses can be deleted; the function keeps it
// until it no longer uses it.
func TestDeletingALayerAFunctionUses(t *testing.T) {
	ctx := context.Background()
	a := newTestAPI(t)
	lv := publish(t, a, "deps", nil)
	createFn(t, a, "fn", map[string]any{"Code": map[string]any{"ZipFile": zipOf(t, "bootstrap", "x")}, "Layers": []string{lv.LayerVersionArn}})
	if c, _, _ := call(t, a, "DELETE", "/2018-10-31/layers/deps/versions/1", nil); c != 204 {
		t.Fatalf("delete: %d", c)
	}
	if got := getLayers(t, a, "fn"); len(got) != 1 || got[0] != lv.LayerVersionArn {
		t.Errorf("the function's layers after the deletion: %v", got)
	}
	f, err := a.cfg.Store.GetFunction(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	kept, err := a.cfg.Store.FunctionLayers(ctx, f)
	if err != nil || len(kept) != 1 {
		t.Fatalf("FunctionLayers: %+v %v", kept, err)
	}
	if _, err := os.Stat(a.cfg.Store.LayerPath(kept[0].Digest)); err != nil {
		t.Errorf("the zip of a layer a function uses is gone: %v", err)
	}
	// No new function may start using it.
	c, h, b := call(t, a, "POST", "/2015-03-31/functions", map[string]any{"FunctionName": "late", "Role": "r",
		"Code": map[string]any{"ZipFile": zipOf(t, "bootstrap", "x")}, "Layers": []string{lv.LayerVersionArn}})
	wantError(t, c, h, b, 400, "InvalidParameterValueException", "does not exist")
	// Its last user goes: so does its zip.
	if c, _, _ := call(t, a, "DELETE", "/2015-03-31/functions/fn", nil); c != 204 {
		t.Fatalf("delete fn: %d", c)
	}
	if _, err := os.Stat(a.cfg.Store.LayerPath(kept[0].Digest)); !os.IsNotExist(err) {
		t.Errorf("the zip of a deleted layer no function uses is kept: %v", err)
	}
}

func getLayers(t *testing.T, a *API, fn string) []string {
	t.Helper()
	_, _, b := call(t, a, "GET", "/2015-03-31/functions/"+fn+"/configuration", nil)
	var out []string
	for _, l := range decodeJSON[fnLayersOut](t, b).Layers {
		out = append(out, l.Arn)
	}
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLayerVersionPermissions(t *testing.T) {
	a := newTestAPI(t)
	publish(t, a, "deps", nil)
	policy := "/2018-10-31/layers/deps/versions/1/policy"
	code, h, b := call(t, a, "GET", policy, nil)
	wantError(t, code, h, b, 404, "ResourceNotFoundException", "No policy is associated with the given resource.")
	code, _, b = call(t, a, "POST", policy, map[string]any{"StatementId": "xaccount", "Action": "lambda:GetLayerVersion", "Principal": "210987654321"})
	added := decodeJSON[struct{ Statement, RevisionId string }](t, b)
	if code != 201 || added.RevisionId == "" ||
		added.Statement != `{"Sid":"xaccount","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":"lambda:GetLayerVersion","Resource":"`+layerArnPrefix+`deps:1"}` {
		t.Errorf("add: %d %s", code, b)
	}
	code, _, b = call(t, a, "POST", policy, map[string]any{"StatementId": "org", "Action": "lambda:GetLayerVersion", "Principal": "*", "OrganizationId": "o-abcdefghij"})
	if code != 201 || !strings.Contains(string(b), `\"Condition\":{\"StringEquals\":{\"aws:PrincipalOrgID\":\"o-abcdefghij\"}}`) {
		t.Errorf("add with an organization: %d %s", code, b)
	}
	code, _, b = call(t, a, "GET", policy, nil)
	got := decodeJSON[struct{ Policy, RevisionId string }](t, b)
	if code != 200 || got.RevisionId == "" || got.RevisionId == added.RevisionId || !strings.Contains(got.Policy, `"Sid":"xaccount"`) || !strings.Contains(got.Policy, `"Sid":"org"`) {
		t.Errorf("get: %d %s", code, b)
	}
	refusals := []struct {
		name   string
		target string
		body   map[string]any
		status int
		typ    string
		msg    string
	}{
		{"a Sid taken", policy, map[string]any{"StatementId": "xaccount", "Action": "lambda:GetLayerVersion", "Principal": "*"}, 409, "ResourceConflictException", "already exists"},
		{"another action", policy, map[string]any{"StatementId": "s", "Action": "lambda:InvokeFunction", "Principal": "*"}, 400, "InvalidParameterValueException", "lambda:GetLayerVersion"},
		{"a service principal", policy, map[string]any{"StatementId": "s", "Action": "lambda:GetLayerVersion", "Principal": "s3.amazonaws.com"}, 400, "InvalidParameterValueException", "Principal"},
		{"an organization with an account", policy, map[string]any{"StatementId": "s", "Action": "lambda:GetLayerVersion", "Principal": "210987654321", "OrganizationId": "o-abcdefghij"}, 400, "InvalidParameterValueException", "OrganizationId"},
		{"an old revision", policy + "?RevisionId=" + added.RevisionId, map[string]any{"StatementId": "s", "Action": "lambda:GetLayerVersion", "Principal": "*"}, 412, "PreconditionFailedException", "Revision Id"},
		{"a missing version", "/2018-10-31/layers/deps/versions/2/policy", map[string]any{"StatementId": "s", "Action": "lambda:GetLayerVersion", "Principal": "*"}, 404, "ResourceNotFoundException", "does not exist"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			code, h, b := call(t, a, "POST", tt.target, tt.body)
			wantError(t, code, h, b, tt.status, tt.typ, tt.msg)
		})
	}
	code, h, b = call(t, a, "DELETE", policy+"/xaccount?RevisionId="+added.RevisionId, nil)
	wantError(t, code, h, b, 412, "PreconditionFailedException", "Revision Id")
	if code, _, b := call(t, a, "DELETE", policy+"/xaccount", nil); code != 204 {
		t.Errorf("remove: %d %s", code, b)
	}
	code, h, b = call(t, a, "DELETE", policy+"/xaccount", nil)
	wantError(t, code, h, b, 404, "ResourceNotFoundException", "Statement xaccount is not found")
	code, h, b = call(t, a, "GET", "/2018-10-31/layers/deps/versions/7/policy", nil)
	wantError(t, code, h, b, 404, "ResourceNotFoundException", "The resource you requested does not exist.")
}
