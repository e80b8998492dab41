package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/spans"
)

// guestInvoker stands for a guest that holds each invocation for guest,
// marking the frame out and the answer in as the sandbox does.
type guestInvoker struct {
	noInvoker
	guest time.Duration
}

func (g guestInvoker) Invoke(ctx context.Context, _ invoke.Request) (*invoke.Result, error) {
	rec := spans.From(ctx)
	rec.Mark(spans.FrameSent)
	time.Sleep(g.guest)
	rec.Mark(spans.FrameReceived)
	return &invoke.Result{RequestID: "r", Version: "$LATEST", Payload: []byte(`{}`)}, nil
}

// shares keeps what the API observed for /metrics.
type shares struct{ got []time.Duration }

func (s *shares) HostShare(d time.Duration) { s.got = append(s.got, d) }

// The host's share is answered only to a caller that asks, and leaves the
// guest's time out; it is observed for /metrics either way.
func TestInvokeHostShare(t *testing.T) {
	const guest = 50 * time.Millisecond
	for _, ask := range []bool{false, true} {
		t.Run("asked="+strconv.FormatBool(ask), func(t *testing.T) {
			a := newTestAPI(t)
			a.cfg.Invoker = guestInvoker{guest: guest}
			observed := &shares{}
			a.cfg.HostShares = observed
			r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9000/2015-03-31/functions/f/invocations", bytes.NewReader(nil))
			if ask {
				r.Header.Set(spansHeader, "1")
			}
			sum := sha256.Sum256(nil)
			creds := aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
			if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "lambda", "local", time.Now()); err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			start := time.Now()
			a.ServeHTTP(w, r)
			total := time.Since(start)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if len(observed.got) != 1 || observed.got[0] < 0 || observed.got[0] > total-guest {
				t.Errorf("observed host shares %v; want one within 0..%v", observed.got, total-guest)
			}
			host, marks := w.Header().Get(hostShareHeader), w.Header().Get(spansHeader)
			if !ask {
				if host != "" || marks != "" {
					t.Fatalf("answered the host's timing unasked: %q, %q", host, marks)
				}
				return
			}
			us, err := strconv.ParseInt(host, 10, 64)
			if err != nil {
				t.Fatalf("%s = %q: %v", hostShareHeader, host, err)
			}
			if d := time.Duration(us) * time.Microsecond; d < 0 || d > total-guest {
				t.Errorf("host share %v; want within 0..%v (the whole %v less the guest's %v)", d, total-guest, total, guest)
			}
			for _, m := range []string{"received=0", "verified=", "frame_sent=", "frame_received=", "answered="} {
				if !strings.Contains(marks, m) {
					t.Errorf("%s = %q lacks %q", spansHeader, marks, m)
				}
			}
		})
	}
}
