package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// `fn create --runtime` makes a function of a managed runtime from a zip
// with no bootstrap; nothing is invoked, so no VM boots.
func TestFnCreateRuntime(t *testing.T) {
	d := startCLIDaemon(t)
	hearth := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		return d.hearth(t, wantCode, args...)
	}
	py := writeZip(t, "app.py", "def handler(event, context):\n    return 1\n")
	hearth(ExitOK, "fn", "create", "py", "--runtime", "python3.11", "--handler", "app.handler", "--zip", py)
	out, _ := hearth(ExitOK, "fn", "get", "py", "-o", "json")
	var f struct{ Runtime, Handler string }
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("fn get: %s %v", out, err)
	}
	if f.Runtime != "python3.11" || f.Handler != "app.handler" {
		t.Errorf("created with Runtime %q Handler %q, want python3.11 app.handler", f.Runtime, f.Handler)
	}

	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"no handler for python", "Handler is required", []string{"--runtime", "python3.11", "--zip", py}},
		{"provided needs a bootstrap", "bootstrap", []string{"--zip", py}},
		{"unknown runtime", "python2.7", []string{"--runtime", "python2.7", "--handler", "app.handler", "--zip", py}},
		{"runtime with an image", "--runtime is for --zip", []string{"--runtime", "python3.11", "--image", "hearth-local@sha256:" + strings.Repeat("0", 64)}},
	} {
		if _, errOut := hearth(ExitBadInput, append([]string{"fn", "create", "refused"}, tc.args...)...); !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: %s, want it to say %q", tc.name, errOut, tc.want)
		}
	}
}
