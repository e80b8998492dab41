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
		{"defaults", nil, config{appPort: 8080, grpcPort: 8081, hookPort: 9000, hooksFile: "/tmp/hooks.jsonl", sseDelay: 50 * time.Millisecond,
			outboundEvery: 500 * time.Millisecond}, false},
		{"every knob", map[string]string{
			"APP_PORT": "1", "GRPC_PORT": "2", "HOOK_PORT": "3", "HOOKS_FILE": "/x", "READY_503": "4",
			"VALIDATE_FAIL": "1", "HOOK_DELAY_MS": "5", "HOOK_DELAY_ONLY": "run", "SSE_DELAY_MS": "6",
			"OUTBOUND_TO": "203.0.113.2:8000", "OUTBOUND_EVERY": "250ms",
		}, config{appPort: 1, grpcPort: 2, hookPort: 3, hooksFile: "/x", ready503: 4, validateFail: true,
			hookDelay: 5 * time.Millisecond, hookDelayOnly: "run", sseDelay: 6 * time.Millisecond,
			outboundTo: "203.0.113.2:8000", outboundEvery: 250 * time.Millisecond}, false},
		{"outbound, default interval", map[string]string{"OUTBOUND_TO": "svc.test:80"}, config{appPort: 8080, grpcPort: 8081,
			hookPort: 9000, hooksFile: "/tmp/hooks.jsonl", sseDelay: 50 * time.Millisecond, outboundTo: "svc.test:80",
			outboundEvery: 500 * time.Millisecond}, false},
		{"outbound without a port", map[string]string{"OUTBOUND_TO": "203.0.113.2"}, config{}, true},
		{"outbound interval not a duration", map[string]string{"OUTBOUND_EVERY": "500"}, config{}, true},
		{"outbound interval zero", map[string]string{"OUTBOUND_EVERY": "0s"}, config{}, true},
		{"outbound interval negative", map[string]string{"OUTBOUND_EVERY": "-1s"}, config{}, true},
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
