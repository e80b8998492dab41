package server_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// filesZip is a zip of the files (path → body), in the order given.
func filesZip(t *testing.T, files ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.Create(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A function's layers are unpacked into its VM's /opt in its order, a later
// layer's file replacing an earlier one's; a change of layers gets a new
// environment with the new /opt.
func TestLayersInOpt(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	ctx := context.Background()
	publish := func(name string, files ...[2]string) string {
		t.Helper()
		out, err := d.client.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String(name),
			Content: &types.LayerVersionContentInput{ZipFile: filesZip(t, files...)}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.LayerVersionArn)
	}
	one := publish("one", [2]string{"data/a.txt", "one"}, [2]string{"data/b.txt", "first"})
	two := publish("two", [2]string{"data/b.txt", "second"})
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("layered"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, Timeout: aws.Int32(30),
		Layers: []string{one, two}}); err != nil {
		t.Fatal(err)
	}
	read := func(path string, cold bool) string {
		t.Helper()
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("layered"), LogType: types.LogTypeTail,
			Payload: []byte(`{"action":"read","path":"` + path + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if out.FunctionError != nil {
			t.Fatalf("read %s: %s", path, out.Payload)
		}
		checkLogTail(t, aws.ToString(out.LogResult), cold)
		var got struct{ Body string }
		if err := json.Unmarshal(out.Payload, &got); err != nil {
			t.Fatalf("read %s: %s: %v", path, out.Payload, err)
		}
		return got.Body
	}
	if got := read("/opt/data/b.txt", true); got != "second" {
		t.Errorf("/opt/data/b.txt with layers one, two: %q, want second", got)
	}
	if got := read("/opt/data/a.txt", false); got != "one" {
		t.Errorf("/opt/data/a.txt with layers one, two: %q, want one", got)
	}

	if _, err := d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("layered"),
		Layers: []string{one}}); err != nil {
		t.Fatal(err)
	}
	if got := read("/opt/data/b.txt", true); got != "first" {
		t.Errorf("/opt/data/b.txt with layer one only: %q, want first", got)
	}
}
