package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// payloadHelp is the one description of --payload, shared by every command
// that invokes a function, so they all take an event the same way: the aws
// CLI's way.
const payloadHelp = "the event: JSON inline, file://PATH or fileb://PATH to read a file, - to read stdin"

// defaultPayload is what a function gets when no payload is given, as the
// Lambda console sends.
const defaultPayload = "{}"

// registerPayload adds --payload to cmd.
func registerPayload(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "payload", defaultPayload, payloadHelp)
}

// readPayload reads the event a --payload argument names: inline JSON,
// file://PATH and fileb://PATH (the aws CLI's prefixes; both read the file's
// bytes as they are), or - for stdin. It refuses, before anything runs, an
// event over Lambda's 6 MB limit, a file it cannot read and an event that is
// not JSON, with Lambda's error names (the CLI exits 2 on them).
func readPayload(arg string, stdin io.Reader) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	switch {
	case arg == "-":
		if b, err = readLimited(stdin); err != nil {
			return nil, fmt.Errorf("payload from stdin: %w", err)
		}
	case strings.HasPrefix(arg, "file://"), strings.HasPrefix(arg, "fileb://"):
		_, path, _ := strings.Cut(arg, "://")
		if b, err = readPayloadFile(path); err != nil {
			return nil, err
		}
	default:
		b = []byte(arg)
	}
	if len(b) > sandbox.MaxPayloadBytes {
		return nil, tooLarge(len(b))
	}
	if !json.Valid(b) {
		return nil, lambdaerr.InvalidParameter("the payload is not valid JSON (give JSON inline, file://PATH, fileb://PATH or - for stdin)")
	}
	return b, nil
}

// readPayloadFile reads a payload file, refusing one over the limit by its
// size before reading it; a pipe or a growing file is cut at the limit.
func readPayloadFile(path string) ([]byte, error) {
	if path == "" {
		return nil, lambdaerr.InvalidParameter("payload file: no path after the prefix")
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, lambdaerr.InvalidParameter("payload file %s does not exist", path)
	}
	if err != nil {
		return nil, lambdaerr.InvalidParameter("payload file: %v", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		if fi.IsDir() {
			return nil, lambdaerr.InvalidParameter("payload file %s is a directory", path)
		}
		if fi.Mode().IsRegular() && fi.Size() > sandbox.MaxPayloadBytes {
			return nil, tooLarge(int(fi.Size()))
		}
	}
	b, err := readLimited(f)
	if err != nil {
		return nil, fmt.Errorf("payload file %s: %w", path, err)
	}
	return b, nil
}

// readLimited reads at most one byte over the limit: enough to tell that a
// payload is too large without holding an unbounded one in memory.
func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, sandbox.MaxPayloadBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > sandbox.MaxPayloadBytes {
		return nil, lambdaerr.RequestTooLarge("Request must be smaller than %d bytes for the InvokeFunction operation (got more)", sandbox.MaxPayloadBytes)
	}
	return b, nil
}

func tooLarge(n int) error {
	return lambdaerr.RequestTooLarge("Request must be smaller than %d bytes for the InvokeFunction operation (got %d bytes)", sandbox.MaxPayloadBytes, n)
}
