package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	ltypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

const thumbsARN = "arn:aws:lambda:local:000000000000:function:thumbs"

func keyFilter(prefix, suffix string) *types.NotificationConfigurationFilter {
	var rules []types.FilterRule
	if prefix != "" {
		rules = append(rules, types.FilterRule{Name: types.FilterRuleNamePrefix, Value: aws.String(prefix)})
	}
	if suffix != "" {
		rules = append(rules, types.FilterRule{Name: types.FilterRuleNameSuffix, Value: aws.String(suffix)})
	}
	return &types.NotificationConfigurationFilter{Key: &types.S3KeyFilter{FilterRules: rules}}
}

// PutBucketNotificationConfiguration and Get with aws-sdk-go-v2's s3
// client: what is put is read back in S3's shape; configurations S3
// refuses are refused in its error shape; a queue target gets S3's event
// as its message body.
func TestBucketNotificationConfigurations(t *testing.T) {
	d, c := startS3(t, t.TempDir())
	ctx := context.Background()
	b := aws.String("photos")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("thumbs"), Role: aws.String("r"),
		Code: &ltypes.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}}); err != nil {
		t.Fatal(err)
	}
	sq := sqsClient(d)
	q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("removed")})
	if err != nil {
		t.Fatal(err)
	}
	queueARN := "arn:aws:sqs:local:000000000000:removed"

	got, err := c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: b})
	if err != nil || len(got.LambdaFunctionConfigurations)+len(got.QueueConfigurations) != 0 {
		t.Fatalf("a bucket without: %+v %v", got, err)
	}
	good := &types.NotificationConfiguration{
		LambdaFunctionConfigurations: []types.LambdaFunctionConfiguration{{Id: aws.String("thumbnails"), LambdaFunctionArn: aws.String(thumbsARN),
			Events: []types.Event{types.EventS3ObjectCreated}, Filter: keyFilter("in/", ".jpg")}},
		QueueConfigurations: []types.QueueConfiguration{{QueueArn: aws.String(queueARN),
			Events: []types.Event{types.EventS3ObjectRemovedDelete}, Filter: keyFilter("in/", "")}},
	}
	if _, err := c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: b, NotificationConfiguration: good}); err != nil {
		t.Fatal(err)
	}
	got, err = c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: b})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.LambdaFunctionConfigurations) != 1 || len(got.QueueConfigurations) != 1 {
		t.Fatalf("read back: %+v", got)
	}
	fc, qc := got.LambdaFunctionConfigurations[0], got.QueueConfigurations[0]
	if aws.ToString(fc.Id) != "thumbnails" || aws.ToString(fc.LambdaFunctionArn) != thumbsARN || len(fc.Events) != 1 || fc.Events[0] != types.EventS3ObjectCreated ||
		fc.Filter == nil || len(fc.Filter.Key.FilterRules) != 2 || aws.ToString(fc.Filter.Key.FilterRules[1].Value) != ".jpg" {
		t.Errorf("the function's configuration: %+v", fc)
	}
	if aws.ToString(qc.Id) == "" || aws.ToString(qc.QueueArn) != queueARN || qc.Events[0] != types.EventS3ObjectRemovedDelete {
		t.Errorf("the queue's configuration (an id made for it): %+v", qc)
	}

	put := func(bucket string, conf *types.NotificationConfiguration, skip bool) error {
		in := &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String(bucket), NotificationConfiguration: conf}
		if skip {
			in.SkipDestinationValidation = aws.Bool(true)
		}
		_, err := c.PutBucketNotificationConfiguration(ctx, in)
		return err
	}
	fnConf := func(arn string, prefix string, events ...types.Event) types.LambdaFunctionConfiguration {
		return types.LambdaFunctionConfiguration{LambdaFunctionArn: aws.String(arn), Events: events, Filter: keyFilter(prefix, "")}
	}
	for _, tc := range []struct {
		name, bucket string
		conf         *types.NotificationConfiguration
		code, msg    string
	}{
		{"unknown function", "photos", &types.NotificationConfiguration{LambdaFunctionConfigurations: []types.LambdaFunctionConfiguration{
			fnConf(thumbsARN+"x", "", types.EventS3ObjectCreated)}}, "InvalidArgument", "Unable to validate the following destination configurations"},
		{"another region's function", "photos", &types.NotificationConfiguration{LambdaFunctionConfigurations: []types.LambdaFunctionConfiguration{
			fnConf(strings.Replace(thumbsARN, "local", "eu-west-1", 1), "", types.EventS3ObjectCreated)}}, "InvalidArgument", "Unable to validate"},
		{"unknown queue", "photos", &types.NotificationConfiguration{QueueConfigurations: []types.QueueConfiguration{{QueueArn: aws.String(queueARN + "x"),
			Events: []types.Event{types.EventS3ObjectCreated}}}}, "InvalidArgument", "Unable to validate"},
		{"overlap", "photos", &types.NotificationConfiguration{LambdaFunctionConfigurations: []types.LambdaFunctionConfiguration{
			fnConf(thumbsARN, "in/", types.EventS3ObjectCreated), fnConf(thumbsARN, "in/big/", types.EventS3ObjectCreatedPut)}}, "InvalidArgument", "Configurations overlap"},
		{"unsupported event", "photos", &types.NotificationConfiguration{LambdaFunctionConfigurations: []types.LambdaFunctionConfiguration{
			fnConf(thumbsARN, "", types.EventS3ObjectRestore)}}, "InvalidArgument", "not supported"},
		{"a topic", "photos", &types.NotificationConfiguration{TopicConfigurations: []types.TopicConfiguration{{TopicArn: aws.String("arn:aws:sns:local:000000000000:t"),
			Events: []types.Event{types.EventS3ObjectCreated}}}}, "InvalidArgument", "Unable to validate"},
		{"no bucket", "nothere", good, "NoSuchBucket", ""},
	} {
		err := put(tc.bucket, tc.conf, false)
		if s3Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %s %q", tc.name, err, tc.code, tc.msg)
		}
	}
	// Refused ones changed nothing.
	if got, _ := c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: b}); len(got.LambdaFunctionConfigurations) != 1 ||
		aws.ToString(got.LambdaFunctionConfigurations[0].Id) != "thumbnails" {
		t.Errorf("after refusals: %+v", got)
	}
	if _, err := c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String("nothere")}); s3Code(err) != "NoSuchBucket" {
		t.Errorf("get of a missing bucket: %v", err)
	}

	// The queue gets S3's event of a delete under in/, and nothing of one
	// elsewhere nor of a put (the function's configuration takes those).
	for _, k := range []string{"in/my cat.jpg", "elsewhere.jpg"} {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String(k), Body: strings.NewReader("meow")}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: aws.String(k)}); err != nil {
			t.Fatal(err)
		}
	}
	var bodies []string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out, err := sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
		}
	}
	if len(bodies) != 1 {
		t.Fatalf("the queue got %d messages: %q", len(bodies), bodies)
	}
	var e events.S3Event
	if err := json.Unmarshal([]byte(bodies[0]), &e); err != nil || len(e.Records) != 1 {
		t.Fatalf("%s: %v", bodies[0], err)
	}
	r := e.Records[0]
	if r.EventName != "ObjectRemoved:Delete" || r.EventSource != "aws:s3" || r.EventVersion != "2.1" || r.AWSRegion != "local" ||
		r.S3.Bucket.Name != "photos" || r.S3.Bucket.Arn != "arn:aws:s3:::photos" || r.S3.Object.Key != "in/my+cat.jpg" ||
		r.S3.Object.URLDecodedKey != "in/my cat.jpg" || r.S3.ConfigurationID != aws.ToString(qc.Id) || r.S3.Object.Sequencer == "" ||
		time.Since(r.EventTime) > time.Minute {
		t.Errorf("the event: %s", bodies[0])
	}

	// With x-amz-skip-destination-validation a target may come later; an
	// empty configuration removes it all.
	later := &types.NotificationConfiguration{LambdaFunctionConfigurations: []types.LambdaFunctionConfiguration{fnConf(thumbsARN+"-later", "", types.EventS3ObjectCreated)}}
	if err := put("photos", later, true); err != nil {
		t.Errorf("skipping validation: %v", err)
	}
	if err := put("photos", &types.NotificationConfiguration{}, false); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: b}); err != nil ||
		len(got.LambdaFunctionConfigurations)+len(got.QueueConfigurations) != 0 {
		t.Errorf("after an empty configuration: %+v %v", got, err)
	}
}
