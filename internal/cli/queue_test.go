package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// The queue verbs against a daemon in-process (no VM boots).
func TestQueueVerbs(t *testing.T) {
	d := startCLIDaemon(t)
	hearth := func(wantCode int, args ...string) string {
		t.Helper()
		out, _ := d.hearth(t, wantCode, args...)
		return out
	}
	hearth(ExitOK, "queue", "create", "jobs-dlq")
	if out := hearth(ExitOK, "queue", "create", "jobs", "--attribute", "VisibilityTimeout=60", "--dead-letter-queue", "jobs-dlq", "--max-receive-count", "3"); !strings.HasSuffix(strings.TrimSpace(out), "/000000000000/jobs") {
		t.Errorf("create printed %q", out)
	}
	hearth(ExitBadInput, "queue", "create", "bad", "--attribute", "VisibilityTimeout")
	hearth(ExitBadInput, "queue", "create", "bad.fifo")
	if out := hearth(ExitOK, "queue", "list", "--prefix", "jobs"); out != "jobs\njobs-dlq\n" {
		t.Errorf("list printed %q", out)
	}
	if id := strings.TrimSpace(hearth(ExitOK, "queue", "send", "jobs", "hello queue")); len(id) != 36 {
		t.Errorf("send printed %q", id)
	}
	hearth(ExitOK, "queue", "send", "jobs", "later", "--delay", "60")
	hearth(ExitBadInput, "queue", "send", "none", "x")
	stats := hearth(ExitOK, "queue", "stats", "jobs", "-o", "json")
	var a map[string]string
	if err := json.Unmarshal([]byte(stats), &a); err != nil || a["ApproximateNumberOfMessages"] != "1" || a["ApproximateNumberOfMessagesDelayed"] != "1" ||
		a["VisibilityTimeout"] != "60" || !strings.Contains(a["RedrivePolicy"], "jobs-dlq") {
		t.Errorf("stats: %s %v", stats, err)
	}
	out := hearth(ExitOK, "queue", "receive", "jobs", "--max", "10", "--wait", "1", "-o", "json")
	var recv struct {
		Messages []struct {
			Body, ReceiptHandle string
			Attributes          map[string]string
		}
	}
	if err := json.Unmarshal([]byte(out), &recv); err != nil || len(recv.Messages) != 1 || recv.Messages[0].Body != "hello queue" || recv.Messages[0].Attributes["ApproximateReceiveCount"] != "1" {
		t.Fatalf("receive: %s %v", out, err)
	}
	if text := hearth(ExitOK, "queue", "stats", "jobs"); !strings.Contains(text, "ApproximateNumberOfMessagesNotVisible  1") {
		t.Errorf("stats: %s", text)
	}
	if top := hearth(ExitOK, "top", "--once"); !strings.Contains(top, "QUEUE") || !strings.Contains(top, "jobs ") || !strings.Contains(top, "jobs-dlq") {
		t.Errorf("top shows no queues:\n%s", top)
	}
	hearth(ExitOK, "queue", "delete-message", "jobs", recv.Messages[0].ReceiptHandle)
	hearth(ExitBadInput, "queue", "delete-message", "jobs", recv.Messages[0].ReceiptHandle)
	hearth(ExitOK, "queue", "purge", "jobs")
	if text := hearth(ExitOK, "queue", "receive", "jobs"); strings.Count(text, "\n") != 1 {
		t.Errorf("receive after purge: %q", text)
	}
	hearth(ExitOK, "queue", "delete", "jobs")
	if out := hearth(ExitOK, "queue", "list"); out != "jobs-dlq\n" {
		t.Errorf("list after delete: %q", out)
	}
}
