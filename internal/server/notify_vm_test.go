package server_test

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	ltypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
)

// thumbnailsConf sends objects created under in/ ending .jpg, and objects
// removed under in/, to the thumbs function.
func thumbnailsConf() *types.NotificationConfiguration {
	return &types.NotificationConfiguration{LambdaFunctionConfigurations: []types.LambdaFunctionConfiguration{
		{Id: aws.String("thumbnails"), LambdaFunctionArn: aws.String(thumbsARN), Events: []types.Event{types.EventS3ObjectCreated}, Filter: keyFilter("in/", ".jpg")},
		{Id: aws.String("removals"), LambdaFunctionArn: aws.String(thumbsARN), Events: []types.Event{types.EventS3ObjectRemoved}, Filter: keyFilter("in/", "")},
	}}
}

// waitObject waits for bucket/key and returns its bytes.
func waitObject(t *testing.T, c *s3.Client, bucket, key string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err == nil {
			out.Body.Close()
			return getString(t, c, bucket, key, "")
		}
		if s3Code(err) != "NoSuchKey" || time.Now().After(deadline) {
			t.Fatalf("%s/%s never came: %v", bucket, key, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var s3eventLine = regexp.MustCompile(`s3event (\S+) (\S+)`)

// s3events are the events the thumbs function logged, "<name> <bucket>/<key>".
func s3eventsIn(log []byte) []string {
	var out []string
	for _, m := range s3eventLine.FindAllStringSubmatch(string(log), -1) {
		out = append(out, m[1]+" "+m[2])
	}
	return out
}

// A thumbnailer in a real VM: an object put under in/ invokes it, it
// reads the object and writes its thumbnail under out/ (which invokes
// nothing); a copy is ObjectCreated:Copy; puts the filters do not match
// invoke nothing; a delete is ObjectRemoved:Delete.
func TestBucketNotificationsInvokeAFunction(t *testing.T) {
	d := startWith(t, server.Config{DataDir: t.TempDir(), KeepWarm: time.Minute, S3Listen: "127.0.0.1:0"})
	c := s3Client(d, "http://"+d.srv.S3Addr(), true)
	ctx := context.Background()
	b := aws.String("photos")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("thumbs"), Runtime: ltypes.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &ltypes.FunctionCode{ZipFile: readZip(t, "./internal/tests3function")}, Timeout: aws.Int32(60),
		Tags: map[string]string{server.BucketsTag: "photos"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: b, NotificationConfiguration: thumbnailsConf()}); err != nil {
		t.Fatal(err)
	}
	putObj := func(key, body string) {
		t.Helper()
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	// Not matched: another suffix, another prefix.
	putObj("in/cat.png", "png")
	putObj("notes/cat.jpg", "notes")
	putObj("in/cat.jpg", "meow")
	if got := waitObject(t, c, "photos", "out/cat.jpg", 3*time.Minute); got != "thumb:meow" {
		t.Errorf("the thumbnail: %q", got)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: b, Key: aws.String("in/copy.jpg"), CopySource: aws.String("photos/in/cat.jpg")}); err != nil {
		t.Fatal(err)
	}
	if got := waitObject(t, c, "photos", "out/copy.jpg", time.Minute); got != "thumb:meow" {
		t.Errorf("the copy's thumbnail: %q", got)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: aws.String("in/cat.jpg")}); err != nil {
		t.Fatal(err)
	}
	want := []string{"ObjectCreated:Put photos/in/cat.jpg", "ObjectCreated:Copy photos/in/copy.jpg", "ObjectRemoved:Delete photos/in/cat.jpg"}
	var got []string
	deadline := time.Now().Add(time.Minute)
	for len(got) < len(want) && time.Now().Before(deadline) {
		got = s3eventsIn(d.signedGet(t, "/hearth/v1/functions/thumbs/logs?tail=1000"))
		time.Sleep(200 * time.Millisecond)
	}
	// A moment more: an event not matched would come by now.
	time.Sleep(2 * time.Second)
	got = s3eventsIn(d.signedGet(t, "/hearth/v1/functions/thumbs/logs?tail=1000"))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the function saw %q, want %q", got, want)
	}
}

// kill -9 of `hearth serve` right after puts were answered, before their
// events were delivered (the function's guest is still booting) loses
// nothing: after the restart each event is delivered (its attempt cut
// short runs again after the ack wait) and each thumbnail written.
func TestKillDaemonKeepsBucketEvents(t *testing.T) {
	testvm.Driver(t)
	bin, data := testvm.Hearth(t), t.TempDir()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	addr, s3addr := free(), free()
	flags := []string{"--s3-listen", s3addr, "--async-ack-wait", "3s"}
	daemon := serveProcess(t, bin, data, addr, flags...)
	profiles, err := server.ReadCredentials(server.CredentialsFile(data))
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewStaticCredentialsProvider(profiles[0].AccessKeyID, profiles[0].SecretAccessKey, "")
	lc := lambda.New(lambda.Options{BaseEndpoint: aws.String("http://" + addr), Region: "local", RetryMaxAttempts: 1, Credentials: creds})
	c := s3.New(s3.Options{BaseEndpoint: aws.String("http://" + s3addr), Region: "local", UsePathStyle: true, RetryMaxAttempts: 1, Credentials: creds})
	ctx := context.Background()
	b := aws.String("photos")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("thumbs"), Runtime: ltypes.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &ltypes.FunctionCode{ZipFile: readZip(t, "./internal/tests3function")}, Timeout: aws.Int32(60)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: b, NotificationConfiguration: thumbnailsConf()}); err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := range n {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String(fmt.Sprintf("in/cat%d.jpg", i)), Body: strings.NewReader(fmt.Sprint("meow", i))}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: b, Prefix: aws.String("out/")})
	if err != nil || len(out.Contents) != 0 {
		t.Fatalf("delivered before the crash: %+v %v", out, err)
	}
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = daemon.Process.Wait()
	for _, pid := range qemuChildren(daemon.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}

	serveProcess(t, bin, data, addr, flags...)
	for i := range n {
		if got := waitObject(t, c, "photos", fmt.Sprintf("out/cat%d.jpg", i), 3*time.Minute); got != fmt.Sprint("thumb:meow", i) {
			t.Errorf("thumbnail %d after the restart: %q", i, got)
		}
	}
}
