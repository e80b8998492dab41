package invoke

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// fakeSlots records the takes; a key in full refuses.
type fakeSlots struct {
	mu       sync.Mutex
	full     map[string]bool
	takes    []string // "key/limit"
	inFlight int
}

func (f *fakeSlots) Take(_ context.Context, key string, limit int) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.takes = append(f.takes, fmt.Sprintf("%s/%d", key, limit))
	if f.full[key] {
		return nil, errors.New("no slot")
	}
	f.inFlight++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.inFlight--
	}, nil
}

// The serving host takes the invocation's slot in the cluster: the
// function's own when it reserves concurrency, else the account's
// unreserved pool (the account's limit less all reservations); a slot
// refused is Lambda's 429 with the same reason the scheduler gives on one
// host, and nothing runs.
func TestAdmissionTakesTheClusterSlot(t *testing.T) {
	cases := []struct {
		name       string
		function   string
		full       string
		wantTake   string
		wantReason string
	}{
		{"reserved function", "r", "", "fn.r/2", ""},
		{"unreserved function", "u", "", "account/7", ""},
		{"reserved function, slots all held", "r", "fn.r", "fn.r/2", reasonReserved},
		{"unreserved function, pool all held", "u", "account", "account/7", reasonAccount},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			ctx := context.Background()
			fx.create(t, "r")
			fx.create(t, "u")
			fx.create(t, "other")
			two, one := 2, 1
			if err := fx.store.SetConcurrency(ctx, "r", &two); err != nil {
				t.Fatal(err)
			}
			if err := fx.store.SetConcurrency(ctx, "other", &one); err != nil {
				t.Fatal(err)
			}
			slots := &fakeSlots{full: map[string]bool{tc.full: true}}
			cfg := fx.svc.cfg
			cfg.Slots, cfg.AccountConcurrency = slots, 10
			svc := New(cfg)
			res, err := svc.Invoke(ctx, Request{Function: tc.function, Payload: []byte(`{}`)})
			if fmt.Sprint(slots.takes) != fmt.Sprint([]string{tc.wantTake}) {
				t.Fatalf("takes %v, want [%s]", slots.takes, tc.wantTake)
			}
			if tc.wantReason == "" {
				if err != nil || res.Error != nil {
					t.Fatalf("invoke: %v %+v", err, res)
				}
				if slots.inFlight != 0 {
					t.Fatalf("%d slots still in use after the call ended", slots.inFlight)
				}
				return
			}
			var th *lambdaerr.Throttled
			if !errors.As(err, &th) || th.Reason != tc.wantReason || th.Err.Status != 429 {
				t.Fatalf("got %v, want a 429 with reason %s", err, tc.wantReason)
			}
			if n := len(fx.meter.all()); n != 0 {
				t.Fatalf("%d invocations metered, want none run", n)
			}
		})
	}
}

// The unreserved pool follows the reservations as they change.
func TestAdmissionUnreservedFollowsReservations(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	fx.create(t, "u")
	fx.create(t, "r")
	slots := &fakeSlots{}
	cfg := fx.svc.cfg
	cfg.Slots, cfg.AccountConcurrency = slots, 10
	svc := New(cfg)
	for _, reserve := range []int{0, 4, 12} {
		if err := fx.store.SetConcurrency(ctx, "r", &reserve); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Invoke(ctx, Request{Function: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(slots.takes); got != "[account/10 account/6 account/0]" {
		t.Fatalf("takes %s", got)
	}
}

// Standalone (no Slots) the scheduler's limits are the whole admission,
// as before.
func TestAdmissionStandaloneUnchanged(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	fx.create(t, "r")
	zero := 0
	if err := fx.store.SetConcurrency(ctx, "r", &zero); err != nil {
		t.Fatal(err)
	}
	_, err := fx.svc.Invoke(ctx, Request{Function: "r"})
	var th *lambdaerr.Throttled
	if !errors.As(err, &th) || th.Reason != reasonReserved {
		t.Fatalf("got %v, want the scheduler's reserved-concurrency throttle", err)
	}
}
