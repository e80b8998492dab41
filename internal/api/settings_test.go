package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// wantInvalid fails unless err is an InvalidParameterValueException whose
// message holds want ("" for no error expected).
func wantInvalid(t *testing.T, what string, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
		return
	}
	le, ok := lambdaerr.As(err)
	if !ok || le.Type != "InvalidParameterValueException" || le.Status != 400 || !strings.Contains(le.Message, want) {
		t.Errorf("%s: %v, want an InvalidParameterValueException saying %q", what, err, want)
	}
}

func TestCheckArchitectures(t *testing.T) {
	tests := []struct {
		archs []string
		want  string
	}{
		{nil, ""},
		{[]string{"x86_64"}, ""},
		{[]string{"arm64"}, "this host runs x86_64"},
		{[]string{"x86_64", "arm64"}, "exactly one"},
		{[]string{}, "exactly one"},
		{[]string{"riscv"}, "enum value set"},
	}
	for _, tt := range tests {
		wantInvalid(t, strings.Join(tt.archs, ","), checkArchitectures(tt.archs), tt.want)
	}
}

func TestCheckEphemeralStorage(t *testing.T) {
	for _, tt := range []struct {
		size int
		want string
	}{{512, ""}, {10240, ""}, {2048, ""}, {511, "between 512 and 10240"}, {10241, "between 512 and 10240"}, {0, "between 512 and 10240"}} {
		wantInvalid(t, "size", checkEphemeralStorage(&store.EphemeralStorage{Size: tt.size}), tt.want)
	}
	wantInvalid(t, "none", checkEphemeralStorage(nil), "")
}

func TestMergeLogging(t *testing.T) {
	jsonInfo := &store.LoggingConfig{LogFormat: "JSON", ApplicationLogLevel: "DEBUG", SystemLogLevel: "WARN", LogGroup: "/custom"}
	tests := []struct {
		name    string
		cur, in *store.LoggingConfig
		want    store.LoggingConfig
		wantErr string
	}{
		{"nothing sent to a new function", nil, nil, store.LoggingConfig{LogFormat: "Text", LogGroup: "/aws/lambda/fn"}, ""},
		{"JSON gets INFO levels", nil, &store.LoggingConfig{LogFormat: "JSON"},
			store.LoggingConfig{LogFormat: "JSON", ApplicationLogLevel: "INFO", SystemLogLevel: "INFO", LogGroup: "/aws/lambda/fn"}, ""},
		{"JSON with levels and a group", nil, jsonInfo, *jsonInfo, ""},
		{"a level on an existing JSON config", jsonInfo, &store.LoggingConfig{ApplicationLogLevel: "ERROR"},
			store.LoggingConfig{LogFormat: "JSON", ApplicationLogLevel: "ERROR", SystemLogLevel: "WARN", LogGroup: "/custom"}, ""},
		{"back to Text drops the levels", jsonInfo, &store.LoggingConfig{LogFormat: "Text"},
			store.LoggingConfig{LogFormat: "Text", LogGroup: "/custom"}, ""},
		{"levels with Text", nil, &store.LoggingConfig{LogFormat: "Text", ApplicationLogLevel: "INFO"}, store.LoggingConfig{}, "only when LogFormat is JSON"},
		{"levels with the default format", nil, &store.LoggingConfig{SystemLogLevel: "INFO"}, store.LoggingConfig{}, "only when LogFormat is JSON"},
		{"an unknown format", nil, &store.LoggingConfig{LogFormat: "XML"}, store.LoggingConfig{}, "Text or JSON"},
		{"an unknown application level", nil, &store.LoggingConfig{LogFormat: "JSON", ApplicationLogLevel: "LOUD"}, store.LoggingConfig{}, "ApplicationLogLevel must be one of"},
		{"TRACE is no system level", nil, &store.LoggingConfig{LogFormat: "JSON", SystemLogLevel: "TRACE"}, store.LoggingConfig{}, "SystemLogLevel must be one of"},
		{"a bad group", nil, &store.LoggingConfig{LogGroup: "no spaces"}, store.LoggingConfig{}, "LogGroup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mergeLogging("fn", tt.cur, tt.in)
			wantInvalid(t, tt.name, err, tt.wantErr)
			if tt.wantErr == "" && (got == nil || *got != tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckSnapStart(t *testing.T) {
	for _, tt := range []struct {
		applyOn string
		want    string
	}{{"None", ""}, {"PublishedVersions", ""}, {"Always", "None or PublishedVersions"}, {"", "None or PublishedVersions"}} {
		got, err := checkSnapStart(&store.SnapStart{ApplyOn: tt.applyOn})
		wantInvalid(t, tt.applyOn, err, tt.want)
		if tt.want == "" && (got.ApplyOn != tt.applyOn || got.OptimizationStatus != "Off") {
			t.Errorf("%s: %+v", tt.applyOn, got)
		}
	}
}

func TestCheckTags(t *testing.T) {
	for _, tt := range []struct {
		name string
		tags map[string]string
		want string
	}{
		{"fine", map[string]string{"team": "a", "empty": ""}, ""},
		{"empty key", map[string]string{"": "x"}, "tag key"},
		{"long key", map[string]string{strings.Repeat("k", 129): "x"}, "tag key"},
		{"long value", map[string]string{"k": strings.Repeat("v", 257)}, "at most 256"},
		{"reserved prefix", map[string]string{"aws:cloudformation:stack": "x"}, "reserved"},
	} {
		wantInvalid(t, tt.name, checkTags(tt.tags), tt.want)
	}
}

// The settings go through CreateFunction and UpdateFunctionConfiguration
// and come back in GetFunctionConfiguration as Lambda shapes them.
func TestSettingsThroughTheAPI(t *testing.T) {
	a := newTestAPI(t)
	created := createFn(t, a, "fn", map[string]any{
		"EphemeralStorage": map[string]any{"Size": 1024},
		"LoggingConfig":    map[string]any{"LogFormat": "JSON"},
		"SnapStart":        map[string]any{"ApplyOn": "PublishedVersions"},
		"Architectures":    []string{"x86_64"},
	})
	b, _ := json.Marshal(created)
	for _, want := range []string{`"EphemeralStorage":{"Size":1024}`, `"ApplicationLogLevel":"INFO"`, `"LogGroup":"/aws/lambda/fn"`,
		`"SnapStart":{"ApplyOn":"PublishedVersions","OptimizationStatus":"Off"}`, `"Architectures":["x86_64"]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("created %s lacks %s", b, want)
		}
	}
	code, _, body := call(t, a, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{
		"LoggingConfig": map[string]any{"LogFormat": "Text"}, "EphemeralStorage": map[string]any{"Size": 4096}})
	if code != 200 {
		t.Fatalf("update: %d %s", code, body)
	}
	code, _, body = call(t, a, "GET", "/2015-03-31/functions/fn/configuration", nil)
	var f store.Function
	if err := json.Unmarshal(body, &f); err != nil || code != 200 {
		t.Fatalf("get: %d %s", code, body)
	}
	if f.EphemeralStorage.Size != 4096 || *f.LoggingConfig != (store.LoggingConfig{LogFormat: "Text", LogGroup: "/aws/lambda/fn"}) || f.SnapStart.ApplyOn != "PublishedVersions" {
		t.Errorf("after update: %+v %+v %+v", f.EphemeralStorage, f.LoggingConfig, f.SnapStart)
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   map[string]any
		status int
		typ    string
	}{
		{"arm64 at create", "POST", "/2015-03-31/functions", map[string]any{"FunctionName": "arm", "Code": map[string]any{"ZipFile": []byte("z")}, "Architectures": []string{"arm64"}}, 400, "InvalidParameterValueException"},
		{"arm64 with new code", "PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": []byte("z"), "Architectures": []string{"arm64"}}, 400, "InvalidParameterValueException"},
		{"/tmp too small", "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"EphemeralStorage": map[string]any{"Size": 100}}, 400, "InvalidParameterValueException"},
		{"levels with Text", "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"LoggingConfig": map[string]any{"SystemLogLevel": "WARN"}}, 400, "InvalidParameterValueException"},
		{"a stale revision", "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"RevisionId": "old", "Timeout": 5}, 412, "PreconditionFailedException"},
		{"51 tags", "POST", "/2015-03-31/functions", map[string]any{"FunctionName": "tagged", "Code": map[string]any{"ZipFile": []byte("z")}, "Tags": manyTags(51)}, 400, "InvalidParameterValueException"},
	}
	for _, tt := range tests {
		code, h, body := call(t, a, tt.method, tt.path, tt.body)
		if typ, _, _ := lambdaError(t, h, body); code != tt.status || typ != tt.typ {
			t.Errorf("%s: %d %s, want %d %s", tt.name, code, body, tt.status, tt.typ)
		}
	}
	// Nothing refused was stored.
	if code, _, _ := call(t, a, "GET", "/2015-03-31/functions/arm", nil); code != http.StatusNotFound {
		t.Errorf("the refused arm64 function exists: %d", code)
	}
}

func manyTags(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m["k"+strings.Repeat("x", i)] = "v"
	}
	return m
}
