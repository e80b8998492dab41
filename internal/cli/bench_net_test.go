package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/testvm"
)

// One small run: every figure is there and positive, and the bench's
// namespaces (the test host's, the environments') are gone after.
func TestBenchNetJSON(t *testing.T) {
	testvm.Driver(t)
	if os.Geteuid() != 0 {
		t.Fatal("networking needs root: run the tests as root, as .ci/run does")
	}
	before := network.Namespaces()
	code, stdout, stderr := run(t, nil, "bench", "net", "-n", "1", "--json", "--mb", "2", "--stream-mb", "2",
		"--connects", "5", "--requests", "10", "--zip", testvm.FunctionZip(t, "./internal/testfunction"),
		"--agent", testvm.Agent(t), "--accel", "tcg")
	if code != ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	for _, k := range []string{"egress_mb_s", "egress_connect_p50_ms", "ingress_mb_s", "ingress_request_p50_ms",
		"cold_net_p50_ms", "cold_none_p50_ms", "resume_net_p50_ms", "resume_none_p50_ms"} {
		if v, ok := out[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, out[k])
		}
	}
	if after := network.Namespaces(); !slices.Equal(after, before) {
		t.Errorf("namespaces %v after the bench, %v before", after, before)
	}
	if _, err := os.Stat(fmt.Sprintf("/run/netns/htest-%d", os.Getpid())); err == nil {
		t.Error("the test host's namespace is left")
	}
}

func TestBenchNetRefusesBadSizes(t *testing.T) {
	for _, args := range [][]string{{"--mb", "0"}, {"--stream-mb", "-1"}, {"--requests", "0"}, {"-n", "0"}} {
		code, _, stderr := run(t, nil, append([]string{"bench", "net"}, args...)...)
		if code != ExitBadInput || !strings.Contains(stderr, "must be positive") {
			t.Errorf("%v: exit %d, stderr %q; want a refusal", args, code, stderr)
		}
	}
}
