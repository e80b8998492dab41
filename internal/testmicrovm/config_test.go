package main

import (
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    config
		wantErr bool
	}{
		{"defaults", nil, config{appPort: 8080, grpcPort: 8081, hookPort: 9000, hooksFile: "/tmp/hooks.jsonl", sseDelay: 50 * time.Millisecond}, false},
		{"every knob", map[string]string{
			"APP_PORT": "1", "GRPC_PORT": "2", "HOOK_PORT": "3", "HOOKS_FILE": "/x", "READY_503": "4",
			"VALIDATE_FAIL": "1", "HOOK_DELAY_MS": "5", "HOOK_DELAY_ONLY": "run", "SSE_DELAY_MS": "6",
		}, config{appPort: 1, grpcPort: 2, hookPort: 3, hooksFile: "/x", ready503: 4, validateFail: true,
			hookDelay: 5 * time.Millisecond, hookDelayOnly: "run", sseDelay: 6 * time.Millisecond}, false},
		{"bad port", map[string]string{"APP_PORT": "x"}, config{}, true},
		{"negative 503s", map[string]string{"READY_503": "-1"}, config{}, true},
		{"bad delay", map[string]string{"HOOK_DELAY_MS": "1s"}, config{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := configFromEnv(func(k string) string { return tc.env[k] })
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
