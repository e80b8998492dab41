package agent

import (
	"slices"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// The runtime's environment: Lambda's reserved variables win over the
// function's, the function's win over the defaults, and the list is sorted.
func TestRuntimeEnv(t *testing.T) {
	// What PID 1 gets from the kernel and the agent's own settings stay the
	// agent's.
	t.Setenv("TERM", "linux")
	t.Setenv("HEARTH_AGENT_DEBUG", "1")
	cfg := Config{RuntimeAPIAddr: "127.0.0.1:9001", TaskRoot: "/var/task"}
	base := guestproto.Init{FunctionName: "hello", FunctionVersion: "$LATEST", MemoryMB: 256, Handler: "bootstrap",
		Region: "local", LogGroup: "/aws/lambda/hello", LogStream: "2026/01/01/[$LATEST]abc"}
	tests := []struct {
		name    string
		init    func(in *guestproto.Init)
		want    map[string]string
		missing []string
	}{
		{"reserved and defaults", func(*guestproto.Init) {}, map[string]string{
			"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "AWS_LAMBDA_FUNCTION_NAME": "hello", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/hello",
			"AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]abc", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
			"AWS_REGION": "local", "AWS_DEFAULT_REGION": "local", "LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime",
			"_HANDLER": "bootstrap", "TZ": ":UTC", "HOME": "/tmp", "PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin",
		}, []string{"TERM", "HEARTH_AGENT_DEBUG"}},
		{"the function's variables", func(in *guestproto.Init) { in.Env = map[string]string{"GREETING": "hi", "EMPTY": ""} },
			map[string]string{"GREETING": "hi", "EMPTY": ""}, nil},
		{"the function may change a default", func(in *guestproto.Init) { in.Env = map[string]string{"TZ": "Europe/Paris", "PATH": "/opt/x"} },
			map[string]string{"TZ": "Europe/Paris", "PATH": "/opt/x"}, nil},
		{"reserved names win", func(in *guestproto.Init) {
			in.Env = map[string]string{"AWS_LAMBDA_RUNTIME_API": "evil:1", "_HANDLER": "x", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "99999"}
		}, map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "_HANDLER": "bootstrap", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256"}, nil},
		{"snap-start", func(in *guestproto.Init) { in.InitType = "snap-start" },
			map[string]string{"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			tt.init(&in)
			env := runtimeEnv(in, cfg)
			if !slices.IsSorted(env) {
				t.Errorf("not sorted: %v", env)
			}
			got := map[string]string{}
			for _, kv := range env {
				k, v, _ := strings.Cut(kv, "=")
				if _, dup := got[k]; dup {
					t.Errorf("%s twice", k)
				}
				got[k] = v
			}
			for k, v := range tt.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s=%q (set %v), want %q", k, g, ok, v)
				}
			}
			for _, k := range tt.missing {
				if v, ok := got[k]; ok {
					t.Errorf("%s=%q passed to the runtime", k, v)
				}
			}
		})
	}
}
