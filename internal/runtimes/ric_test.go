package runtimes_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/agent/runtimeapi"
)

// These tests run each RIC on the host, against Hearth's Runtime API server
// over a fake agent, with handlers written into a temporary task root: no
// VM. They need python3 and node on PATH (scripts/install-deps.sh).

// ricCall is one invocation and what to check of its outcome.
type ricCall struct {
	event runtimeapi.Event
	// deadline is how far the invocation's deadline is when it goes out;
	// 30 s when zero.
	deadline time.Duration
	check    func(t *testing.T, p *runtimeProc, o outcome, took time.Duration)
}

// ricCase is one runtime process: its code, its layers, and either the
// init error it must report or the invocations it must serve, in order.
type ricCase struct {
	name     string
	handler  string
	task     map[string]string // task root files
	opt      map[string]string // layer files, under the fake /opt
	env      map[string]string
	initType string // the init error's type, when init must fail
	initMsg  string // a part of its message
	calls    []ricCall
}

func runCases(t *testing.T, runtime string, cases []ricCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			task, opt := t.TempDir(), t.TempDir()
			writeTree(t, task, tc.task)
			writeTree(t, opt, tc.opt)
			p := startRuntime(t, runtime, tc.handler, task, opt, tc.env)
			if tc.initType != "" {
				o := p.await(t)
				wantError(t, o, "init", tc.initType, tc.initMsg)
				select {
				case <-p.exited:
					if p.err == nil {
						t.Errorf("the runtime exited with status 0 after an init error")
					}
				case <-time.After(10 * time.Second):
					t.Errorf("the runtime did not exit after its init error")
				}
				return
			}
			for i, c := range tc.calls {
				ev := c.event
				ev.RequestID = fmt.Sprintf("req-%d-%s", i, strings.ReplaceAll(tc.name, " ", "-"))
				if c.deadline != 0 {
					ev.DeadlineMs = time.Now().Add(c.deadline).UnixMilli()
				}
				if ev.Payload == nil {
					ev.Payload = []byte(`{"n": 1}`)
				}
				o, took := p.invoke(t, ev)
				if o.requestID != ev.RequestID {
					t.Fatalf("call %d: posted for request %q, want %q", i, o.requestID, ev.RequestID)
				}
				c.check(t, p, o, took)
			}
		})
	}
}

// wantResponse checks o is a successful response and returns its JSON.
func wantResponse(t *testing.T, o outcome) any {
	t.Helper()
	if o.kind != "response" {
		t.Fatalf("got %s %s %s, want a response", o.kind, o.errorType, o.body)
	}
	var v any
	if err := json.Unmarshal(o.body, &v); err != nil {
		t.Fatalf("response %q: %v", o.body, err)
	}
	return v
}

// wantError checks o is an error post of kind with errorType and a message
// holding msg, and that the type is in both the body and the header.
func wantError(t *testing.T, o outcome, kind, errorType, msg string) map[string]any {
	t.Helper()
	if o.kind != kind {
		t.Fatalf("got %s %s %s, want a %s error", o.kind, o.errorType, o.body, kind)
	}
	m := decode(t, o.body)
	if m["errorType"] != errorType || o.errorType != errorType || o.header != errorType {
		t.Errorf("errorType: body %v, API %q, header %q; want %q", m["errorType"], o.errorType, o.header, errorType)
	}
	if s, _ := m["errorMessage"].(string); !strings.Contains(s, msg) {
		t.Errorf("errorMessage %q lacks %q", m["errorMessage"], msg)
	}
	return m
}

// respondsWith checks the response equals want, as JSON.
func respondsWith(want string) func(*testing.T, *runtimeProc, outcome, time.Duration) {
	return func(t *testing.T, _ *runtimeProc, o outcome, _ time.Duration) {
		t.Helper()
		got := wantResponse(t, o)
		var w any
		if err := json.Unmarshal([]byte(want), &w); err != nil {
			t.Fatal(err)
		}
		if gb, _ := json.Marshal(got); string(gb) != mustJSON(t, w) {
			t.Errorf("response %s, want %s", gb, want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkContext checks a handler's report of its context object, which
// each runtime's "context" handler returns under the same keys.
func checkContext(t *testing.T, _ *runtimeProc, o outcome, _ time.Duration) {
	t.Helper()
	m, _ := wantResponse(t, o).(map[string]any)
	want := map[string]any{
		"requestId":    "", // filled below: the id is the call's
		"name":         testFunctionName,
		"version":      "$LATEST",
		"arn":          "arn:aws:lambda:us-east-1:123456789012:function:" + testFunctionName + ":live",
		"memory":       testMemory,
		"logGroup":     testLogGroup,
		"logStream":    testLogStream,
		"trace":        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
		"custom":       "from-client",
		"appTitle":     "the-app",
		"identityId":   "us-east-1:identity",
		"identityPool": "us-east-1:pool",
	}
	want["requestId"] = o.requestID
	for k, v := range want {
		if m[k] != v {
			t.Errorf("context %s = %v, want %v", k, m[k], v)
		}
	}
	// The deadline is 10 s away when the event goes out.
	if r, _ := m["remaining"].(float64); r <= 5000 || r > 10000 {
		t.Errorf("remaining time %v ms, want in (5000, 10000]", m["remaining"])
	}
}

// contextEvent is an invocation with every optional header set.
var contextEvent = runtimeapi.Event{
	FunctionARN:     "arn:aws:lambda:us-east-1:123456789012:function:" + testFunctionName + ":live",
	TraceID:         "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
	ClientContext:   `{"custom":{"who":"from-client"},"env":{},"client":{"app_title":"the-app","installation_id":"i-1"}}`,
	CognitoIdentity: `{"cognitoIdentityId":"us-east-1:identity","cognitoIdentityPoolId":"us-east-1:pool"}`,
}

// decreasing checks a handler's two readings of the remaining time, taken
// some 50 ms apart, and returns the second.
func decreasing(t *testing.T, o outcome) float64 {
	t.Helper()
	r, _ := wantResponse(t, o).([]any)
	if len(r) != 2 {
		t.Fatalf("response %s: want two readings", o.body)
	}
	a, _ := r[0].(float64)
	b, _ := r[1].(float64)
	if !(a > b && a-b >= 40 && b > 0) {
		t.Errorf("remaining time read %v then %v ms 50 ms later: want it to fall by about 50", a, b)
	}
	return b
}

func remainingTwice() []ricCall {
	var first float64
	return []ricCall{
		{deadline: 20 * time.Second, check: func(t *testing.T, _ *runtimeProc, o outcome, _ time.Duration) {
			first = decreasing(t, o)
			if first > 20000 || first < 15000 {
				t.Errorf("remaining %v ms of a 20 s deadline", first)
			}
		}},
		{deadline: 3 * time.Second, check: func(t *testing.T, _ *runtimeProc, o outcome, _ time.Duration) {
			// The second invocation's own deadline, not the first's.
			if b := decreasing(t, o); b > 3000 || b >= first {
				t.Errorf("remaining %v ms of a 3 s deadline (first invocation: %v)", b, first)
			}
		}},
	}
}

// pythonVersion is the host python3's "3.N", for the layer's site-packages.
func pythonVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("python3", "-c", `import sys; print("%d.%d" % sys.version_info[:2])`).Output()
	if err != nil {
		t.Fatalf("python3 is needed on PATH for these tests (scripts/install-deps.sh): %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestPythonRIC(t *testing.T) {
	site := "python/lib/python" + pythonVersion(t) + "/site-packages/"
	const contextHandler = `
import os
def handler(event, context):
    cc, ident = context.client_context, context.identity
    return {
        "requestId": context.aws_request_id, "name": context.function_name,
        "version": context.function_version, "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb, "logGroup": context.log_group_name,
        "logStream": context.log_stream_name, "remaining": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"), "custom": cc.custom["who"],
        "appTitle": cc.client.app_title, "identityId": ident.cognito_identity_id,
        "identityPool": ident.cognito_identity_pool_id,
    }
`
	runCases(t, "python3.11", []ricCase{
		{
			name:    "success",
			handler: "app.handler",
			task:    map[string]string{"app.py": "def handler(event, context):\n    return {'got': event, 'ok': True}\n"},
			calls: []ricCall{{
				event: runtimeapi.Event{Payload: []byte(`{"a": [1, 2]}`)},
				check: respondsWith(`{"got": {"a": [1, 2]}, "ok": true}`),
			}},
		},
		{
			name:    "context",
			handler: "app.handler",
			task:    map[string]string{"app.py": contextHandler},
			calls:   []ricCall{{event: contextEvent, deadline: 10 * time.Second, check: checkContext}},
		},
		{
			name:    "raised error",
			handler: "app.handler",
			task: map[string]string{"app.py": `
class PaymentDeclined(Exception):
    pass
def helper():
    raise PaymentDeclined("card 42 declined")
def handler(event, context):
    helper()
`},
			calls: []ricCall{{check: func(t *testing.T, p *runtimeProc, o outcome, _ time.Duration) {
				m := wantError(t, o, "error", "PaymentDeclined", "card 42 declined")
				st, _ := m["stackTrace"].([]any)
				if len(st) != 2 || !strings.Contains(fmt.Sprint(st[0]), "app.py") || !strings.Contains(fmt.Sprint(st[1]), "in helper") {
					t.Errorf("stackTrace %v: want the handler's two frames, none of the runtime's", st)
				}
				p.waitOutput(t, "[ERROR] PaymentDeclined: card 42 declined")
			}}},
		},
		{
			name:     "import error",
			handler:  "app.handler",
			task:     map[string]string{"app.py": "import not_installed_anywhere\ndef handler(e, c):\n    return 1\n"},
			initType: "Runtime.ImportModuleError",
			initMsg:  "Unable to import module 'app': No module named 'not_installed_anywhere'",
		},
		{
			name:     "missing module",
			handler:  "nothere.handler",
			initType: "Runtime.ImportModuleError",
			initMsg:  "Unable to import module 'nothere'",
		},
		{
			name:     "missing handler",
			handler:  "app.handle",
			task:     map[string]string{"app.py": "def handler(e, c):\n    return 1\n"},
			initType: "Runtime.HandlerNotFound",
			initMsg:  "Handler 'handle' missing on module 'app'",
		},
		{
			name:     "malformed handler",
			handler:  "app",
			task:     map[string]string{"app.py": "def handler(e, c):\n    return 1\n"},
			initType: "Runtime.MalformedHandlerName",
			initMsg:  "Bad handler 'app'",
		},
		{
			name:     "syntax error",
			handler:  "app.handler",
			task:     map[string]string{"app.py": "def handler(e, c)\n    return 1\n"},
			initType: "Runtime.UserCodeSyntaxError",
			initMsg:  "Syntax error in module 'app'",
		},
		{
			name:     "error raised at import",
			handler:  "app.handler",
			task:     map[string]string{"app.py": "raise ValueError('no config')\n"},
			initType: "ValueError",
			initMsg:  "no config",
		},
		{
			name:    "handler in a package",
			handler: "pkg/sub/mod.handler",
			task: map[string]string{
				"pkg/__init__.py":     "",
				"pkg/sub/__init__.py": "",
				"pkg/sub/mod.py":      "def handler(e, c):\n    return __name__\n",
			},
			calls: []ricCall{{check: respondsWith(`"pkg.sub.mod"`)}},
		},
		{
			name:    "vendored package and layers",
			handler: "app.handler",
			task: map[string]string{
				"app.py":               "import vendored, inlayer, insite\ndef handler(e, c):\n    return [vendored.V, inlayer.V, insite.V]\n",
				"vendored/__init__.py": "V = 'vendored'\n",
				"vendored/data.py":     "",
				"insite.py":            "V = 'task root first'\n",
			},
			opt: map[string]string{
				"python/inlayer.py": "V = 'layer'\n",
				site + "insite.py":  "V = 'layer site-packages'\n",
			},
			calls: []ricCall{{check: respondsWith(`["vendored", "layer", "task root first"]`)}},
		},
		{
			name:    "layer site-packages before layer python",
			handler: "app.handler",
			task:    map[string]string{"app.py": "import both\ndef handler(e, c):\n    return both.V\n"},
			opt: map[string]string{
				"python/both.py": "V = 'python'\n",
				site + "both.py": "V = 'site-packages'\n",
			},
			calls: []ricCall{{check: respondsWith(`"site-packages"`)}},
		},
		{
			name:    "state kept between invocations",
			handler: "app.handler",
			task:    map[string]string{"app.py": "count = 0\ndef handler(e, c):\n    global count\n    count += 1\n    return count\n"},
			calls:   []ricCall{{check: respondsWith(`1`)}, {check: respondsWith(`2`)}, {check: respondsWith(`3`)}},
		},
		{
			name:    "remaining time decreasing",
			handler: "app.handler",
			task: map[string]string{"app.py": `
import time
def handler(e, context):
    a = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    return [a, context.get_remaining_time_in_millis()]
`},
			calls: remainingTwice(),
		},
		{
			name:    "logs",
			handler: "app.handler",
			task: map[string]string{"app.py": `
import logging, sys
logger = logging.getLogger()
logger.setLevel(logging.INFO)
def handler(e, c):
    print("printed line")
    sys.stderr.write("to stderr\n")
    logger.info("logged line")
    return None
`},
			calls: []ricCall{{check: func(t *testing.T, p *runtimeProc, o outcome, _ time.Duration) {
				if v := wantResponse(t, o); v != nil {
					t.Errorf("response %v, want null", v)
				}
				p.waitOutput(t, "printed line")
				p.waitOutput(t, "to stderr")
				p.waitOutput(t, "\t"+o.requestID+"\tlogged line")
			}}},
		},
		{
			name:    "unmarshalable result",
			handler: "app.handler",
			task:    map[string]string{"app.py": "def handler(e, c):\n    return {'s': {1, 2}}\n"},
			calls: []ricCall{{check: func(t *testing.T, _ *runtimeProc, o outcome, _ time.Duration) {
				wantError(t, o, "error", "Runtime.MarshalError", "Unable to marshal response")
			}}},
		},
	})
}

func TestNodeRIC(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is needed on PATH for these tests (scripts/install-deps.sh): %v", err)
	}
	const contextBody = `{
    requestId: context.awsRequestId, name: context.functionName,
    version: context.functionVersion, arn: context.invokedFunctionArn,
    memory: context.memoryLimitInMB, logGroup: context.logGroupName,
    logStream: context.logStreamName, remaining: context.getRemainingTimeInMillis(),
    trace: process.env._X_AMZN_TRACE_ID, custom: context.clientContext.custom.who,
    appTitle: context.clientContext.client.app_title, identityId: context.identity.cognitoIdentityId,
    identityPool: context.identity.cognitoIdentityPoolId,
  }`
	runCases(t, "nodejs18.x", []ricCase{
		{
			name:    "commonjs async",
			handler: "index.handler",
			task:    map[string]string{"index.js": "exports.handler = async (event) => ({ got: event, kind: 'cjs' });\n"},
			calls: []ricCall{{
				event: runtimeapi.Event{Payload: []byte(`{"a": [1, 2]}`)},
				check: respondsWith(`{"got": {"a": [1, 2]}, "kind": "cjs"}`),
			}},
		},
		{
			name:    "es module .mjs",
			handler: "app.handler",
			task:    map[string]string{"app.mjs": "export const handler = async () => 'esm';\n"},
			calls:   []ricCall{{check: respondsWith(`"esm"`)}},
		},
		{
			name:    "es module .js with type module",
			handler: "app.handler",
			task: map[string]string{
				"package.json": `{"type": "module"}`,
				"app.js":       "export async function handler() { return import.meta.url.endsWith('/app.js'); }\n",
			},
			calls: []ricCall{{check: respondsWith(`true`)}},
		},
		{
			name:    "commonjs .cjs",
			handler: "app.handler",
			task:    map[string]string{"app.cjs": "module.exports.handler = async () => 'cjs';\n"},
			calls:   []ricCall{{check: respondsWith(`"cjs"`)}},
		},
		{
			name:    "nested folder and export",
			handler: "src/app.handlers.main",
			task:    map[string]string{"src/app.js": "exports.handlers = { main: async () => 'nested' };\n"},
			calls:   []ricCall{{check: respondsWith(`"nested"`)}},
		},
		{
			name:    "callback",
			handler: "index.handler",
			task:    map[string]string{"index.js": "exports.handler = (event, context, callback) => { callback(null, { n: event.n + 1 }); };\n"},
			calls:   []ricCall{{check: respondsWith(`{"n": 2}`)}},
		},
		{
			name:    "callback waits for the event loop",
			handler: "index.handler",
			task: map[string]string{"index.js": `
let fired = 0;
exports.handler = (event, context, callback) => {
  setTimeout(() => { fired++; }, 300);
  callback(null, fired);
};
`},
			calls: []ricCall{
				{check: func(t *testing.T, p *runtimeProc, o outcome, took time.Duration) {
					respondsWith(`0`)(t, p, o, took)
					if took < 250*time.Millisecond {
						t.Errorf("responded after %v, before the handler's 300 ms timer ran", took)
					}
				}},
				// The timer ran before the response: the next call sees it.
				{check: respondsWith(`1`)},
			},
		},
		{
			name:    "callback not waiting for the event loop",
			handler: "index.handler",
			task: map[string]string{"index.js": `
let calls = 0;
exports.handler = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setInterval(() => {}, 1000); // never ends
  callback(null, ++calls);
};
`},
			calls: []ricCall{
				{check: func(t *testing.T, p *runtimeProc, o outcome, took time.Duration) {
					respondsWith(`1`)(t, p, o, took)
					// Waiting for the interval would never end; 5 s is
					// room for a loaded machine.
					if took > 5*time.Second {
						t.Errorf("responded after %v: it waited for the interval", took)
					}
				}},
				{check: respondsWith(`2`)},
			},
		},
		{
			name:    "context.succeed",
			handler: "index.handler",
			task:    map[string]string{"index.js": "exports.handler = (event, context) => { context.succeed('done'); };\n"},
			calls:   []ricCall{{check: respondsWith(`"done"`)}},
		},
		{
			name:    "neither a promise nor a callback",
			handler: "index.handler",
			task:    map[string]string{"index.js": "exports.handler = (event) => { setTimeout(() => {}, 50); };\n"},
			calls:   []ricCall{{check: respondsWith(`null`)}},
		},
		{
			name:    "context",
			handler: "index.handler",
			task:    map[string]string{"index.js": "exports.handler = async (event, context) => (" + contextBody + ");\n"},
			calls:   []ricCall{{event: contextEvent, deadline: 10 * time.Second, check: checkContext}},
		},
		{
			name:    "thrown error",
			handler: "index.handler",
			task: map[string]string{"index.js": `
class PaymentDeclined extends Error {
  constructor(m) { super(m); this.name = 'PaymentDeclined'; }
}
exports.handler = async () => { throw new PaymentDeclined('card 42 declined'); };
`},
			calls: []ricCall{{check: func(t *testing.T, p *runtimeProc, o outcome, _ time.Duration) {
				m := wantError(t, o, "error", "PaymentDeclined", "card 42 declined")
				trace, _ := m["trace"].([]any)
				if len(trace) < 2 || !strings.Contains(fmt.Sprint(trace[1]), "index.js") {
					t.Errorf("trace %v: want the stack, from index.js", trace)
				}
				p.waitOutput(t, "\tERROR\tInvoke Error")
			}}},
		},
		{
			name:    "callback error",
			handler: "index.handler",
			task:    map[string]string{"index.js": "exports.handler = (e, c, callback) => callback(new TypeError('bad input'));\n"},
			calls: []ricCall{{check: func(t *testing.T, _ *runtimeProc, o outcome, _ time.Duration) {
				wantError(t, o, "error", "TypeError", "bad input")
			}}},
		},
		{
			name:    "uncaught exception",
			handler: "index.handler",
			task:    map[string]string{"index.js": "exports.handler = async () => { setTimeout(() => { throw new RangeError('later'); }, 10); return new Promise(() => {}); };\n"},
			calls: []ricCall{{check: func(t *testing.T, p *runtimeProc, o outcome, _ time.Duration) {
				wantError(t, o, "error", "RangeError", "later")
				select {
				case <-p.exited:
				case <-time.After(5 * time.Second):
					t.Errorf("the runtime went on after an uncaught exception")
				}
			}}},
		},
		{
			name:     "import error",
			handler:  "index.handler",
			task:     map[string]string{"index.js": "require('not-installed-anywhere');\nexports.handler = async () => 1;\n"},
			initType: "Runtime.ImportModuleError",
			initMsg:  "Cannot find module 'not-installed-anywhere'",
		},
		{
			name:     "es module import error",
			handler:  "index.handler",
			task:     map[string]string{"index.mjs": "import x from 'not-installed-anywhere';\nexport const handler = async () => x;\n"},
			initType: "Runtime.ImportModuleError",
			initMsg:  "not-installed-anywhere",
		},
		{
			name:     "missing module",
			handler:  "nothere.handler",
			initType: "Runtime.ImportModuleError",
			initMsg:  "Cannot find module 'nothere'",
		},
		{
			name:     "missing handler",
			handler:  "index.handle",
			task:     map[string]string{"index.js": "exports.handler = async () => 1;\n"},
			initType: "Runtime.HandlerNotFound",
			initMsg:  "index.handle is undefined or not exported",
		},
		{
			name:     "handler not a function",
			handler:  "index.handler",
			task:     map[string]string{"index.js": "exports.handler = 42;\n"},
			initType: "Runtime.HandlerNotFound",
			initMsg:  "index.handler is not a function",
		},
		{
			name:     "malformed handler",
			handler:  "index",
			task:     map[string]string{"index.js": "exports.handler = async () => 1;\n"},
			initType: "Runtime.MalformedHandlerName",
			initMsg:  "Bad handler",
		},
		{
			name:     "syntax error",
			handler:  "index.handler",
			task:     map[string]string{"index.js": "exports.handler = async () => {;\n"},
			initType: "Runtime.UserCodeSyntaxError",
			initMsg:  "SyntaxError",
		},
		{
			name:    "vendored package and layers",
			handler: "index.handler",
			task: map[string]string{
				"index.js":                   "exports.handler = async () => [require('vend'), require('inlayer'), require('innode18'), require('both')];\n",
				"node_modules/vend/index.js": "module.exports = 'vendored';\n",
				"node_modules/both/index.js": "module.exports = 'task root first';\n",
			},
			opt: map[string]string{
				"nodejs/node_modules/inlayer/index.js":         "module.exports = 'layer';\n",
				"nodejs/node18/node_modules/innode18/index.js": "module.exports = 'layer node18';\n",
				"nodejs/node_modules/both/index.js":            "module.exports = 'layer';\n",
			},
			calls: []ricCall{{check: respondsWith(`["vendored", "layer", "layer node18", "task root first"]`)}},
		},
		{
			name:    "state kept between invocations",
			handler: "index.handler",
			task:    map[string]string{"index.js": "let count = 0;\nexports.handler = async () => ++count;\n"},
			calls:   []ricCall{{check: respondsWith(`1`)}, {check: respondsWith(`2`)}, {check: respondsWith(`3`)}},
		},
		{
			name:    "remaining time decreasing",
			handler: "index.handler",
			task: map[string]string{"index.js": `
exports.handler = async (e, context) => {
  const a = context.getRemainingTimeInMillis();
  await new Promise((r) => setTimeout(r, 50));
  return [a, context.getRemainingTimeInMillis()];
};
`},
			calls: remainingTwice(),
		},
		{
			name:    "logs",
			handler: "index.handler",
			task:    map[string]string{"index.js": "exports.handler = async () => { console.log('logged', {a: 1}); console.warn('warned'); process.stdout.write('raw line\\n'); };\n"},
			calls: []ricCall{{check: func(t *testing.T, p *runtimeProc, o outcome, _ time.Duration) {
				respondsWith(`null`)(t, p, o, 0)
				p.waitOutput(t, "\t"+o.requestID+"\tINFO\tlogged { a: 1 }")
				p.waitOutput(t, "\t"+o.requestID+"\tWARN\twarned")
				p.waitOutput(t, "raw line")
			}}},
		},
	})
}

// TestBootstrapMemoryFlags checks the Node bootstrap caps V8's heap by the
// function's memory, as Lambda's does.
func TestBootstrapMemoryFlags(t *testing.T) {
	task := t.TempDir()
	writeTree(t, task, map[string]string{"index.js": `
const v8 = require('v8');
exports.handler = async () => [Math.round(v8.getHeapStatistics().heap_size_limit / 1048576), process.env.NODE_PATH, process.env.AWS_EXECUTION_ENV];
`})
	opt := t.TempDir()
	p := startRuntime(t, "nodejs18.x", "index.handler", task, opt, nil)
	o, _ := p.invoke(t, runtimeapi.Event{RequestID: "mem", Payload: []byte(`{}`)})
	r, _ := wantResponse(t, o).([]any)
	if len(r) != 3 {
		t.Fatalf("response %s", o.body)
	}
	// 256 MB: old space 230 MB, plus the young generation's.
	if limit, _ := r[0].(float64); limit < 200 || limit > 300 {
		t.Errorf("heap limit %v MB for a 256 MB function", limit)
	}
	wantPath := strings.Join([]string{
		filepath.Join(opt, "nodejs/node18/node_modules"), filepath.Join(opt, "nodejs/node_modules"),
	}, ":")
	if s, _ := r[1].(string); !strings.HasPrefix(s, wantPath+":") || !strings.HasSuffix(s, ":"+task) {
		t.Errorf("NODE_PATH %q, want %s:…:%s", s, wantPath, task)
	}
	if r[2] != "AWS_Lambda_nodejs18.x" {
		t.Errorf("AWS_EXECUTION_ENV %v", r[2])
	}
}
