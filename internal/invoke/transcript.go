package invoke

import (
	"fmt"
	"io"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// TailBytes is how much of an invocation's log X-Amz-Log-Type: Tail
// returns, as Lambda.
const TailBytes = 4096

// transcript writes an invocation's START, END and REPORT lines to the
// function's log, and rebuilds the same lines around the invocation's
// output for its tail.
type transcript struct {
	log       io.Writer
	requestID string
	start     string
	after     string
}

func newTranscript(log io.Writer, requestID, version string) *transcript {
	t := &transcript{log: log, requestID: requestID,
		start: fmt.Sprintf("START RequestId: %s Version: %s\n", requestID, version)}
	_, _ = io.WriteString(log, t.start)
	return t
}

// end writes END, and REPORT when the invocation ran (res is nil when it
// could not).
func (t *transcript) end(res *sandbox.Result, fn sandbox.Function) {
	t.after = fmt.Sprintf("END RequestId: %s\n", t.requestID)
	if res != nil && res.Duration > 0 {
		t.after += res.Report(fn) + "\n"
	}
	_, _ = io.WriteString(t.log, t.after)
}

// tail is the last TailBytes of START, the invocation's output and END and
// REPORT: what Lambda returns in X-Amz-Log-Result.
func (t *transcript) tail(res *sandbox.Result) []byte {
	var out []byte
	out = append(out, t.start...)
	if res != nil {
		out = append(out, res.LogTail...)
		if n := len(res.LogTail); n > 0 && res.LogTail[n-1] != '\n' {
			out = append(out, '\n')
		}
	}
	out = append(out, t.after...)
	if len(out) > TailBytes {
		out = out[len(out)-TailBytes:]
	}
	return out
}
