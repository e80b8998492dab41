package api

import (
	"archive/zip"
	"bytes"
	"errors"
	"testing"
)

func TestCheckManaged(t *testing.T) {
	notBuilt := errors.New("no /cache/runtimes/current/nodejs18.x.ext4: run `make runtimes`")
	a := &API{cfg: Config{RuntimeRoot: func(rt string) error {
		if rt == "nodejs18.x" {
			return notBuilt
		}
		return nil
	}}}
	tests := []struct {
		runtime, handler, want string
	}{
		{"python3.11", "app.handler", ""},
		{"python3.11", "", "The Handler is required for the runtime python3.11"},
		{"nodejs18.x", "index.handler", "make runtimes"},
		{"provided.al2023", "", ""}, // its bootstrap is its own
		{"", "", ""},                // an image
	}
	for _, tc := range tests {
		wantInvalid(t, tc.runtime+" "+tc.handler, a.checkManaged(tc.runtime, tc.handler), tc.want)
	}
}

// A managed runtime's zip has no bootstrap; a provided runtime's must.
func TestPutCodeByRuntime(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("app.py")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("def handler(e, c):\n    return 1\n")); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	a := newTestAPI(t)
	a.cfg.ValidateCode = func([]byte) error { return errors.New("needs a bootstrap") }
	if _, _, err := a.putCode(functionCode{ZipFile: buf.Bytes()}, "python3.11"); err != nil {
		t.Errorf("python3.11: %v", err)
	}
	if _, _, err := a.putCode(functionCode{ZipFile: buf.Bytes()}, "provided.al2023"); err == nil {
		t.Error("provided.al2023: no bootstrap accepted")
	}
	if _, _, err := a.putCode(functionCode{ZipFile: []byte("not a zip")}, "nodejs18.x"); err == nil {
		t.Error("nodejs18.x: a broken zip accepted")
	}
}
