package sandbox_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// TestInitBudget: an init past Lambda's init limit goes on under the
// function's timeout, as Lambda's retried init does; one past both fails
// with the time it had.
func TestInitBudget(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		timeout time.Duration
		wantErr string
	}{
		{"within the init limit", map[string]string{"FAKE_INIT_MS": "50"}, time.Second, ""},
		{"past the init limit, within the function's timeout", map[string]string{"FAKE_INIT_MS": "700"}, time.Second, ""},
		{"past both", map[string]string{"FAKE_INIT": string(fakevmm.Silent)}, time.Second, "Task timed out after 1.30 seconds (init did not finish)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostile(t) // init limit 300 ms
			f := fn(tc.env)
			f.Timeout = tc.timeout
			env, err := h.boot(t, f)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("boot: %v", err)
				}
				if res, err := invokeWithin(t, 3*time.Second, env, event(`{}`)); err != nil || res.Error != nil {
					t.Fatalf("invoke after a long init: %v %+v", err, res)
				}
				return
			}
			var ie *sandbox.InitError
			if !errors.As(err, &ie) || !strings.Contains(ie.Object.ErrorMessage, tc.wantErr) {
				t.Fatalf("boot: %v, want an init error %q", err, tc.wantErr)
			}
		})
	}
}
