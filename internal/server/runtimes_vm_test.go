package server_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/runtimes"
	"github.com/hearthdev/hearth/internal/testvm"
)

// zipOf is a zip of files (name → content), each 0644, as a developer's
// zip of Python or Node.js sources is: no bootstrap.
func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(0o644)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const pythonApp = `import vendored_pkg

count = 0


class Boom(Exception):
    pass


def handler(event, context):
    global count
    if event.get("raise"):
        raise Boom("asked to fail")
    count += 1
    return {
        "count": count,
        "requestId": context.aws_request_id,
        "functionName": context.function_name,
        "remainingOK": context.get_remaining_time_in_millis() > 0,
        "vendored": vendored_pkg.VALUE,
        "event": event,
    }
`

const nodeIndex = `let n = 0;
exports.handler = async (event, context) => ({ n: ++n, requestId: context.awsRequestId, functionName: context.functionName, event });
exports.cb = (event, context, callback) => { callback(null, { style: 'callback', requestId: context.awsRequestId }); };
`

// managedRuntimesBuilt skips nothing: a VM test needs the runtimes' roots
// as it needs the kernel, and says how to build them.
func managedRuntimesBuilt(t *testing.T) {
	t.Helper()
	for _, name := range runtimes.Names() {
		if _, err := runtimes.RootPath(testvm.CacheDir(), name); err != nil {
			t.Fatalf("%v", err)
		}
	}
}

type invokeResult struct {
	out     *lambda.InvokeOutput
	payload map[string]any
}

func invokeJSON(t *testing.T, d *daemon, fn, payload string) invokeResult {
	t.Helper()
	out, err := d.client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("invoke %s: %v", fn, err)
	}
	r := invokeResult{out: out}
	if err := json.Unmarshal(out.Payload, &r.payload); err != nil {
		t.Fatalf("invoke %s: payload %q: %v", fn, out.Payload, err)
	}
	return r
}

func createManaged(t *testing.T, d *daemon, fn string, rt types.Runtime, handler string, code []byte) {
	t.Helper()
	_, err := d.client.CreateFunction(context.Background(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(fn), Runtime: rt, Handler: aws.String(handler), Role: aws.String("arn:aws:iam::000000000000:role/none"),
		Code: &types.FunctionCode{ZipFile: code}, Timeout: aws.Int32(30), MemorySize: aws.Int32(256),
	})
	if err != nil {
		t.Fatalf("create %s: %v", fn, err)
	}
}

// TestManagedRuntimes runs zips on python3.11 and nodejs18.x through the
// daemon: their handlers get Lambda's context, errors come back as Lambda
// shapes them, and a suspended Python environment keeps its module state.
func TestManagedRuntimes(t *testing.T) {
	managedRuntimesBuilt(t)
	d := start(t, t.TempDir(), 2*time.Second)
	ctx := context.Background()

	py := zipOf(t, map[string]string{
		"app.py":                   pythonApp,
		"broken.py":                "import no_such_module_anywhere\n\ndef handler(event, context):\n    return 1\n",
		"vendored_pkg/__init__.py": "VALUE = 'from the zip'\n",
	})
	node := zipOf(t, map[string]string{"index.js": nodeIndex})

	// What Lambda refuses at create.
	for _, tc := range []struct {
		name, handler string
		rt            types.Runtime
		code          []byte
	}{
		{"no handler", "", types.RuntimePython311, py},
		{"unknown runtime", "app.handler", types.RuntimePython312, py},
	} {
		_, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("refused"), Runtime: tc.rt,
			Handler: aws.String(tc.handler), Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: tc.code}})
		if code := apiErrorCode(err); code != "InvalidParameterValueException" {
			t.Errorf("%s: %v, want InvalidParameterValueException", tc.name, err)
		}
	}
	// A provided runtime still needs its bootstrap.
	_, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("refused"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: py}})
	if err == nil || !strings.Contains(err.Error(), "bootstrap") {
		t.Errorf("provided.al2023 without bootstrap: %v", err)
	}

	t.Run("python package from a layer", func(t *testing.T) {
		// Lambda puts /opt/python on a Python function's path: a layer's
		// python/ folder is importable as is.
		lv, err := d.client.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("pydeps"),
			Content: &types.LayerVersionContentInput{ZipFile: zipOf(t, map[string]string{"python/layer_pkg.py": "VALUE = 'from a layer'\n"})}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("pylayer"), Runtime: types.RuntimePython311,
			Handler: aws.String("app.handler"), Role: aws.String("r"), Layers: []string{aws.ToString(lv.LayerVersionArn)},
			Code: &types.FunctionCode{ZipFile: zipOf(t, map[string]string{
				"app.py": "import layer_pkg\n\n\ndef handler(event, context):\n    return {'layer': layer_pkg.VALUE}\n"})},
			Timeout: aws.Int32(30), MemorySize: aws.Int32(256)})
		if err != nil {
			t.Fatal(err)
		}
		if r := invokeJSON(t, d, "pylayer", `{}`); r.out.FunctionError != nil || r.payload["layer"] != "from a layer" {
			t.Fatalf("layer import: %s %s", aws.ToString(r.out.FunctionError), r.out.Payload)
		}
	})

	t.Run("python", func(t *testing.T) {
		createManaged(t, d, "py", types.RuntimePython311, "app.handler", py)
		for i := 1; i <= 2; i++ {
			r := invokeJSON(t, d, "py", fmt.Sprintf(`{"n":%d}`, i))
			p := r.payload
			if r.out.FunctionError != nil || p["count"] != float64(i) || p["functionName"] != "py" || p["remainingOK"] != true ||
				p["vendored"] != "from the zip" || len(p["requestId"].(string)) < 32 {
				t.Fatalf("invoke %d: %s %s", i, aws.ToString(r.out.FunctionError), r.out.Payload)
			}
		}
		r := invokeJSON(t, d, "py", `{"raise":true}`)
		if r.out.FunctionError == nil || r.payload["errorType"] != "Boom" || r.payload["errorMessage"] != "asked to fail" {
			t.Fatalf("exception: %v %s", aws.ToString(r.out.FunctionError), r.out.Payload)
		}
		// Idle past keep-warm: suspended; the next call resumes it with
		// its module state.
		deadline := time.Now().Add(60 * time.Second)
		for d.srv.Scheduler().StatsByFunction()["py"].Suspended < 1 {
			if time.Now().After(deadline) {
				t.Fatalf("not suspended: %+v", d.srv.Scheduler().Stats())
			}
			time.Sleep(50 * time.Millisecond)
		}
		r = invokeJSON(t, d, "py", `{}`)
		if r.out.FunctionError != nil || r.payload["count"] != float64(3) {
			t.Fatalf("after resume: %s %s, want count 3", aws.ToString(r.out.FunctionError), r.out.Payload)
		}

		createManaged(t, d, "py-broken", types.RuntimePython311, "broken.handler", py)
		r = invokeJSON(t, d, "py-broken", `{}`)
		if r.out.FunctionError == nil || r.payload["errorType"] != "Runtime.ImportModuleError" ||
			!strings.Contains(r.payload["errorMessage"].(string), "no_such_module_anywhere") {
			t.Fatalf("import error: %v %s", aws.ToString(r.out.FunctionError), r.out.Payload)
		}
	})

	t.Run("nodejs", func(t *testing.T) {
		createManaged(t, d, "node", types.RuntimeNodejs18x, "index.handler", node)
		for i := 1; i <= 2; i++ {
			r := invokeJSON(t, d, "node", `{"k":"v"}`)
			p := r.payload
			ev, _ := p["event"].(map[string]any)
			if r.out.FunctionError != nil || p["n"] != float64(i) || p["functionName"] != "node" || ev["k"] != "v" || len(p["requestId"].(string)) < 32 {
				t.Fatalf("invoke %d: %s %s", i, aws.ToString(r.out.FunctionError), r.out.Payload)
			}
		}
		if _, err := d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("node"), Handler: aws.String("index.cb")}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			r := invokeJSON(t, d, "node", `{}`)
			if r.out.FunctionError != nil || r.payload["style"] != "callback" || len(r.payload["requestId"].(string)) < 32 {
				t.Fatalf("callback handler: %s %s", aws.ToString(r.out.FunctionError), r.out.Payload)
			}
		}

		if _, err := d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("node"), Handler: aws.String("missing.handler")}); err != nil {
			t.Fatal(err)
		}
		r := invokeJSON(t, d, "node", `{}`)
		if r.out.FunctionError == nil || r.payload["errorType"] != "Runtime.ImportModuleError" {
			t.Fatalf("import error: %v %s", aws.ToString(r.out.FunctionError), r.out.Payload)
		}
	})
}
