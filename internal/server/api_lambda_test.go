package server_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/hearthdev/hearth/internal/server"
)

// These tests run a real daemon and talk to it with aws-sdk-go-v2 and the
// aws CLI. They create functions but invoke none, so they boot no VM
// (startWith pins --accel tcg, so there is no acceleration probe either).

// awsCLI runs Debian's aws CLI against the daemon; it returns its combined
// output and whether it succeeded.
func awsCLI(t *testing.T, d *daemon, dataDir string, args ...string) (string, bool) {
	t.Helper()
	const awsBin = "/usr/bin/aws" // Debian's awscli; a pyenv shim on PATH may not work
	if _, err := os.Stat(awsBin); err != nil {
		t.Fatalf("the aws CLI is not installed (apt-get install awscli): %v", err)
	}
	home := t.TempDir()
	cmd := exec.Command(awsBin, append(args, "--endpoint-url", d.url, "--region", "local", "--output", "json")...)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "AWS_SHARED_CREDENTIALS_FILE=" + server.CredentialsFile(dataDir),
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1"}
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// corruptZip is a zip with an executable bootstrap whose directory is
// intact but whose data no longer matches its CRC-32.
func corruptZip(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Store}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "#!/bin/sh\necho this never runs\n"); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	b[bytes.Index(b, []byte("never"))] ^= 0xff
	return b
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

const unzipFailed = "Could not unzip uploaded file. Please check your file, then try to upload again."

func TestAPIBadZipIsInvalidParameterValue(t *testing.T) {
	data := t.TempDir()
	d := start(t, data, time.Minute)
	ctx := context.Background()
	hello := readZip(t, "./examples/hello")
	created, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{"not a zip": []byte("not a zip"), "a bad CRC": corruptZip(t)}
	for name, zipBytes := range bad {
		t.Run("create with "+name, func(t *testing.T) {
			_, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("broken"), Runtime: types.RuntimeProvidedal2023,
				Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zipBytes}})
			var inv *types.InvalidParameterValueException
			if !errors.As(err, &inv) || httpStatus(err) != 400 || !strings.HasPrefix(inv.ErrorMessage(), unzipFailed) {
				t.Fatalf("got %v (status %d), want a 400 InvalidParameterValueException starting %q", err, httpStatus(err), unzipFailed)
			}
			var nf *types.ResourceNotFoundException
			if _, err := d.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("broken")}); !errors.As(err, &nf) {
				t.Errorf("the refused function exists: %v", err)
			}
		})
		t.Run("update with "+name, func(t *testing.T) {
			_, err := d.client.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"), ZipFile: zipBytes})
			var inv *types.InvalidParameterValueException
			if !errors.As(err, &inv) || !strings.HasPrefix(inv.ErrorMessage(), unzipFailed) {
				t.Fatalf("got %v, want an InvalidParameterValueException starting %q", err, unzipFailed)
			}
			got, err := d.client.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("hello")})
			if err != nil || aws.ToString(got.CodeSha256) != aws.ToString(created.CodeSha256) {
				t.Errorf("the code changed after a refused update: %v", err)
			}
		})
	}
	t.Run("the aws CLI", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "bad.zip")
		if err := os.WriteFile(p, corruptZip(t), 0o600); err != nil {
			t.Fatal(err)
		}
		out, ok := awsCLI(t, d, data, "lambda", "create-function", "--function-name", "broken", "--runtime", "provided.al2023",
			"--role", "arn:aws:iam::000000000000:role/none", "--handler", "bootstrap", "--zip-file", "fileb://"+p)
		if ok || !strings.Contains(out, "(InvalidParameterValueException)") || !strings.Contains(out, unzipFailed) {
			t.Errorf("aws lambda create-function with a corrupt zip: %s", out)
		}
	})
}

func TestAPIUnknownOperation(t *testing.T) {
	data := t.TempDir()
	d := start(t, data, time.Minute)
	ctx := context.Background()
	_, err := d.client.GetFunctionRecursionConfig(ctx, &lambda.GetFunctionRecursionConfigInput{FunctionName: aws.String("hello")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnknownOperationException" || httpStatus(err) != 404 ||
		!strings.Contains(ae.ErrorMessage(), "GetFunctionRecursionConfig") || !strings.Contains(ae.ErrorMessage(), "not supported by Hearth") {
		t.Errorf("GetFunctionRecursionConfig: %v (status %d)", err, httpStatus(err))
	}
	out, ok := awsCLI(t, d, data, "lambda", "list-code-signing-configs")
	if ok || !strings.Contains(out, "(UnknownOperationException)") || !strings.Contains(out, "ListCodeSigningConfigs") || !strings.Contains(out, "not supported by Hearth") {
		t.Errorf("aws lambda list-code-signing-configs: %s", out)
	}
}

func TestAPITags(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	ctx := context.Background()
	hello := readZip(t, "./examples/hello")
	created, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("tagged"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}, Tags: map[string]string{"team": "core", "env": "dev"}})
	if err != nil {
		t.Fatal(err)
	}
	arn := created.FunctionArn
	got, err := d.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("tagged")})
	if err != nil || len(got.Tags) != 2 || got.Tags["team"] != "core" {
		t.Fatalf("GetFunction tags %v %v", got.Tags, err)
	}
	if _, err := d.client.TagResource(ctx, &lambda.TagResourceInput{Resource: arn, Tags: map[string]string{"env": "prod", "owner": "ada"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.UntagResource(ctx, &lambda.UntagResourceInput{Resource: arn, TagKeys: []string{"team", "absent"}}); err != nil {
		t.Fatal(err)
	}
	list, err := d.client.ListTags(ctx, &lambda.ListTagsInput{Resource: arn})
	if err != nil || len(list.Tags) != 2 || list.Tags["env"] != "prod" || list.Tags["owner"] != "ada" {
		t.Errorf("ListTags %v %v", list, err)
	}
	var inv *types.InvalidParameterValueException
	if _, err := d.client.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(aws.ToString(arn) + ":1"), Tags: map[string]string{"a": "b"}}); !errors.As(err, &inv) {
		t.Errorf("tagging a qualified ARN: %v", err)
	}
	var nf *types.ResourceNotFoundException
	if _, err := d.client.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(strings.Replace(aws.ToString(arn), "tagged", "nope", 1))}); !errors.As(err, &nf) {
		t.Errorf("tags of a missing function: %v", err)
	}
	// Deleting the function deletes its tags.
	if _, err := d.client.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("tagged")}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("tagged"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}}); err != nil {
		t.Fatal(err)
	}
	if list, err := d.client.ListTags(ctx, &lambda.ListTagsInput{Resource: arn}); err != nil || len(list.Tags) != 0 {
		t.Errorf("a new function of the same name has tags %v %v", list, err)
	}
}

func TestAPIPermissions(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("fn"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./examples/hello")}, Publish: true}); err != nil {
		t.Fatal(err)
	}
	added, err := d.client.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("fn"), StatementId: aws.String("s3-invoke"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("s3.amazonaws.com"), SourceArn: aws.String("arn:aws:s3:::bucket")})
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Sid, Effect, Action, Resource string
		Principal                     map[string]string
		Condition                     map[string]map[string]string
	}
	if err := json.Unmarshal([]byte(aws.ToString(added.Statement)), &st); err != nil || st.Sid != "s3-invoke" || st.Principal["Service"] != "s3.amazonaws.com" ||
		st.Condition["ArnLike"]["AWS:SourceArn"] != "arn:aws:s3:::bucket" || !strings.HasSuffix(st.Resource, ":function:fn") {
		t.Errorf("statement %s: %v", aws.ToString(added.Statement), err)
	}
	if _, err := d.client.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("fn"), StatementId: aws.String("v1"), Qualifier: aws.String("1"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("123456789012")}); err != nil {
		t.Fatal(err)
	}
	var conflict *types.ResourceConflictException
	if _, err := d.client.AddPermission(ctx, &lambda.AddPermissionInput{FunctionName: aws.String("fn"), StatementId: aws.String("s3-invoke"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("*")}); !errors.As(err, &conflict) {
		t.Errorf("a second s3-invoke: %v", err)
	}
	policy, err := d.client.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String("fn")})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version   string
		Statement []struct{ Sid string }
	}
	if err := json.Unmarshal([]byte(aws.ToString(policy.Policy)), &doc); err != nil || doc.Version != "2012-10-17" || len(doc.Statement) != 1 || doc.Statement[0].Sid != "s3-invoke" {
		t.Errorf("policy %s: %v", aws.ToString(policy.Policy), err)
	}
	if v1, err := d.client.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String("fn"), Qualifier: aws.String("1")}); err != nil ||
		!strings.Contains(aws.ToString(v1.Policy), `"Sid":"v1"`) || !strings.Contains(aws.ToString(v1.Policy), ":function:fn:1") {
		t.Errorf("the policy of version 1: %v %v", v1, err)
	}
	if _, err := d.client.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String("fn"), StatementId: aws.String("s3-invoke"),
		RevisionId: policy.RevisionId}); err != nil {
		t.Fatal(err)
	}
	var nf *types.ResourceNotFoundException
	if _, err := d.client.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String("fn")}); !errors.As(err, &nf) {
		t.Errorf("GetPolicy after the last statement went: %v", err)
	}
	if _, err := d.client.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String("fn"), StatementId: aws.String("s3-invoke")}); !errors.As(err, &nf) {
		t.Errorf("removing it again: %v", err)
	}
}

func TestAPIAccountSettingsAndCodeSigning(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute) // startWith sets --max-concurrency 4
	ctx := context.Background()
	hello := readZip(t, "./examples/hello")
	for _, name := range []string{"one", "two"} {
		if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: types.RuntimeProvidedal2023,
			Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.client.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("one"), ReservedConcurrentExecutions: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	s, err := d.client.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil {
		t.Fatal(err)
	}
	l, u := s.AccountLimit, s.AccountUsage
	if l.ConcurrentExecutions != 4 || aws.ToInt32(l.UnreservedConcurrentExecutions) != 3 || l.CodeSizeZipped != 50<<20 || l.CodeSizeUnzipped != 262144000 {
		t.Errorf("AccountLimit %+v", l)
	}
	// The two functions share one stored zip.
	if u.FunctionCount != 2 || u.TotalCodeSize != int64(len(hello)) || l.TotalCodeSize <= u.TotalCodeSize {
		t.Errorf("AccountUsage %+v, AccountLimit.TotalCodeSize %d; the zip is %d bytes", u, l.TotalCodeSize, len(hello))
	}
	csc, err := d.client.GetFunctionCodeSigningConfig(ctx, &lambda.GetFunctionCodeSigningConfigInput{FunctionName: aws.String("one")})
	if err != nil || aws.ToString(csc.CodeSigningConfigArn) != "" || aws.ToString(csc.FunctionName) != "one" {
		t.Errorf("GetFunctionCodeSigningConfig %+v %v", csc, err)
	}
	var nf *types.ResourceNotFoundException
	if _, err := d.client.GetFunctionCodeSigningConfig(ctx, &lambda.GetFunctionCodeSigningConfigInput{FunctionName: aws.String("nope")}); !errors.As(err, &nf) {
		t.Errorf("code signing config of a missing function: %v", err)
	}
	// ListFunctionUrlConfigs, which deployment tools call before creating one.
	urls, err := d.client.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: aws.String("one")})
	if err != nil || len(urls.FunctionUrlConfigs) != 0 {
		t.Errorf("ListFunctionUrlConfigs %+v %v", urls, err)
	}
}

func TestAPIConfigurationFields(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	ctx := context.Background()
	hello := readZip(t, "./examples/hello")
	var inv *types.InvalidParameterValueException
	_, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("arm"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}, Architectures: []types.Architecture{types.ArchitectureArm64}})
	if !errors.As(err, &inv) || !strings.Contains(inv.ErrorMessage(), "this host runs x86_64") {
		t.Errorf("arm64: %v", err)
	}
	plain, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("plain"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(plain.EphemeralStorage.Size) != 512 || plain.LoggingConfig.LogFormat != types.LogFormatText ||
		aws.ToString(plain.LoggingConfig.LogGroup) != "/aws/lambda/plain" || plain.SnapStart.ApplyOn != types.SnapStartApplyOnNone ||
		plain.SnapStart.OptimizationStatus != types.SnapStartOptimizationStatusOff || len(plain.Architectures) != 1 || plain.Architectures[0] != types.ArchitectureX8664 {
		t.Errorf("defaults: %+v %+v %+v %v", plain.EphemeralStorage, plain.LoggingConfig, plain.SnapStart, plain.Architectures)
	}
	_, err = d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("fn"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}, Architectures: []types.Architecture{types.ArchitectureX8664},
		EphemeralStorage: &types.EphemeralStorage{Size: aws.Int32(2048)},
		LoggingConfig:    &types.LoggingConfig{LogFormat: types.LogFormatJson, ApplicationLogLevel: types.ApplicationLogLevelDebug},
		SnapStart:        &types.SnapStart{ApplyOn: types.SnapStartApplyOnPublishedVersions}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := d.client.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("fn")})
	if err != nil {
		t.Fatal(err)
	}
	if v.SnapStart.OptimizationStatus != types.SnapStartOptimizationStatusOn || aws.ToInt32(v.EphemeralStorage.Size) != 2048 {
		t.Errorf("version 1: %+v %+v", v.SnapStart, v.EphemeralStorage)
	}
	if _, err := d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("fn"),
		LoggingConfig: &types.LoggingConfig{SystemLogLevel: types.SystemLogLevelWarn, LogGroup: aws.String("/team/fn")},
		SnapStart:     &types.SnapStart{ApplyOn: types.SnapStartApplyOnNone}}); err != nil {
		t.Fatal(err)
	}
	list, err := d.client.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var latest *types.FunctionConfiguration
	for i := range list.Functions {
		if aws.ToString(list.Functions[i].FunctionName) == "fn" {
			latest = &list.Functions[i]
		}
	}
	if latest == nil {
		t.Fatal("fn is not listed")
	}
	want := types.LoggingConfig{LogFormat: types.LogFormatJson, ApplicationLogLevel: types.ApplicationLogLevelDebug, SystemLogLevel: types.SystemLogLevelWarn, LogGroup: aws.String("/team/fn")}
	lc := latest.LoggingConfig
	if lc.LogFormat != want.LogFormat || lc.ApplicationLogLevel != want.ApplicationLogLevel || lc.SystemLogLevel != want.SystemLogLevel || aws.ToString(lc.LogGroup) != "/team/fn" ||
		latest.SnapStart.ApplyOn != types.SnapStartApplyOnNone || aws.ToInt32(latest.EphemeralStorage.Size) != 2048 {
		t.Errorf("listed: %+v %+v %+v", lc, latest.SnapStart, latest.EphemeralStorage)
	}
	// The published version keeps what it was published with.
	v1, err := d.client.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("fn"), Qualifier: aws.String("1")})
	if err != nil || v1.SnapStart.OptimizationStatus != types.SnapStartOptimizationStatusOn || v1.SnapStart.ApplyOn != types.SnapStartApplyOnPublishedVersions {
		t.Errorf("version 1 after the update: %+v %v", v1, err)
	}
	for name, in := range map[string]*lambda.UpdateFunctionConfigurationInput{
		"/tmp of 100 MB":     {FunctionName: aws.String("fn"), EphemeralStorage: &types.EphemeralStorage{Size: aws.Int32(100)}},
		"levels with Text":   {FunctionName: aws.String("plain"), LoggingConfig: &types.LoggingConfig{ApplicationLogLevel: types.ApplicationLogLevelInfo}},
		"an unknown ApplyOn": {FunctionName: aws.String("fn"), SnapStart: &types.SnapStart{ApplyOn: "Always"}},
	} {
		if _, err := d.client.UpdateFunctionConfiguration(ctx, in); !errors.As(err, &inv) {
			t.Errorf("%s: %v, want an InvalidParameterValueException", name, err)
		}
	}
	var pre *types.PreconditionFailedException
	if _, err := d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("fn"),
		Timeout: aws.Int32(5), RevisionId: aws.String("stale")}); !errors.As(err, &pre) {
		t.Errorf("a stale RevisionId: %v", err)
	}
}
