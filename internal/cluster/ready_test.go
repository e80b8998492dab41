package cluster

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

func TestReadySet(t *testing.T) {
	var nilSet *ReadySet
	nilSet.UsedCode("a")
	if nilSet.Ready() != nil {
		t.Fatal("a nil set records nothing")
	}
	s := &ReadySet{}
	if s.Ready() != nil {
		t.Fatal("an empty set is no record")
	}
	s.UsedCode("")
	s.UsedRoot("")
	if s.Ready() != nil {
		t.Fatal("empty keys recorded")
	}
	for i := range MaxReady + 10 {
		s.UsedCode(fmt.Sprint(i))
	}
	s.UsedCode("3") // used again: first
	r := s.Ready()
	if len(r.Code) != MaxReady || r.Code[0] != "3" || r.Code[1] != fmt.Sprint(MaxReady+9) || slices.Contains(r.Code, "9") {
		t.Errorf("code: %d entries, first %v", len(r.Code), r.Code[:3])
	}
	if !r.HasCode("3") || r.HasCode("0") || r.HasRoot("3") {
		t.Error("HasCode/HasRoot")
	}
	s.UsedRoot("x")
	s.HasRoot("y")
	s.HasRoot("x")
	s.UsedRoot("y")
	if got := s.Ready().Roots; !slices.Equal(got, []string{"y", "x"}) {
		t.Errorf("roots %v, want [y x]", got)
	}
	// The record stays small: the heartbeat carries it every second.
	for i := range MaxReady + 10 {
		s.UsedRoot(RootKey(fmt.Sprintf("sha256:%064x", i)))
		s.UsedCode(CodeKey(fmt.Sprintf("%064x", i), []string{"l"}))
	}
	b, err := json.Marshal(s.Ready())
	if err != nil || len(b) > 12<<10 {
		t.Errorf("record of %d bytes (%v)", len(b), err)
	}
	var nilReady *Ready
	if nilReady.HasCode("a") || nilReady.HasRoot("a") {
		t.Error("a nil Ready has nothing")
	}
}

func TestKeys(t *testing.T) {
	if CodeKey("", []string{"l"}) != "" || RootKey("python3.12@abc") != "" || RootKey("sha256:12") != "" {
		t.Error("keys of what every host has should be empty")
	}
	a, b := CodeKey("d", []string{"l1", "l2"}), CodeKey("d", []string{"l2", "l1"})
	if a == b || len(a) != keyLen || a == CodeKey("d", nil) {
		t.Errorf("layers' order and presence must change the key: %s %s", a, b)
	}
	if RootKey("sha256:0123456789abcdef99") != "0123456789abcdef" {
		t.Error(RootKey("sha256:0123456789abcdef99"))
	}
}
