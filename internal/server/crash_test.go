package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
)

// serveProcess runs `hearth serve` as its own process, as a user would,
// and stops it when the test ends.
func serveProcess(t *testing.T, bin, data, addr string, flags ...string) *exec.Cmd {
	t.Helper()
	cmd, err := startServe(os.Stderr, bin, data, addr, flags...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		// What the daemon kept for a next one: its suspended
		// environments' networks.
		_ = network.RemoveEnvNetworks(filepath.Join(data, "envs"))
	})
	return cmd
}

// startServe starts `hearth serve` on data and waits until it answers;
// the caller ends it.
func startServe(stderr io.Writer, bin, data, addr string, flags ...string) (*exec.Cmd, error) {
	args := append([]string{"serve", "--data-dir", data, "--listen", addr, "--accel", "tcg", "--url-listen", "", "--url-tls-listen", ""}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return cmd, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, errors.New("hearth serve did not come up")
}

// qemuChildren lists the QEMU processes (alive, not zombies) whose parent
// is pid.
func qemuChildren(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "qemu") {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) > 1 && f[0] != "Z" && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// Killing the daemon with SIGKILL during an invocation loses nothing that
// was stored, leaves no QEMU running, and the next daemon serves the
// function again.
func TestKillDaemonDuringInvocation(t *testing.T) {
	testvm.Driver(t)
	bin, data := testvm.Hearth(t), t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	daemon := serveProcess(t, bin, data, addr)
	profiles, err := server.ReadCredentials(server.CredentialsFile(data))
	if err != nil {
		t.Fatal(err)
	}
	client := lambda.New(lambda.Options{BaseEndpoint: aws.String("http://" + addr), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(profiles[0].AccessKeyID, profiles[0].SecretAccessKey, "")})
	ctx := context.Background()
	if _, err := client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("slow"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, Timeout: aws.Int32(60),
		MemorySize: aws.Int32(192), Environment: &types.Environment{Variables: map[string]string{"TESTFN_VAR": "kept"}}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(`{"action":"sleep","ms":60000}`)})
	}()
	var vms []int
	deadline := time.Now().Add(60 * time.Second)
	for len(vms) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		vms = qemuChildren(daemon.Process.Pid)
	}
	if len(vms) == 0 {
		t.Fatal("no QEMU started for the invocation")
	}
	time.Sleep(3 * time.Second) // well into the invocation
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = daemon.Process.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for _, pid := range vms {
		for testvm.Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if testvm.Alive(pid) {
			t.Errorf("QEMU %d outlived the killed daemon", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	oldEnvs, _ := os.ReadDir(filepath.Join(data, "envs"))

	serveProcess(t, bin, data, addr)
	got, err := client.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("slow")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(got.MemorySize) != 192 || aws.ToInt32(got.Timeout) != 60 || got.Environment.Variables["TESTFN_VAR"] != "kept" {
		t.Errorf("configuration after the crash: %+v", got)
	}
	out, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(`{"name":"after"}`)})
	if err != nil || out.FunctionError != nil || !strings.Contains(string(out.Payload), `"TESTFN_VAR":"kept"`) {
		t.Fatalf("invoke after restart: %v %s", err, out.Payload)
	}
	for _, e := range oldEnvs {
		if _, err := os.Stat(filepath.Join(data, "envs", e.Name())); err == nil {
			t.Errorf("the crashed daemon's env %s was neither adopted nor ended", e.Name())
		}
	}
}

// A daemon starting on a data folder that a killed one left sweeps what no
// record points to: the folder of a boot cut short, a half-written code
// package, the templates.
func TestStartSweepsLeftovers(t *testing.T) {
	data := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	left := []string{
		filepath.Join(data, "envs", "env-cutshort"),
		filepath.Join(data, "snapstart", "tpl-old"),
		filepath.Join(data, "code", fmt.Sprintf("0123.zip.%d.42.tmp", gone.Process.Pid)),
	}
	for _, p := range []string{left[0], left[1], filepath.Dir(left[2])} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(left[2], []byte("half a zip"), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, data, time.Minute)
	for _, p := range left {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after the daemon started (%v)", p, err)
		}
	}
}
