package guestimage

import (
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

func TestValidateLayerZip(t *testing.T) {
	// A layer's bootstrap is just a file; damage the other entry's data.
	corrupt := damage(t, storedZip(t, "#!/bin/sh", "never seen"), "never")
	tests := []struct {
		name     string
		data     []byte
		wantSize int64
		wantMsg  string // "" for success
	}{
		{"no bootstrap is fine", makeZip(t, entry{"python/mod.py", 0o644, "x = 1\n", true}, entry{"bin/tool", 0o755, "bin", true}), 9, ""},
		{"not a zip", []byte("nope"), 0, "Could not unzip"},
		{"a bad CRC", corrupt, 0, "Could not unzip"},
		{"path escapes /opt", makeZip(t, entry{"../etc/passwd", 0o644, "x", true}), 0, "outside the task root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, err := ValidateLayerZip(tt.data)
			if tt.wantMsg == "" {
				if err != nil || size != tt.wantSize {
					t.Fatalf("got %d, %v; want %d", size, err, tt.wantSize)
				}
				return
			}
			le, ok := lambdaerr.As(err)
			if !ok || le.Type != "InvalidParameterValueException" || !strings.Contains(le.Message, tt.wantMsg) {
				t.Fatalf("got %v, want InvalidParameterValueException with %q", err, tt.wantMsg)
			}
		})
	}
	if n, err := UnzippedSize(makeZip(t, entry{"a", 0o644, "12345", true}, entry{"b/c", 0o644, "678", true})); err != nil || n != 8 {
		t.Errorf("UnzippedSize = %d, %v; want 8", n, err)
	}
}
