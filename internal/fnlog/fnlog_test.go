package fnlog

import (
	"strings"
	"testing"
)

func TestTailAndFollow(t *testing.T) {
	l, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		l.Printf("f", "line %d", i)
	}
	tests := []struct {
		n    int
		want string
	}{
		{2, "line 4\nline 5\n"},
		{5, "line 1\nline 2\nline 3\nline 4\nline 5\n"},
		{9, "line 1\nline 2\nline 3\nline 4\nline 5\n"},
	}
	for _, tt := range tests {
		got, _, err := l.Tail("f", tt.n)
		if err != nil || string(got) != tt.want {
			t.Errorf("tail %d: %q %v, want %q", tt.n, got, err, tt.want)
		}
	}
	_, off, _ := l.Tail("f", 1)
	l.Printf("f", "line 6")
	more, off2, err := l.ReadFrom("f", off)
	if err != nil || string(more) != "line 6\n" || off2 <= off {
		t.Errorf("follow: %q %d %v", more, off2, err)
	}
	if got, _, _ := l.Tail("missing", 3); len(got) != 0 {
		t.Errorf("missing log: %q", got)
	}
	big := strings.Repeat("x", MaxBytes/2)
	l.Printf("g", "%s", big)
	l.Printf("g", "%s", big)
	if got, _, _ := l.Tail("g", 10); len(got) > MaxBytes/2+2 {
		t.Errorf("log not rotated: %d bytes", len(got))
	}
}
