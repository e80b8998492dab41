package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/server"
)

// A daemon whose configuration follows the log on its broker: the API's
// writes go through the log, and a restarted daemon has them (applied from
// SQLite, the log resumed after them). No function is invoked: no VM.
func TestConfigLogDaemonKeepsTheAPIsWrites(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	cfg := server.Config{DataDir: data, KeepWarm: time.Minute, ConfigLog: server.ConfigLog{Enabled: true, Host: "a", Replicas: 1}}
	d := startWith(t, cfg)
	hello := readZip(t, "./examples/hello")
	lv, err := d.client.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("lib"),
		Content: &types.LayerVersionContentInput{ZipFile: layerZip(t, "lib/x", "x")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("f"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}, Layers: []string{aws.ToString(lv.LayerVersionArn)},
		Tags: map[string]string{"team": "core"}}); err != nil {
		t.Fatal(err)
	}
	var exists *types.ResourceConflictException
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("f"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}}); !errors.As(err, &exists) {
		t.Errorf("second create: %v, want ResourceConflictException", err)
	}
	v, err := d.client.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("f")})
	if err != nil || aws.ToString(v.Version) != "1" {
		t.Fatalf("publish: %v %v", v, err)
	}
	if _, err := d.client.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("f"), Name: aws.String("live"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	if err := d.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	d = startWith(t, cfg)
	a, err := d.client.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("f"), Name: aws.String("live")})
	if err != nil || aws.ToString(a.FunctionVersion) != "1" {
		t.Fatalf("alias after restart: %v %v", a, err)
	}
	f, err := d.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("f")})
	if err != nil || f.Tags["team"] != "core" || len(f.Configuration.Layers) != 1 {
		t.Fatalf("function after restart: %v %v", f, err)
	}
	// And it still writes.
	if _, err := d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("f"),
		MemorySize: aws.Int32(256)}); err != nil {
		t.Fatal(err)
	}
}

// A standalone daemon's data folder, with functions of its own, restarted
// with the configuration log on (its broker's log empty): it brings its
// configuration into the log and goes on with it.
func TestConfigLogTakesAStandaloneConfiguration(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	d := startWith(t, server.Config{DataDir: data, KeepWarm: time.Minute})
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("mine"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./examples/hello")}}); err != nil {
		t.Fatal(err)
	}
	if err := d.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	d = startWith(t, server.Config{DataDir: data, KeepWarm: time.Minute, ConfigLog: server.ConfigLog{Enabled: true, Host: "a"}})
	if _, err := d.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("mine")}); err != nil {
		t.Fatalf("the standalone function with the log on: %v", err)
	}
	if _, err := d.client.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("mine")}); err != nil {
		t.Fatal(err)
	}
}
