package microvm

import (
	"context"
	"errors"
	"os"
	"testing"
)

// TakeForMove takes a suspended MicroVM, suspends a running idle one whose
// idle policy allows it, leaves one with no policy (ErrStays) or one in
// use (ErrNotNow); Return gives it back, Moved forgets it here.
func TestTakeForMove(t *testing.T) {
	policy := &IdlePolicy{MaxIdleDurationSeconds: 3600, AutoResumeEnabled: true}
	for _, tc := range []struct {
		name    string
		policy  *IdlePolicy
		suspend bool // suspended before the take
		hold    bool // an open connection during the take
		want    error
		moved   bool // Moved after the take (else Return)
	}{
		{name: "running, no idle policy", want: ErrStays},
		{name: "running, in use", policy: policy, hold: true, want: ErrNotNow},
		{name: "running, idle", policy: policy},
		{name: "suspended", suspend: true},
		{name: "suspended, moved", suspend: true, moved: true},
		{name: "running with no idle policy, suspended by a call", suspend: true, moved: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			ctx := context.Background()
			fx.image("img", nil)
			v, err := fx.m.Run(ctx, RunInput{ImageIdentifier: "img", IdlePolicy: tc.policy})
			if err != nil {
				t.Fatal(err)
			}
			if tc.suspend {
				if err := fx.m.Suspend(ctx, v.ID); err != nil {
					t.Fatal(err)
				}
			}
			if tc.hold {
				_, release, err := fx.m.Hold(ctx, v.ID)
				if err != nil {
					t.Fatal(err)
				}
				defer release()
			}
			before := fx.state(v.ID)
			out, err := fx.m.TakeForMove(ctx, v.ID)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("take: %v, want %v", err, tc.want)
				}
				if s := fx.state(v.ID); s != before {
					t.Errorf("after a refused take: %s, want %s", s, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.Dir == "" || out.Export.Record.ID != v.ID || fx.state(v.ID) != StateSuspended {
				t.Fatalf("taken: %+v, state %s", out.Export.Record, fx.state(v.ID))
			}
			// Taken, nothing else operates on it.
			if _, err := fx.m.TakeForMove(ctx, v.ID); !errors.Is(err, ErrNotNow) {
				t.Errorf("a second take: %v, want ErrNotNow", err)
			}
			if !tc.moved {
				out.Return()
				if err := fx.m.Resume(ctx, v.ID); err != nil {
					t.Fatalf("resume after Return: %v", err)
				}
				return
			}
			out.Moved(ctx, "b")
			if _, err := fx.m.Get(ctx, v.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after Moved: %v, want not found", err)
			}
			if _, err := os.Stat(out.Dir); !os.IsNotExist(err) {
				t.Errorf("its folder after Moved: %v", err)
			}
			recs, err := fx.st.MicroVMs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 0 {
				t.Errorf("records after Moved: %+v", recs)
			}
			if err := fx.m.CanAdopt(v.ID); err != nil {
				t.Errorf("CanAdopt after Moved: %v", err)
			}
		})
	}
}
