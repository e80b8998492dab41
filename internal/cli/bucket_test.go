package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

// hearth bucket's verbs against a daemon in-process with an S3 listener.
func TestBucketVerbs(t *testing.T) {
	testvm.Driver(t)
	data := t.TempDir()
	srv, err := server.New(context.Background(), server.Config{DataDir: data, Listen: "127.0.0.1:0", S3Listen: "127.0.0.1:0",
		Host: vmboot.Options{Agent: testvm.Agent(t), Accel: "tcg", CacheDir: testvm.CacheDir()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	d := &cliDaemon{srv: srv, data: data, env: map[string]string{"HEARTH_DATA_DIR": data, "HEARTH_ENDPOINT": "http://" + srv.Addr(),
		"HEARTH_S3_ENDPOINT": "http://" + srv.S3Addr(), "AWS_SHARED_CREDENTIALS_FILE": ""}}
	hearth := func(wantCode int, args ...string) string {
		t.Helper()
		out, _ := d.hearth(t, wantCode, args...)
		return out
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "cat.jpg")
	if err := os.WriteFile(src, []byte("meow"), 0o600); err != nil {
		t.Fatal(err)
	}
	hearth(ExitOK, "bucket", "create", "pets")
	hearth(ExitBadInput, "bucket", "create", "pets")
	hearth(ExitBadInput, "bucket", "create", "Not_A_Bucket")
	var buckets []struct{ Name string }
	if err := json.Unmarshal([]byte(hearth(ExitOK, "bucket", "list", "-o", "json")), &buckets); err != nil || len(buckets) != 1 || buckets[0].Name != "pets" {
		t.Errorf("bucket list: %+v %v", buckets, err)
	}
	hearth(ExitOK, "bucket", "cp", src, "s3://pets/in/")
	hearth(ExitOK, "bucket", "cp", "s3://pets/in/cat.jpg", "s3://pets/out/copy.jpg")
	if out := hearth(ExitOK, "bucket", "cp", "s3://pets/out/copy.jpg", "-"); out != "meow" {
		t.Errorf("cp to stdout: %q", out)
	}
	back := filepath.Join(dir, "back.jpg")
	hearth(ExitOK, "bucket", "cp", "s3://pets/in/cat.jpg", back)
	if b, _ := os.ReadFile(back); string(b) != "meow" {
		t.Errorf("cp to a file: %q", b)
	}
	if out := hearth(ExitOK, "bucket", "ls", "s3://pets/"); !strings.Contains(out, "PRE in/") || !strings.Contains(out, "PRE out/") {
		t.Errorf("ls: %s", out)
	}
	var objs []struct {
		Key  string
		Size int64
	}
	if err := json.Unmarshal([]byte(hearth(ExitOK, "bucket", "ls", "s3://pets/", "-r", "-o", "json")), &objs); err != nil || len(objs) != 2 || objs[0].Key != "in/cat.jpg" || objs[0].Size != 4 {
		t.Errorf("ls -r: %+v %v", objs, err)
	}
	// Notifications: to a queue by name, listed, refused for a function
	// that does not exist, removed by id; a delete reaches the queue.
	hearth(ExitOK, "queue", "create", "deletions")
	hearth(ExitOK, "bucket", "notify", "pets", "--queue", "deletions", "--events", "removed", "--prefix", "in/", "--id", "dels")
	hearth(ExitBadInput, "bucket", "notify", "pets", "--function", "nothere")
	hearth(ExitBadInput, "bucket", "notify", "pets", "--queue", "deletions", "--events", "s3:ObjectRemoved:Delete", "--id", "again")
	var rows []struct{ ID, Target, Events, Prefix string }
	if err := json.Unmarshal([]byte(hearth(ExitOK, "bucket", "notify", "pets", "-o", "json")), &rows); err != nil || len(rows) != 1 ||
		rows[0].ID != "dels" || rows[0].Target != "arn:aws:sqs:local:000000000000:deletions" || rows[0].Events != "s3:ObjectRemoved:*" || rows[0].Prefix != "in/" {
		t.Errorf("notify list: %+v %v", rows, err)
	}
	hearth(ExitBadInput, "bucket", "delete", "pets")
	hearth(ExitOK, "bucket", "rm", "s3://pets/in/cat.jpg")
	if out := hearth(ExitOK, "queue", "receive", "deletions", "-o", "json"); !strings.Contains(out, `ObjectRemoved:Delete`) || !strings.Contains(out, `in/cat.jpg`) {
		t.Errorf("the queue after a delete: %s", out)
	}
	hearth(ExitOK, "bucket", "notify", "pets", "--remove", "dels")
	if out := hearth(ExitOK, "bucket", "notify", "pets"); strings.Contains(out, "dels") {
		t.Errorf("after --remove: %s", out)
	}
	hearth(ExitBadInput, "bucket", "cp", "s3://pets/in/cat.jpg", "-")
	hearth(ExitOK, "bucket", "delete", "pets", "--force")
	if out := hearth(ExitOK, "bucket", "list"); strings.Contains(out, "pets") {
		t.Errorf("after delete: %s", out)
	}
}
