package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/testvm"
)

// Three kinds only (a zip in the initramfs, on a disk, an image): the
// managed runtimes' roots need `make runtimes`, and each kind costs a
// dozen VM boots.
func TestBenchKindsJSON(t *testing.T) {
	testvm.Driver(t)
	code, stdout, stderr := run(t, nil, "bench", "kinds", "-n", "1", "--json", "--kinds", "zip,zip-disk,image",
		"--zip", testvm.FunctionZip(t, "./examples/hello"), "--agent", testvm.Agent(t), "--accel", "tcg")
	if code != ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var out struct {
		Runs  int              `json:"runs"`
		Kinds []map[string]any `json:"kinds"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if out.Runs != 1 || len(out.Kinds) != 3 || out.Kinds[0]["kind"] != "zip" || out.Kinds[1]["kind"] != "zip-disk" || out.Kinds[2]["kind"] != "image" {
		t.Fatalf("want one run of the kinds zip, zip-disk and image:\n%s", stdout)
	}
	for _, row := range out.Kinds {
		keys := []string{"cold_p50_ms", "cold_p90_ms", "resume_p50_ms", "resume_p90_ms", "clone_p50_ms", "clone_p90_ms", "build_ms"}
		if row["kind"] == "image" {
			keys = append(keys, "root_build_ms")
		}
		for _, k := range keys {
			if v, ok := row[k].(float64); !ok || v <= 0 {
				t.Errorf("%s: %s = %v, want a positive number", row["kind"], k, row[k])
			}
		}
	}
}

func TestBenchKindsRefusesAnUnknownKind(t *testing.T) {
	code, _, stderr := run(t, nil, "bench", "kinds", "--kinds", "zip,cobol")
	if code == ExitOK || !strings.Contains(stderr, `unknown kind "cobol"`) {
		t.Errorf("exit %d, stderr %q; want a refusal naming the kind", code, stderr)
	}
}
