package scheduler

import (
	"context"
	"os"
	"testing"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// A suspended environment taken out for a move is out of reach of
// invocations until it is returned (then resumed as before) or moved
// (then gone: folder and record).
func TestTakeReturnMoved(t *testing.T) {
	fx := newFixture(t, nil, t.TempDir(), 8)
	s := fx.s
	f := fn("counter", 0)
	suspended := func() bool { return s.Stats().Suspended == 1 }
	if _, n := call(t, s, f, `{}`); n != 1 {
		t.Fatalf("first call count %d", n)
	}
	waitFor(t, "suspended", suspended)
	envs := s.SuspendedEnvs()
	if len(envs) != 1 || envs[0].Function.Name != "counter" || envs[0].Dir == "" {
		t.Fatalf("suspended envs: %+v", envs)
	}
	id, dir := envs[0].ID, envs[0].Dir

	tk, ok := s.Take(id)
	if !ok || tk.Env().ID != id {
		t.Fatalf("take: %v", ok)
	}
	if _, again := s.Take(id); again {
		t.Fatal("taken twice")
	}
	if st := s.Stats(); st.Suspended != 0 {
		t.Fatalf("taken env still counted: %+v", st)
	}
	tk.Return()
	res, n := call(t, s, f, `{}`)
	if n != 2 || res.StartType != sandbox.StartResume {
		t.Fatalf("after return: count %d start %s, want 2 resume", n, res.StartType)
	}
	waitFor(t, "suspended again", suspended)

	tk, ok = s.Take(s.SuspendedEnvs()[0].ID)
	if !ok {
		t.Fatal("take again")
	}
	tk.Moved()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("moved env's folder: %v", err)
	}
	recs, err := fx.store.Envs(context.Background())
	if err != nil || len(recs) != 0 {
		t.Errorf("records after the move: %+v %v", recs, err)
	}
	res, n = call(t, s, f, `{}`)
	if n != 1 || res.StartType != sandbox.StartCold {
		t.Fatalf("after the move: count %d start %s, want 1 cold", n, res.StartType)
	}
}
