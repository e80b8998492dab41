package server_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/server"
)

// The aws CLI, pointed at the daemon with its credentials file, works as it
// does against AWS.
func TestAWSCLI(t *testing.T) {
	awsBin := "/usr/bin/aws" // Debian's awscli, which scripts/install-deps.sh installs
	if _, err := os.Stat(awsBin); err != nil {
		t.Fatalf("the aws CLI is not installed (apt-get install awscli): %v", err)
	}
	data := t.TempDir()
	d := start(t, data, time.Minute)
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./examples/hello")}}); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(awsBin, append(args, "--endpoint-url", d.url, "--region", "local", "--output", "json")...)
		cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "AWS_SHARED_CREDENTIALS_FILE=" + server.CredentialsFile(data),
			"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_PAGER="}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("lambda", "list-functions"); !strings.Contains(out, `"FunctionName": "hello"`) {
		t.Errorf("list-functions: %s", out)
	}
	result := filepath.Join(home, "out.json")
	out := run("lambda", "invoke", "--function-name", "hello", "--cli-binary-format", "raw-in-base64-out",
		"--payload", `{"name":"CLI"}`, "--log-type", "Tail", result)
	if b, _ := os.ReadFile(result); !strings.Contains(string(b), "Hello, CLI!") {
		t.Errorf("invoke wrote %q", b)
	}
	var meta struct {
		StatusCode      int
		ExecutedVersion string
		LogResult       string
	}
	if err := json.Unmarshal([]byte(out), &meta); err != nil || meta.StatusCode != 200 || meta.ExecutedVersion != "$LATEST" {
		t.Fatalf("invoke printed %s (%v)", out, err)
	}
	checkLogTail(t, meta.LogResult, true)
}
