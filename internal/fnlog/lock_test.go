package fnlog

import (
	"testing"
	"time"
)

// A function's log being written (its lock held) must not hold up another
// function's: the invocations of different functions do not wait on each
// other's log files. The same function's writes still wait their turn.
func TestWritesOfOtherFunctionsDoNotWait(t *testing.T) {
	l, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write := func(function string) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := l.Writer(function).Write([]byte("line\n"))
			done <- err
		}()
		return done
	}
	held := l.lock("busy")
	held.Lock()
	select {
	case err := <-write("other"):
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		held.Unlock()
		t.Fatal("a write of another function's log waited for function busy's lock")
	}
	same := write("busy")
	select {
	case <-same:
		t.Error("a write of busy's log did not wait for its lock")
	case <-time.After(50 * time.Millisecond):
	}
	held.Unlock()
	if err := <-same; err != nil {
		t.Fatal(err)
	}
	b, _, err := l.Tail("busy", 10)
	if err != nil || string(b) != "line\n" {
		t.Errorf("busy's log = %q, %v; want one line", b, err)
	}
}
