package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
)

// gatedRegistry is an in-process registry on loopback whose blobs wait
// while it is held: a function stays Pending until it is released.
type gatedRegistry struct {
	*httptest.Server
	mu   sync.Mutex
	gate chan struct{} // closed: open
}

func newGatedRegistry(t *testing.T) *gatedRegistry {
	g := &gatedRegistry{gate: make(chan struct{})}
	close(g.gate)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			g.mu.Lock()
			gate := g.gate
			g.mu.Unlock()
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { g.release(); g.Close() })
	return g
}

func (g *gatedRegistry) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
		g.gate = make(chan struct{})
	default:
	}
}

func (g *gatedRegistry) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
	default:
		close(g.gate)
	}
}

// push writes img to the registry as repo:tag and returns its URI.
func (g *gatedRegistry) push(t *testing.T, repo string, img v1.Image) string {
	t.Helper()
	uri := strings.TrimPrefix(g.URL, "http://") + "/" + repo
	ref, err := name.ParseReference(uri, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return uri
}

// settled waits for a function to leave Pending.
func settled(t *testing.T, d *daemon, fn string) *lambda.GetFunctionOutput {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := d.client.GetFunction(context.Background(), &lambda.GetFunctionInput{FunctionName: aws.String(fn)})
		if err != nil {
			t.Fatal(err)
		}
		if out.Configuration.State != types.StatePending {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still Pending", fn)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createImage(d *daemon, fn, uri string, ic *types.ImageConfig, archs ...types.Architecture) (*lambda.CreateFunctionOutput, error) {
	return d.client.CreateFunction(context.Background(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(fn), PackageType: types.PackageTypeImage, Code: &types.FunctionCode{ImageUri: aws.String(uri)},
		Role: aws.String("arn:aws:iam::000000000000:role/none"), ImageConfig: ic, Architectures: archs, Timeout: aws.Int32(20),
		Environment: &types.Environment{Variables: map[string]string{"TESTFN_VAR": "from the function"}},
	})
}

// A container image from a registry on loopback, through the Lambda API:
// Pending while its root is built (and refused at invoke), then Active and
// run with its ImageConfig; and each bad input answered as Lambda does.
func TestContainerImageFunction(t *testing.T) {
	reg := newGatedRegistry(t)
	img := testvm.FunctionImage(t, "./internal/testfunction", "TESTFN_VAR=from the image", "IMAGE_ONLY=yes")
	uri := reg.push(t, "testfn:v1", img) // a tag, resolved to a digest
	armURI := reg.push(t, "armonly:v1", mutateArch(t, img, "arm64"))
	data := t.TempDir()
	d := start(t, data, time.Minute)
	ctx := context.Background()

	reg.hold()
	created, err := createImage(d, "img", uri, &types.ImageConfig{Command: []string{"--from-command"}, WorkingDirectory: aws.String("/var/task")})
	if err != nil {
		t.Fatal(err)
	}
	if created.State != types.StatePending || created.StateReasonCode != types.StateReasonCodeCreating || created.PackageType != types.PackageTypeImage {
		t.Errorf("created: state %s (%s), package %s", created.State, created.StateReasonCode, created.PackageType)
	}
	_, err = d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("img"), Payload: []byte(`{}`)})
	if apiErrorCode(err) != "ResourceConflictException" || httpStatus(err) != 409 ||
		!strings.Contains(err.Error(), "The operation cannot be performed at this time. The function is currently in the following state: Pending") {
		t.Errorf("invoke while Pending: %v", err)
	}
	reg.release()
	got := settled(t, d, "img")
	digest, _ := img.Digest()
	if got.Configuration.State != types.StateActive {
		t.Fatalf("state %s: %s (%s)", got.Configuration.State, aws.ToString(got.Configuration.StateReason), got.Configuration.StateReasonCode)
	}
	if c := got.Code; aws.ToString(c.ImageUri) != uri || aws.ToString(c.ResolvedImageUri) != strings.Split(uri, ":v1")[0]+"@"+digest.String() || aws.ToString(c.RepositoryType) != "ECR" {
		t.Errorf("code: %s %s %s", aws.ToString(c.ImageUri), aws.ToString(c.ResolvedImageUri), aws.ToString(c.RepositoryType))
	}
	if ic := got.Configuration.ImageConfigResponse; ic == nil || ic.ImageConfig == nil || aws.ToString(ic.ImageConfig.WorkingDirectory) != "/var/task" {
		t.Errorf("ImageConfigResponse %+v", ic)
	}

	out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("img"), Payload: []byte(`{"action":"argv"}`)})
	if err != nil || out.FunctionError != nil {
		t.Fatalf("invoke: %v %s", err, out.Payload)
	}
	var res struct {
		Argv []string `json:"argv"`
		Cwd  string   `json:"cwd"`
		Env  []string `json:"env"`
	}
	if err := json.Unmarshal(out.Payload, &res); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Argv, []string{"/app/testfunction", "--from-command"}) || res.Cwd != "/var/task" {
		t.Errorf("argv %q in %s: want the image's ENTRYPOINT, the function's Command, in its WorkingDirectory", res.Argv, res.Cwd)
	}
	for _, kv := range []string{"TESTFN_VAR=from the function", "IMAGE_ONLY=yes", "LAMBDA_TASK_ROOT=/var/task"} {
		if !slices.Contains(res.Env, kv) {
			t.Errorf("env lacks %s: %q", kv, res.Env)
		}
	}

	t.Run("bad inputs", func(t *testing.T) {
		for _, tc := range []struct {
			fn, uri    string
			ic         *types.ImageConfig
			archs      []types.Architecture
			status     int    // an answer at once
			reasonCode string // else a Failed function
		}{
			{"bad-ref", "Not A//Reference:", nil, nil, 400, ""},
			{"arm-arch", uri, nil, []types.Architecture{types.ArchitectureArm64}, 400, ""},
			{"missing", strings.TrimPrefix(reg.URL, "http://") + "/nothere:v1", nil, nil, 0, "ImageDeleted"},
			{"arm-image", armURI, nil, nil, 0, "InvalidImage"},
			{"bad-entrypoint", uri, &types.ImageConfig{EntryPoint: []string{"/app/nothere"}}, nil, 0, "FunctionError.InvalidEntryPoint"},
			{"not-imported", api.LocalImageURI("sha256:" + strings.Repeat("0", 64)), nil, nil, 0, "ImageDeleted"},
		} {
			_, err := createImage(d, tc.fn, tc.uri, tc.ic, tc.archs...)
			if tc.status != 0 {
				if httpStatus(err) != tc.status || apiErrorCode(err) != "InvalidParameterValueException" {
					t.Errorf("%s: %v, want %d InvalidParameterValueException", tc.fn, err, tc.status)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", tc.fn, err)
				continue
			}
			c := settled(t, d, tc.fn).Configuration
			if c.State != types.StateFailed || string(c.StateReasonCode) != tc.reasonCode || aws.ToString(c.StateReason) == "" {
				t.Errorf("%s: state %s, %s: %q; want Failed, %s", tc.fn, c.State, c.StateReasonCode, aws.ToString(c.StateReason), tc.reasonCode)
			}
			_, err = d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(tc.fn)})
			if httpStatus(err) != 409 {
				t.Errorf("%s: invoke of a Failed function: %v", tc.fn, err)
			}
		}
	})

	t.Run("ImageConfig updated", func(t *testing.T) {
		_, err := d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("img"),
			ImageConfig: &types.ImageConfig{EntryPoint: []string{"/app/nothere"}}})
		if httpStatus(err) != 400 {
			t.Errorf("a bad entry point for an Active function: %v, want 400", err)
		}
		// A Failed function is built again with its new ImageConfig.
		if _, err := d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("bad-entrypoint"),
			ImageConfig: &types.ImageConfig{EntryPoint: []string{"/app/testfunction"}}}); err != nil {
			t.Fatal(err)
		}
		if c := settled(t, d, "bad-entrypoint").Configuration; c.State != types.StateActive {
			t.Errorf("after fixing its entry point: %s %q", c.State, aws.ToString(c.StateReason))
		}
	})

	t.Run("imported image", func(t *testing.T) {
		tb := filepath.Join(t.TempDir(), "image.tar")
		if err := tarball.WriteToFile(tb, nil, img); err != nil {
			t.Fatal(err)
		}
		b, err := rootfs.New(server.ImageCacheDir(data), rootfs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		src, err := b.OpenTarball(tb)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Build(ctx, src); err != nil {
			t.Fatal(err)
		}
		local := api.LocalImageURI(src.Digest)
		if _, err := createImage(d, "local", local, nil); err != nil {
			t.Fatal(err)
		}
		got := settled(t, d, "local")
		if got.Configuration.State != types.StateActive || aws.ToString(got.Code.ResolvedImageUri) != local {
			t.Errorf("imported: %s (%s), resolved %s", got.Configuration.State, aws.ToString(got.Configuration.StateReason), aws.ToString(got.Code.ResolvedImageUri))
		}
		_, err = d.client.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("local"), ZipFile: readZip(t, "./internal/testfunction")})
		if httpStatus(err) != 400 {
			t.Errorf("a zip for an image function: %v, want 400", err)
		}
	})
}

func mutateArch(t *testing.T, img v1.Image, arch string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
