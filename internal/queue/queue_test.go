package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/store"
)

// env is a Service on a real broker and a real store in a folder, which
// can be stopped and started again on the same folder.
type env struct {
	t   *testing.T
	dir string
	b   *broker.Broker
	st  *store.Store
	svc *Service
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir()}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.New(ctx, broker.Config{Dir: filepath.Join(e.dir, "jetstream"), Log: log})
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := store.Open(ctx, e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	svc, err := New(ctx, Config{Store: st, JetStream: b.JetStream(), Conn: b.Conn(), Region: "us-east-1", Key: testKey, Log: log})
	if err != nil {
		e.t.Fatal(err)
	}
	e.b, e.st, e.svc = b, st, svc
}

func (e *env) stop() {
	if e.b == nil {
		return
	}
	e.b.Shutdown(context.Background())
	e.st.Close()
	e.b = nil
}

func (e *env) create(name string, attrs map[string]string) {
	e.t.Helper()
	if _, err := e.svc.Create(context.Background(), name, attrs); err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
}

func (e *env) send(name, body string) Sent {
	e.t.Helper()
	s, err := e.svc.Send(context.Background(), name, Message{Body: body})
	if err != nil {
		e.t.Fatalf("send: %v", err)
	}
	return s
}

func (e *env) receive(name string, max int, wait, vis time.Duration) []Received {
	e.t.Helper()
	r, err := e.svc.Receive(context.Background(), name, max, wait, vis)
	if err != nil {
		e.t.Fatalf("receive: %v", err)
	}
	return r
}

func (e *env) stats(name string) Stats {
	e.t.Helper()
	s, err := e.svc.Stats(context.Background(), name)
	if err != nil {
		e.t.Fatalf("stats: %v", err)
	}
	return s
}

func TestSendReceiveDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("q", nil)
	attrs := map[string]MessageAttribute{"kind": {DataType: "String", StringValue: "order"}, "n": {DataType: "Number", StringValue: "42"},
		"raw": {DataType: "Binary", BinaryValue: []byte{0, 1, 2}}}
	sent, err := e.svc.Send(ctx, "q", Message{Body: "hello", Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	if sent.MD5OfBody != "5d41402abc4b2a76b9719d911017c592" || sent.MessageID == "" {
		t.Fatalf("sent %+v", sent)
	}
	if s := e.stats("q"); s.Visible != 1 || s.InFlight != 0 || s.Delayed != 0 {
		t.Errorf("after a send: %+v", s)
	}
	got := e.receive("q", 10, 0, 0)
	if len(got) != 1 {
		t.Fatalf("received %d messages", len(got))
	}
	m := got[0]
	if m.Body != "hello" || m.MessageID != sent.MessageID || m.MD5OfBody != sent.MD5OfBody || m.Attributes["ApproximateReceiveCount"] != "1" {
		t.Errorf("received %+v", m)
	}
	if m.MessageAttributes["n"].StringValue != "42" || string(m.MessageAttributes["raw"].BinaryValue) != "\x00\x01\x02" || m.MessageAttributes["kind"].DataType != "String" {
		t.Errorf("attributes %+v", m.MessageAttributes)
	}
	if MD5OfAttributes(m.MessageAttributes) != MD5OfAttributes(attrs) {
		t.Error("the attributes' digest changed on the way")
	}
	for _, k := range []string{"SentTimestamp", "ApproximateFirstReceiveTimestamp", "SenderId"} {
		if m.Attributes[k] == "" {
			t.Errorf("no %s", k)
		}
	}
	if s := e.stats("q"); s.Visible != 0 || s.InFlight != 1 {
		t.Errorf("in flight: %+v", s)
	}
	if again := e.receive("q", 10, 0, 0); len(again) != 0 {
		t.Fatalf("a message in flight was received again: %+v", again)
	}
	if err := e.svc.Delete(ctx, "q", m.ReceiptHandle); err != nil {
		t.Fatal(err)
	}
	if s := e.stats("q"); s != (Stats{}) {
		t.Errorf("after the delete: %+v", s)
	}
	if err := e.svc.Delete(ctx, "q", m.ReceiptHandle); !errors.Is(err, ErrReceiptInvalid) {
		t.Errorf("a second delete: %v", err)
	}
	if err := e.svc.ChangeVisibility(ctx, "q", m.ReceiptHandle, time.Second); !errors.Is(err, ErrReceiptInvalid) {
		t.Errorf("changing a deleted message's visibility: %v", err)
	}
}

func TestVisibility(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("q", map[string]string{"VisibilityTimeout": "1"})
	e.send("q", "a")
	first := e.receive("q", 1, 0, 0)
	if len(first) != 1 {
		t.Fatal("nothing received")
	}
	if r := e.receive("q", 1, 0, 0); len(r) != 0 {
		t.Fatal("received while in flight")
	}
	// The queue's timeout ends: the message comes back, received twice.
	again := e.receive("q", 1, 3*time.Second, 0)
	if len(again) != 1 || again[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("after the visibility timeout: %+v", again)
	}
	if again[0].Attributes["ApproximateFirstReceiveTimestamp"] != first[0].Attributes["ApproximateFirstReceiveTimestamp"] {
		t.Error("the first receive's time changed")
	}
	// ChangeVisibility 0: visible at once.
	if err := e.svc.ChangeVisibility(ctx, "q", again[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	third := e.receive("q", 1, 0, 0)
	if len(third) != 1 || third[0].Attributes["ApproximateReceiveCount"] != "3" {
		t.Fatalf("after ChangeVisibility 0: %+v", third)
	}
	// Extended past the queue's timeout: hidden past it.
	if err := e.svc.ChangeVisibility(ctx, "q", third[0].ReceiptHandle, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if r := e.receive("q", 1, 1500*time.Millisecond, 0); len(r) != 0 {
		t.Fatal("visible before its extended timeout")
	}
	r := e.receive("q", 1, 3*time.Second, 0)
	if len(r) != 1 {
		t.Fatal("not visible after its extended timeout")
	}
	if err := e.svc.Delete(ctx, "q", r[0].ReceiptHandle); err != nil {
		t.Fatal(err)
	}
	// A receive's own VisibilityTimeout overrides the queue's.
	if err := e.svc.SetAttributes(ctx, "q", map[string]string{"VisibilityTimeout": "30"}); err != nil {
		t.Fatal(err)
	}
	e.send("q", "b")
	start := time.Now()
	e.receive("q", 1, 5*time.Second, time.Second)
	if r := e.receive("q", 1, 5*time.Second, time.Second); len(r) != 1 || time.Since(start) > 4*time.Second {
		t.Fatalf("a receive's visibility of 1 s: %d messages after %s", len(r), time.Since(start))
	}
}

func TestRedriveAfterMaxReceiveCount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("dlq", nil)
	e.create("src", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"2"}`})
	sent := e.send("src", "poison")
	for i := 1; i <= 2; i++ {
		r := e.receive("src", 1, 0, -1) // visible again at once
		if len(r) != 1 || r[0].Attributes["ApproximateReceiveCount"] != string(rune('0'+i)) {
			t.Fatalf("receive %d: %+v", i, r)
		}
	}
	if r := e.receive("src", 1, 0, -1); len(r) != 0 {
		t.Fatalf("received a third time: %+v", r)
	}
	moved := e.receive("dlq", 1, 0, 0)
	if len(moved) != 1 || moved[0].MessageID != sent.MessageID || moved[0].Body != "poison" || moved[0].Attributes["ApproximateReceiveCount"] != "1" {
		t.Fatalf("in the dead-letter queue: %+v", moved)
	}
	if s := e.stats("src"); s != (Stats{}) {
		t.Errorf("the source still counts %+v", s)
	}
	srcs, err := e.svc.DeadLetterSources(ctx, "dlq")
	if err != nil || len(srcs) != 1 || srcs[0].Name != "src" {
		t.Errorf("dead-letter sources: %+v %v", srcs, err)
	}
	if q, _ := e.svc.Get(ctx, "src"); q.Attributes.Strings()["RedrivePolicy"] != `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":2}` {
		t.Errorf("redrive policy reported as %q", q.Attributes.Strings()["RedrivePolicy"])
	}
}

func TestDelay(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("q", nil)
	start := time.Now()
	if _, err := e.svc.Send(ctx, "q", Message{Body: "later", DelaySeconds: 1}); err != nil {
		t.Fatal(err)
	}
	if s := e.stats("q"); s.Delayed != 1 || s.Visible != 0 {
		t.Errorf("a delayed message: %+v", s)
	}
	if r := e.receive("q", 1, 0, 0); len(r) != 0 {
		t.Fatal("a delayed message was received at once")
	}
	r := e.receive("q", 1, 5*time.Second, 0)
	if len(r) != 1 || r[0].Body != "later" {
		t.Fatalf("after the delay: %+v", r)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("received after %s", d)
	}
	if s := e.stats("q"); s.Delayed != 0 || s.InFlight != 1 {
		t.Errorf("after the delay: %+v", s)
	}
	// The queue's DelaySeconds applies to messages that name none.
	if err := e.svc.SetAttributes(ctx, "q", map[string]string{"DelaySeconds": "1"}); err != nil {
		t.Fatal(err)
	}
	e.send("q", "queue delay")
	if s := e.stats("q"); s.Delayed != 1 {
		t.Errorf("the queue's delay: %+v", s)
	}
	if _, err := e.svc.Send(ctx, "q", Message{Body: "x", DelaySeconds: 901}); !errors.Is(err, ErrInvalidParameter) {
		t.Errorf("a delay of 901 s: %v", err)
	}
}

func TestPurge(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("q", nil)
	for _, b := range []string{"a", "b", "c"} {
		e.send("q", b)
	}
	if _, err := e.svc.Send(ctx, "q", Message{Body: "d", DelaySeconds: 60}); err != nil {
		t.Fatal(err)
	}
	r := e.receive("q", 1, 0, 0)
	if err := e.svc.Purge(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if s := e.stats("q"); s != (Stats{}) {
		t.Errorf("after a purge: %+v", s)
	}
	if got := e.receive("q", 10, 0, 0); len(got) != 0 {
		t.Errorf("received after a purge: %+v", got)
	}
	if err := e.svc.Delete(ctx, "q", r[0].ReceiptHandle); !errors.Is(err, ErrReceiptInvalid) {
		t.Errorf("deleting a purged message: %v", err)
	}
	e.send("q", "after")
	if got := e.receive("q", 10, 0, 0); len(got) != 1 || got[0].Body != "after" {
		t.Errorf("a message after the purge: %+v", got)
	}
}

// The retention period is the stream's MaxAge, at creation and when it
// changes.
func TestRetention(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("q", map[string]string{"MessageRetentionPeriod": "120"})
	maxAge := func() time.Duration {
		st, _ := e.svc.state(ctx, "q")
		s, err := e.b.JetStream().Stream(ctx, streamName(st.rec.ID))
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.MaxAge
	}
	if got := maxAge(); got != 2*time.Minute {
		t.Errorf("MaxAge %s", got)
	}
	if err := e.svc.SetAttributes(ctx, "q", map[string]string{"MessageRetentionPeriod": "60"}); err != nil {
		t.Fatal(err)
	}
	if got := maxAge(); got != time.Minute {
		t.Errorf("MaxAge after a change %s", got)
	}
	if err := e.svc.SetAttributes(ctx, "q", map[string]string{"MessageRetentionPeriod": "59"}); !errors.Is(err, ErrInvalidAttributeValue) {
		t.Errorf("a retention of 59 s: %v", err)
	}
}

func TestLongPollWakesOnSend(t *testing.T) {
	e := newEnv(t)
	e.create("q", nil)
	go func() {
		time.Sleep(300 * time.Millisecond)
		e.send("q", "wake")
	}()
	start := time.Now()
	r := e.receive("q", 10, 10*time.Second, 0)
	if len(r) != 1 || r[0].Body != "wake" {
		t.Fatalf("long poll: %+v", r)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the long poll answered after %s", d)
	}
	// With nothing sent it waits its time, and no more.
	start = time.Now()
	if r := e.receive("q", 10, time.Second, 0); len(r) != 0 {
		t.Fatalf("received %+v", r)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("an empty long poll of 1 s took %s", d)
	}
	// A long poll ends with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := e.svc.Receive(ctx, "q", 1, 10*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a cancelled long poll took %s", d)
	}
}

// A restart keeps the messages: the visible ones, the delayed ones, and
// the ones in flight, which come back when their visibility ends; a
// receipt handle given before the restart still works after it.
func TestRestartKeepsMessages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("q", nil)
	e.send("q", "in flight")
	inFlight := e.receive("q", 1, 0, 2*time.Second)
	e.send("q", "to delete")
	toDelete := e.receive("q", 1, 0, 30*time.Second)
	e.send("q", "visible")
	if _, err := e.svc.Send(ctx, "q", Message{Body: "delayed", DelaySeconds: 2}); err != nil {
		t.Fatal(err)
	}
	if len(inFlight) != 1 || len(toDelete) != 1 || toDelete[0].Body != "to delete" {
		t.Fatalf("received %+v and %+v", inFlight, toDelete)
	}
	e.stop()
	e.start()

	if err := e.svc.Delete(ctx, "q", toDelete[0].ReceiptHandle); err != nil {
		t.Fatalf("a receipt handle from before the restart: %v", err)
	}
	got := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		for _, m := range e.receive("q", 10, time.Second, 0) {
			got[m.Body] = m.Attributes["ApproximateReceiveCount"]
			if err := e.svc.Delete(ctx, "q", m.ReceiptHandle); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got["in flight"] != "2" || got["delayed"] != "1" || len(got) != 3 {
		t.Errorf("after a restart: %v", got)
	}
	if _, ok := got["to delete"]; ok {
		t.Error("a message deleted after the restart came back")
	}
}

func TestReceiptHandles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("a", nil)
	e.create("b", nil)
	e.send("a", "x")
	m := e.receive("a", 1, 0, 0)[0]
	if err := e.svc.Delete(ctx, "b", m.ReceiptHandle); !errors.Is(err, ErrReceiptInvalid) {
		t.Errorf("a handle of another queue: %v", err)
	}
	tampered := strings.Replace(m.ReceiptHandle, ".", "x.", 1)
	for _, h := range []string{"", "junk", tampered, m.ReceiptHandle + "A"} {
		if err := e.svc.Delete(ctx, "a", h); !errors.Is(err, ErrReceiptInvalid) {
			t.Errorf("handle %q: %v", h, err)
		}
	}
	// The queue deleted and made again: its old handles are not its new
	// messages'.
	if err := e.svc.DeleteQueue(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	e.create("a", nil)
	e.send("a", "y")
	if err := e.svc.Delete(ctx, "a", m.ReceiptHandle); !errors.Is(err, ErrReceiptInvalid) {
		t.Errorf("a handle of the queue before it was made again: %v", err)
	}
	if s := e.stats("a"); s.Visible != 1 {
		t.Errorf("the new queue: %+v", s)
	}
}

func TestQueues(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cases := []struct {
		name  string
		attrs map[string]string
		want  error
	}{
		{"jobs.fifo", nil, ErrUnsupported},
		{"bad name", nil, ErrInvalidParameter},
		{strings.Repeat("x", 81), nil, ErrInvalidParameter},
		{"q", map[string]string{"FifoQueue": "true"}, ErrInvalidAttributeName},
		{"q", map[string]string{"Color": "red"}, ErrInvalidAttributeName},
		{"q", map[string]string{"VisibilityTimeout": "43201"}, ErrInvalidAttributeValue},
		{"q", map[string]string{"MaximumMessageSize": "x"}, ErrInvalidAttributeValue},
		{"q", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:none","maxReceiveCount":3}`}, ErrInvalidAttributeValue},
		{"q", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:q","maxReceiveCount":0}`}, ErrInvalidAttributeValue},
	}
	for _, c := range cases {
		if _, err := e.svc.Create(ctx, c.name, c.attrs); !errors.Is(err, c.want) {
			t.Errorf("create %q %v: %v, want %v", c.name, c.attrs, err, c.want)
		}
	}
	q, err := e.svc.Create(ctx, "jobs", map[string]string{"VisibilityTimeout": "60", "Policy": "{}"})
	if err != nil {
		t.Fatal(err)
	}
	if q.ARN != "arn:aws:sqs:us-east-1:000000000000:jobs" || q.Attributes.VisibilityTimeout != 60 || q.Attributes.Strings()["Policy"] != "{}" {
		t.Errorf("created %+v", q)
	}
	if _, err := e.svc.Create(ctx, "jobs", map[string]string{"VisibilityTimeout": "60", "Policy": "{}"}); err != nil {
		t.Errorf("creating it again the same: %v", err)
	}
	if _, err := e.svc.Create(ctx, "jobs", nil); !errors.Is(err, ErrExists) {
		t.Errorf("creating it again otherwise: %v", err)
	}
	if n, err := e.svc.NameOf(q.ARN); err != nil || n != "jobs" {
		t.Errorf("NameOf: %q %v", n, err)
	}
	if _, err := e.svc.NameOf("arn:aws:sqs:us-east-1:000000000000:none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("NameOf an unknown queue: %v", err)
	}
	e.create("jobs-2", nil)
	e.create("other", nil)
	l, err := e.svc.List(ctx, "jobs")
	if err != nil || len(l) != 2 || l[0].Name != "jobs" || l[1].Name != "jobs-2" {
		t.Errorf("list: %+v %v", l, err)
	}
	if err := e.svc.DeleteQueue(ctx, "jobs"); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		func() error { _, err := e.svc.Get(ctx, "jobs"); return err }(),
		func() error { _, err := e.svc.Send(ctx, "jobs", Message{Body: "x"}); return err }(),
		func() error { _, err := e.svc.Receive(ctx, "jobs", 1, 0, 0); return err }(),
		func() error { _, err := e.svc.Stats(ctx, "jobs"); return err }(),
		e.svc.Purge(ctx, "jobs"),
		e.svc.DeleteQueue(ctx, "jobs"),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("a deleted queue: %v", err)
		}
	}
	// Its stream went with it; a restart finds the queues left.
	e.stop()
	e.start()
	if l, _ := e.svc.List(ctx, ""); len(l) != 2 {
		t.Errorf("after a restart: %+v", l)
	}
}

func TestMessageChecks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create("q", nil)
	tooMany := map[string]MessageAttribute{}
	for i := range 11 {
		tooMany[string(rune('a'+i))] = MessageAttribute{DataType: "String", StringValue: "v"}
	}
	cases := []struct {
		name string
		m    Message
		want error
	}{
		{"empty", Message{}, ErrMissingParameter},
		{"too large", Message{Body: strings.Repeat("x", MaxMessageBytes+1)}, ErrInvalidParameter},
		{"too large with attributes", Message{Body: strings.Repeat("x", MaxMessageBytes-5), Attributes: map[string]MessageAttribute{"name": {DataType: "String", StringValue: "value"}}}, ErrInvalidParameter},
		{"control character", Message{Body: "a\x01b"}, ErrInvalidMessage},
		{"invalid UTF-8", Message{Body: "a\xffb"}, ErrInvalidMessage},
		{"11 attributes", Message{Body: "x", Attributes: tooMany}, ErrInvalidParameter},
		{"attribute name", Message{Body: "x", Attributes: map[string]MessageAttribute{"AWS.x": {DataType: "String", StringValue: "v"}}}, ErrInvalidParameter},
		{"attribute type", Message{Body: "x", Attributes: map[string]MessageAttribute{"a": {DataType: "Text", StringValue: "v"}}}, ErrInvalidParameter},
		{"attribute number", Message{Body: "x", Attributes: map[string]MessageAttribute{"a": {DataType: "Number", StringValue: "v"}}}, ErrInvalidParameter},
		{"attribute value", Message{Body: "x", Attributes: map[string]MessageAttribute{"a": {DataType: "String"}}}, ErrInvalidParameter},
	}
	for _, c := range cases {
		if _, err := e.svc.Send(ctx, "q", c.m); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := e.svc.Send(ctx, "q", Message{Body: strings.Repeat("x", MaxMessageBytes)}); err != nil {
		t.Errorf("a message of 256 KiB: %v", err)
	}
	for _, max := range []int{0, 11} {
		if _, err := e.svc.Receive(ctx, "q", max, 0, 0); !errors.Is(err, ErrInvalidParameter) {
			t.Errorf("receive %d: %v", max, err)
		}
	}
}

// The digests of AWS's documented examples (as the SDKs compute them).
func TestMD5OfAttributes(t *testing.T) {
	cases := []struct {
		attrs map[string]MessageAttribute
		want  string
	}{
		{nil, ""},
		// Computed apart, with Python's hashlib.
		{map[string]MessageAttribute{"color": {DataType: "String", StringValue: "blue"}}, "da1b33cc3cbfe8b1630921e78e6b9880"},
		{map[string]MessageAttribute{"attribName1": {DataType: "String", StringValue: "attribValue 1"}}, "19e27d4e946b072f3f58da80d94fd778"},
		{map[string]MessageAttribute{"customNumberTypeAttrib": {DataType: "Number.float", StringValue: "4563442423554324324264524243.32543234"}}, "9fe1b90bbd9965bdf77bac517c7d2495"},
		{map[string]MessageAttribute{"binaryAttribute": {DataType: "Binary", BinaryValue: []byte("Hello binary world!")}}, "31a92b15d92f8db860eda32aceb656c3"},
		{map[string]MessageAttribute{
			"attribName1":            {DataType: "String", StringValue: "attribValue 1"},
			"customNumberTypeAttrib": {DataType: "Number.float", StringValue: "4563442423554324324264524243.32543234"},
			"binaryAttribute":        {DataType: "Binary", BinaryValue: []byte("Hello binary world!")},
		}, "c932db14a896c663f83c260297d594ff"},
	}
	for _, c := range cases {
		if got := MD5OfAttributes(c.attrs); got != c.want {
			t.Errorf("%v: %s, want %s", c.attrs, got, c.want)
		}
	}
}
