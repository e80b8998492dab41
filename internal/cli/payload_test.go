package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
)

func TestReadPayload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	event := write("event.json", `{"name":"Ada"}`)
	utf8 := write("utf8.json", "{\"name\":\"Ada Lovelace \u00e9\u00e8\u4e16\"}")
	empty := write("empty.json", "")
	notJSON := write("not.json", "{nope")
	big := write("big.json", `"`+strings.Repeat("a", sandbox.MaxPayloadBytes)+`"`)
	atLimit := `"` + strings.Repeat("a", sandbox.MaxPayloadBytes-2) + `"`
	overLimit := `"` + strings.Repeat("a", sandbox.MaxPayloadBytes-1) + `"`

	tests := []struct {
		name    string
		arg     string
		stdin   io.Reader
		want    string
		errType string // a lambdaerr type: refused as bad input
		errText string
	}{
		{name: "inline JSON", arg: `{"name":"Ada"}`, want: `{"name":"Ada"}`},
		{name: "default", arg: defaultPayload, want: `{}`},
		{name: "inline scalar", arg: `42`, want: `42`},
		{name: "file://", arg: "file://" + event, want: `{"name":"Ada"}`},
		{name: "fileb:// reads the bytes as they are", arg: "fileb://" + utf8, want: "{\"name\":\"Ada Lovelace \u00e9\u00e8\u4e16\"}"},
		{name: "stdin", arg: "-", stdin: strings.NewReader(`{"from":"stdin"}`), want: `{"from":"stdin"}`},
		{name: "stdin in small reads", arg: "-", stdin: iotest.OneByteReader(strings.NewReader(`[1,2,3]`)), want: `[1,2,3]`},
		{name: "exactly 6 MB inline", arg: atLimit, want: atLimit},
		{name: "missing file", arg: "file://" + filepath.Join(dir, "nope.json"), errType: "InvalidParameterValueException",
			errText: "payload file " + filepath.Join(dir, "nope.json") + " does not exist"},
		{name: "missing fileb", arg: "fileb://" + filepath.Join(dir, "nope.bin"), errType: "InvalidParameterValueException", errText: "does not exist"},
		{name: "no path after the prefix", arg: "file://", errType: "InvalidParameterValueException", errText: "no path"},
		{name: "a directory", arg: "file://" + dir, errType: "InvalidParameterValueException", errText: "is a directory"},
		{name: "empty file", arg: "file://" + empty, errType: "InvalidParameterValueException", errText: "not valid JSON"},
		{name: "not JSON inline", arg: "{nope", errType: "InvalidParameterValueException", errText: "not valid JSON"},
		{name: "not JSON in a file", arg: "file://" + notJSON, errType: "InvalidParameterValueException", errText: "not valid JSON"},
		{name: "over 6 MB inline", arg: overLimit, errType: "RequestTooLargeException", errText: "got 6291457 bytes"},
		{name: "over 6 MB file", arg: "file://" + big, errType: "RequestTooLargeException", errText: "got 6291458 bytes"},
		{name: "over 6 MB on stdin", arg: "-", stdin: strings.NewReader(overLimit), errType: "RequestTooLargeException", errText: "smaller than 6291456 bytes"},
		{name: "stdin fails", arg: "-", stdin: iotest.ErrReader(io.ErrUnexpectedEOF), errText: "payload from stdin: unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdin := tt.stdin
			if stdin == nil {
				stdin = strings.NewReader("stdin must not be read")
			}
			got, err := readPayload(tt.arg, stdin)
			if tt.errText == "" {
				if err != nil {
					t.Fatalf("readPayload: %v", err)
				}
				if !bytes.Equal(got, []byte(tt.want)) {
					t.Errorf("payload %.60q, want %.60q", got, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("error %v, want one containing %q", err, tt.errText)
			}
			le, ok := lambdaerr.As(err)
			switch {
			case tt.errType == "" && ok:
				t.Errorf("error %v is a refusal (%s); want a host error", err, le.Type)
			case tt.errType != "" && (!ok || le.Type != tt.errType || le.Status >= 500):
				t.Errorf("error %v: want a refusal %s", err, tt.errType)
			}
		})
	}
}

// Every command that invokes refuses a bad payload before anything starts
// (no VM, no daemon: the endpoint below answers nothing), with exit 2.
func TestPayloadRefusedBeforeAnything(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`"`+strings.Repeat("a", 7<<20)+`"`), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.json")
	env := map[string]string{"HEARTH_DATA_DIR": dir, "HEARTH_ENDPOINT": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
	zip := filepath.Join(dir, "never-read.zip")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"run over 6 MB", []string{"run", "--zip", zip, "--payload", "file://" + big}, "RequestTooLargeException"},
		{"run over 6 MB by --event-file", []string{"run", "--zip", zip, "--event-file", big}, "RequestTooLargeException"},
		{"run missing file", []string{"run", "--zip", zip, "--payload", "fileb://" + missing}, "does not exist"},
		{"run payload twice", []string{"run", "--zip", zip, "--payload", "{}", "--event", "{}"}, "give the payload once"},
		{"run --event not JSON", []string{"run", "--zip", zip, "--event", "{nope"}, "not valid JSON"},
		{"env invoke over 6 MB", []string{"env", "invoke", "env-none", "--payload", "file://" + big}, "RequestTooLargeException"},
		{"env invoke positional over 6 MB", []string{"env", "invoke", "env-none", "file://" + big}, "RequestTooLargeException"},
		{"env invoke missing file", []string{"env", "invoke", "env-none", "--payload", "file://" + missing}, "does not exist"},
		{"env invoke payload twice", []string{"env", "invoke", "env-none", "{}", "--payload", "{}"}, "give the payload once"},
		{"invoke over 6 MB", []string{"invoke", "hello", "--payload", "fileb://" + big}, "RequestTooLargeException"},
		{"invoke missing file", []string{"invoke", "hello", "--payload", "file://" + missing}, "does not exist"},
		{"invoke not JSON", []string{"invoke", "hello", "--payload", "nope"}, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, env, tt.args...)
			if code != ExitBadInput || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, ExitBadInput, tt.wantErr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}
