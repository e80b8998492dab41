package server_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// layerZip is a zip of one file, as a layer holds: no bootstrap.
func layerZip(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layers through aws-sdk-go-v2: publish, list, get by ARN, a function that
// uses them, delete. No function is invoked: no VM boots.
func TestAPILayers(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	ctx := context.Background()
	content := layerZip(t, "python/deps.py", "x = 1\n")
	pub, err := d.client.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("deps"),
		Content: &types.LayerVersionContentInput{ZipFile: content}, Description: aws.String("shared"),
		CompatibleRuntimes: []types.Runtime{types.RuntimePython311}, CompatibleArchitectures: []types.Architecture{types.ArchitectureX8664},
		LicenseInfo: aws.String("MIT")})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(pub.LayerVersionArn)
	if pub.Version != 1 || arn != "arn:aws:lambda:local:000000000000:layer:deps:1" || aws.ToString(pub.LayerArn) != strings.TrimSuffix(arn, ":1") ||
		pub.Content == nil || pub.Content.CodeSize != int64(len(content)) || aws.ToString(pub.Content.CodeSha256) == "" || aws.ToString(pub.CreatedDate) == "" {
		t.Fatalf("publish: %+v", pub)
	}
	tools, err := d.client.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("tools"),
		Content: &types.LayerVersionContentInput{ZipFile: layerZip(t, "bin/tool", "#!/bin/sh\n")}})
	if err != nil {
		t.Fatal(err)
	}

	list, err := d.client.ListLayers(ctx, &lambda.ListLayersInput{CompatibleRuntime: types.RuntimePython311})
	if err != nil || len(list.Layers) != 1 || aws.ToString(list.Layers[0].LayerName) != "deps" ||
		aws.ToString(list.Layers[0].LatestMatchingVersion.LayerVersionArn) != arn {
		t.Fatalf("ListLayers python3.11: %+v %v", list, err)
	}
	var names []string
	pages := lambda.NewListLayersPaginator(d.client, &lambda.ListLayersInput{MaxItems: aws.Int32(1)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range page.Layers {
			names = append(names, aws.ToString(l.LayerName))
		}
	}
	if strings.Join(names, ",") != "deps,tools" {
		t.Errorf("ListLayers one by one: %v", names)
	}

	byArn, err := d.client.GetLayerVersionByArn(ctx, &lambda.GetLayerVersionByArnInput{Arn: aws.String(arn)})
	if err != nil || aws.ToString(byArn.Description) != "shared" || aws.ToString(byArn.LicenseInfo) != "MIT" ||
		aws.ToString(byArn.Content.CodeSha256) != aws.ToString(pub.Content.CodeSha256) {
		t.Fatalf("GetLayerVersionByArn: %+v %v", byArn, err)
	}

	fn, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("fn"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./examples/hello")}, Layers: []string{arn, aws.ToString(tools.LayerVersionArn)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(fn.Layers) != 2 || aws.ToString(fn.Layers[0].Arn) != arn || fn.Layers[0].CodeSize != int64(len(content)) {
		t.Errorf("CreateFunction layers: %+v", fn.Layers)
	}
	var inv *types.InvalidParameterValueException
	_, err = d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("fn"),
		Layers: []string{strings.TrimSuffix(arn, "1") + "7"}})
	if !errors.As(err, &inv) || !strings.Contains(inv.ErrorMessage(), "does not exist") {
		t.Errorf("a missing layer version: %v", err)
	}

	if _, err := d.client.DeleteLayerVersion(ctx, &lambda.DeleteLayerVersionInput{LayerName: aws.String("deps"), VersionNumber: aws.Int64(1)}); err != nil {
		t.Fatal(err)
	}
	var nf *types.ResourceNotFoundException
	if _, err := d.client.GetLayerVersion(ctx, &lambda.GetLayerVersionInput{LayerName: aws.String("deps"), VersionNumber: aws.Int64(1)}); !errors.As(err, &nf) {
		t.Errorf("a deleted version: %v", err)
	}
	got, err := d.client.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("fn")})
	if err != nil || len(got.Layers) != 2 || aws.ToString(got.Layers[0].Arn) != arn {
		t.Errorf("the function keeps a deleted layer: %+v %v", got, err)
	}
	again, err := d.client.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("deps"),
		Content: &types.LayerVersionContentInput{ZipFile: content}})
	if err != nil || again.Version != 2 {
		t.Errorf("publish after a deletion: %+v %v", again, err)
	}
}

// The aws CLI publishes and lists layers.
func TestAWSCLILayers(t *testing.T) {
	data := t.TempDir()
	d := start(t, data, time.Minute)
	p := filepath.Join(t.TempDir(), "layer.zip")
	if err := os.WriteFile(p, layerZip(t, "nodejs/node_modules/dep/index.js", "module.exports = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, ok := awsCLI(t, d, data, "lambda", "publish-layer-version", "--layer-name", "dep", "--zip-file", "fileb://"+p,
		"--compatible-runtimes", "nodejs18.x", "--description", "from the CLI")
	var pub struct {
		LayerVersionArn string
		Version         int64
		Content         struct{ CodeSize int64 }
	}
	if !ok || json.Unmarshal([]byte(out), &pub) != nil || pub.Version != 1 || !strings.HasSuffix(pub.LayerVersionArn, ":layer:dep:1") || pub.Content.CodeSize == 0 {
		t.Fatalf("aws lambda publish-layer-version: %s", out)
	}
	out, ok = awsCLI(t, d, data, "lambda", "list-layers", "--compatible-runtime", "nodejs18.x")
	var list struct {
		Layers []struct {
			LayerName             string
			LatestMatchingVersion struct{ LayerVersionArn, Description string }
		}
	}
	if !ok || json.Unmarshal([]byte(out), &list) != nil || len(list.Layers) != 1 || list.Layers[0].LayerName != "dep" ||
		list.Layers[0].LatestMatchingVersion.LayerVersionArn != pub.LayerVersionArn || list.Layers[0].LatestMatchingVersion.Description != "from the CLI" {
		t.Errorf("aws lambda list-layers: %s", out)
	}
	if out, ok = awsCLI(t, d, data, "lambda", "list-layer-versions", "--layer-name", "dep"); !ok || !strings.Contains(out, pub.LayerVersionArn) {
		t.Errorf("aws lambda list-layer-versions: %s", out)
	}
	if out, ok = awsCLI(t, d, data, "lambda", "delete-layer-version", "--layer-name", "dep", "--version-number", "1"); !ok {
		t.Errorf("aws lambda delete-layer-version: %s", out)
	}
}
