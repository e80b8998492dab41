package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hearthdev/hearth/client/microvm"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

// README's `hearth vm` commands, as a user types them, against a daemon
// in-process with real MicroVMs: an image built from an OCI reference, a
// run with an idle policy, the endpoint with a minted token (and its
// auto-resume), exec, files, suspend/resume, list, cost and top, shell
// without a terminal, and terminate (twice). No QEMU outlives the test.
func TestVMCommandsAgainstADaemon(t *testing.T) {
	var dataDir string // the daemon's, once it runs
	noQEMULeft(t, &dataDir)
	uri := pushToRegistry(t, "agent:v1", testvm.MicroVMImage(t))
	d := startVMDaemon(t)
	dataDir = d.data
	hearth := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		return d.hearth(t, wantCode, args...)
	}

	// The build waits until the image is CREATED (--wait is the default).
	out, _ := hearth(ExitOK, "vm", "image", "create", "agent", "--image", uri, "--memory", "512", "--hook-port", "9000")
	arn := "arn:aws:lambda:local:000000000000:microvm-image:agent"
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || lines[0] != arn+" version 1: CREATED" ||
		!regexp.MustCompile(`^from sha256:[0-9a-f]{64}$`).MatchString(lines[1]) {
		t.Errorf("vm image create printed %q, want %q and the digest", out, arn+" version 1: CREATED")
	}
	if out, _ = hearth(ExitOK, "vm", "image", "get", "agent"); out != arn+": CREATED\nactive version: 1\n" {
		t.Errorf("vm image get: %q", out)
	}
	out, _ = hearth(ExitOK, "vm", "image", "get", "agent", "1", "-o", "json")
	var ver microvm.ImageVersion
	if err := json.Unmarshal([]byte(out), &ver); err != nil || ver.State != microvm.VersionSuccessful || ver.Status != microvm.VersionActive ||
		ver.Hooks == nil || ver.Hooks.Port != 9000 || len(ver.Resources) != 1 || ver.Resources[0].MinimumMemoryInMiB != 512 {
		t.Errorf("vm image get agent 1: %v %s", err, out)
	}

	out, _ = hearth(ExitOK, "vm", "image", "list")
	if !regexp.MustCompile(`^NAME\s+STATE\s+ACTIVE VERSION\s+CREATED\nagent\s+CREATED\s+1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n$`).MatchString(out) {
		t.Errorf("vm image list: %q", out)
	}
	if _, errOut := hearth(ExitBadInput, "vm", "run", "nope"); !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("vm run of an unknown image: %q, want a ResourceNotFoundException", errOut)
	}

	// run prints the id and the endpoint, one a line.
	out, _ = hearth(ExitOK, "vm", "run", "agent", "--idle", "2s", "--suspended", "1h", "--auto-resume")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("vm run printed %q, want the id and the endpoint", out)
	}
	id, endpoint := lines[0], lines[1]
	if !regexp.MustCompile(`^http://` + regexp.QuoteMeta(id) + `\.lambda-microvm\.localhost:\d+/$`).MatchString(endpoint) {
		t.Fatalf("vm run: endpoint %q of %q", endpoint, id)
	}
	out, _ = hearth(ExitOK, "vm", "get", id)
	if !strings.Contains(out, "endpoint: "+endpoint+"\n") || !strings.Contains(out, "image: "+arn+" version 1\n") ||
		!strings.Contains(out, "idle policy: suspend after 2s idle, terminate after 1h0m0s suspended, auto-resume true\n") {
		t.Errorf("vm get: %q", out)
	}

	// The token opens the endpoint; without it, 403.
	tok, _ := hearth(ExitOK, "vm", "token", id)
	tok = strings.TrimSuffix(tok, "\n")
	if tok == "" || strings.ContainsAny(tok, " \n") {
		t.Fatalf("vm token printed %q, want one token", tok)
	}
	first := endpointHits(t, endpoint, tok)
	if first.Hits != 1 {
		t.Errorf("first GET /: %+v, want hits 1", first)
	}
	if st, b := endpointGetStatus(t, endpoint, "/", "", 0); st != http.StatusForbidden {
		t.Errorf("GET / without a token: %d %s, want 403", st, b)
	}

	// Idle for 2 s: suspended by the policy; the next request resumes it,
	// its memory kept.
	waitVMState(t, d, id, microvm.StateSuspended)
	if again := endpointHits(t, endpoint, tok); again.Hits != 2 || again.Instance != first.Instance {
		t.Errorf("GET / after the idle suspend: %+v, want hits 2 of instance %s", again, first.Instance)
	}

	// exec: a name looked up in the PATH given, the output streamed, the
	// exit status the CLI's. A suspended MicroVM is resumed first.
	out, errOut := hearth(ExitOK, "vm", "exec", id, "--env", "PATH=/app", "--", "testmicrovm", "echo-args", "hi")
	if out != "hi\n" || errOut != "" {
		t.Errorf("vm exec echo-args: stdout %q stderr %q, want \"hi\\n\" and nothing", out, errOut)
	}
	if out, errOut = hearth(3, "vm", "exec", id, "--", "/app/testmicrovm", "exit", "3"); out != "" || errOut != "" {
		t.Errorf("vm exec exit 3: stdout %q stderr %q, want nothing", out, errOut)
	}
	if code, out, errOut := runStdin(t, d.env, "line one\nline two\n", "vm", "exec", id, "--", "/app/testmicrovm", "cat"); code != ExitOK || out != "line one\nline two\n" {
		t.Errorf("vm exec cat with stdin: exit %d stdout %q stderr %q", code, out, errOut)
	}

	// A program that cannot start is an error said, not a status.
	if code, out, errOut := run(t, d.env, "vm", "exec", id, "--", "/nope"); code == ExitOK || out != "" || !strings.HasPrefix(errOut, "hearth: exec: ") {
		t.Errorf("vm exec /nope: exit %d stdout %q stderr %q, want an error", code, out, errOut)
	}

	// Files: in, out, listed, removed.
	local := filepath.Join(t.TempDir(), "data.csv")
	data := []byte("a,b\n1,2\n" + strings.Repeat("x", 300<<10) + "\n")
	if err := os.WriteFile(local, data, 0o640); err != nil {
		t.Fatal(err)
	}
	hearth(ExitOK, "vm", "cp", local, id+":/tmp/data.csv")
	back := filepath.Join(t.TempDir(), "out.csv")
	hearth(ExitOK, "vm", "cp", id+":/tmp/data.csv", back)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, data) {
		t.Errorf("vm cp out: %d bytes (%v), want the %d copied in", len(got), err, len(data))
	}
	if fi, err := os.Stat(back); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("vm cp out: mode %v (%v), want the file's 0640", fi.Mode(), err)
	}
	out, _ = hearth(ExitOK, "vm", "ls", id+":/tmp")
	if !regexp.MustCompile(`(?m)^-rw-r-----\s+` + strconv.Itoa(len(data)) + `\s+\S+ \S+\s+data\.csv$`).MatchString(out) {
		t.Errorf("vm ls %s:/tmp: %q, want data.csv, 0640, %d bytes", id, out, len(data))
	}
	if out, _ = hearth(ExitOK, "vm", "ls", id+":/app/testmicrovm"); !regexp.MustCompile(`^-rwxr-xr-x\s+\d+\s+\S+ \S+\s+testmicrovm\n$`).MatchString(out) {
		t.Errorf("vm ls of a file: %q", out)
	}
	if _, errOut = hearth(ExitBadInput, "vm", "ls", id+":/nope"); !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("vm ls of nothing: %q", errOut)
	}
	// The image's root is read-only. (A small file: a refused upload
	// larger than the stream's window stalls 30 s in the sandbox.)
	small := filepath.Join(t.TempDir(), "small.txt")
	if err := os.WriteFile(small, []byte("small\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut = hearth(ExitBadInput, "vm", "cp", small, id+":/app/small.txt"); !strings.Contains(errOut, "AccessDeniedException") {
		t.Errorf("vm cp into the image's root: %q, want an AccessDeniedException", errOut)
	}
	hearth(ExitOK, "vm", "rm", id+":/tmp/data.csv")
	if out, _ = hearth(ExitOK, "vm", "ls", id+":/tmp"); strings.Contains(out, "data.csv") {
		t.Errorf("vm ls after rm: %q", out)
	}
	if _, errOut = hearth(ExitBadInput, "vm", "cp", id+":/tmp/data.csv", back); !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("vm cp of a removed file: %q, want a ResourceNotFoundException", errOut)
	}
	// - is stdin or stdout.
	if code, out, errOut := runStdin(t, d.env, "from stdin\n", "vm", "cp", "-", id+":/tmp/in.txt"); code != ExitOK || out != "" {
		t.Errorf("vm cp - ID:/tmp/in.txt: exit %d %q %q", code, out, errOut)
	}
	if out, _ = hearth(ExitOK, "vm", "cp", id+":/tmp/in.txt", "-"); out != "from stdin\n" {
		t.Errorf("vm cp ID:/tmp/in.txt -: %q", out)
	}

	// shell when stdin is no terminal (a pipe, a script): the program
	// still gets a terminal, of 24x80 when stdout is none either, its
	// input is stdin, and it ends when that does.
	code, out, errOut := runStdin(t, d.env, "", "vm", "shell", id, "--", "/app/testmicrovm", "tty")
	if code != ExitOK || out != "{\"tty\":true,\"rows\":24,\"cols\":80}\r\n" || errOut != "" {
		t.Errorf("vm shell without a terminal: exit %d stdout %q stderr %q", code, out, errOut)
	}

	// The state verbs; a wrong-state one is a conflict.
	resumeIfSuspended(t, d, id)
	hearth(ExitOK, "vm", "suspend", id)
	if out, _ = hearth(ExitOK, "vm", "get", id); !strings.HasPrefix(out, id+": SUSPENDED\n") {
		t.Errorf("vm get after suspend: %q", out)
	}
	if _, errOut = hearth(ExitBadInput, "vm", "suspend", id); !strings.Contains(errOut, "ConflictException") {
		t.Errorf("vm suspend of a suspended MicroVM: %q, want a ConflictException", errOut)
	}
	hearth(ExitOK, "vm", "resume", id)
	if out, _ = hearth(ExitOK, "vm", "get", id); !strings.HasPrefix(out, id+": RUNNING\n") {
		t.Errorf("vm get after resume: %q", out)
	}

	out, _ = hearth(ExitOK, "vm", "list")
	if !regexp.MustCompile(`^ID\s+STATE\s+IMAGE\s+VERSION\s+STARTED\n`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(id)+`\s+(RUNNING|SUSPENDED)\s+`+regexp.QuoteMeta(arn)+`\s+1\s+\d{4}-`).MatchString(out) {
		t.Errorf("vm list: %q", out)
	}
	out, _ = hearth(ExitOK, "vm", "list", "-o", "json")
	var list microvm.ListOutput
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Items) != 1 || list.Items[0].MicrovmID != id {
		t.Errorf("vm list -o json: %v %s", err, out)
	}

	// A token for another port opens that port (the image's hook server,
	// which recorded the hooks the suspends and resumes called).
	tok9000, _ := hearth(ExitOK, "vm", "token", id, "--port", "9000")
	if st, b := endpointGetStatus(t, endpoint, "/hooks", tok, 9000); st != http.StatusForbidden {
		t.Errorf("port 9000 with the token for 8080: %d %s, want 403", st, b)
	}
	st, b := endpointGetStatus(t, endpoint, "/hooks", strings.TrimSpace(tok9000), 9000)
	var calls []struct{ Name string }
	if err := json.Unmarshal(b, &calls); st != http.StatusOK || err != nil {
		t.Fatalf("GET /hooks on 9000: %d %s", st, b)
	}
	var names []string
	for _, c := range calls {
		names = append(names, c.Name)
	}
	// ready (in the template, before its snapshot), run, then a suspend
	// and a resume for each: the idle one and the commands' (and any idle
	// one between commands on a slow machine).
	got := strings.Join(names, " ")
	if !regexp.MustCompile(`^ready run suspend resume( suspend resume)+$`).MatchString(got) {
		t.Errorf("the hooks called: %s, want ready, run, then suspend and resume pairs", got)
	}

	// MicroVMs beside functions in top and cost.
	if out, _ = hearth(ExitOK, "top", "--once"); !regexp.MustCompile(`(?m)^microvm:agent(\s+\d+){3,4}$`).MatchString(out) {
		t.Errorf("top --once has no microvm:agent row: %q", out)
	}

	hearth(ExitOK, "vm", "terminate", id)
	hearth(ExitOK, "vm", "terminate", id)
	if out, _ = hearth(ExitOK, "vm", "get", id); !strings.HasPrefix(out, id+": TERMINATED\n") {
		t.Errorf("vm get after terminate: %q", out)
	}
	if _, errOut = hearth(ExitBadInput, "vm", "exec", id, "--", "/app/testmicrovm", "echo-args", "x"); errOut == "" {
		t.Error("vm exec in a terminated MicroVM: no reason given")
	}

	out, _ = hearth(ExitOK, "cost", "-o", "json")
	var rep struct {
		Functions []struct {
			Name            string  `json:"name"`
			GBSeconds       float64 `json:"gb_seconds"`
			SnapshotGBHours float64 `json:"snapshot_gb_hours"`
		} `json:"functions"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("cost -o json: %v %s", err, out)
	}
	found := false
	for _, f := range rep.Functions {
		if f.Name == "microvm:agent" {
			found = true
			if f.GBSeconds <= 0 || f.SnapshotGBHours <= 0 {
				t.Errorf("cost of microvm:agent: %+v, want running GB-s and snapshot GB-h", f)
			}
		}
	}
	if !found {
		t.Errorf("cost -o json has no microvm:agent row: %s", out)
	}
	if out, _ = hearth(ExitOK, "cost"); !regexp.MustCompile(`(?m)^\s*microvm:agent\s+512 MB\s`).MatchString(out) {
		t.Errorf("cost has no microvm:agent row: %q", out)
	}
}

// startVMDaemon is startCLIDaemon with a URL listener, where MicroVMs'
// endpoints are.
func startVMDaemon(t *testing.T) *cliDaemon {
	t.Helper()
	testvm.Driver(t)
	data := t.TempDir()
	srv, err := server.New(context.Background(), server.Config{DataDir: data, Listen: "127.0.0.1:0", URLListen: "127.0.0.1:0",
		Host: vmboot.Options{Agent: testvm.Agent(t), Accel: "tcg", CacheDir: testvm.CacheDir()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		_ = network.RemoveEnvNetworks(filepath.Join(data, "envs"))
	})
	return &cliDaemon{srv: srv, data: data, env: map[string]string{"HEARTH_DATA_DIR": data, "HEARTH_ENDPOINT": "http://" + srv.Addr(),
		"HEARTH_CONFIG": filepath.Join(data, "none.json"), "AWS_SHARED_CREDENTIALS_FILE": "", "AWS_PROFILE": "",
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}}
}

// pushToRegistry pushes img to a registry in-process on loopback and
// returns its reference.
func pushToRegistry(t *testing.T, repo string, img v1.Image) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	uri := strings.TrimPrefix(srv.URL, "http://") + "/" + repo
	ref, err := name.ParseReference(uri, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return uri
}

// noQEMULeft fails the test if a QEMU of the daemon whose data folder
// *data names (one holding a file there open: its memory, a template's)
// still runs when the test has cleaned up (registered first, so it runs
// last). Other packages' tests run QEMUs at the same time: only this
// daemon's count.
func noQEMULeft(t *testing.T, data *string) {
	t.Helper()
	t.Cleanup(func() {
		if *data == "" {
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			left := qemuPIDsUsing(*data)
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("QEMU processes left after the test: %v", left)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// qemuPIDsUsing lists the QEMU processes with a file under dir open.
func qemuPIDsUsing(dir string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || !strings.HasPrefix(string(comm), "qemu-system") {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name())); err == nil && strings.HasPrefix(target, dir+"/") {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// waitVMState polls `vm get -o json` until the MicroVM is in state.
func waitVMState(t *testing.T, d *cliDaemon, id, state string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, _ := d.hearth(t, ExitOK, "vm", "get", id, "-o", "json")
		var vm microvm.MicroVM
		if err := json.Unmarshal([]byte(out), &vm); err != nil {
			t.Fatalf("vm get -o json: %v %s", err, out)
		}
		if vm.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("MicroVM %s is %s after a minute, want %s", id, vm.State, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// resumeIfSuspended leaves the MicroVM RUNNING and just active, whatever
// its idle policy did meanwhile.
func resumeIfSuspended(t *testing.T, d *cliDaemon, id string) {
	t.Helper()
	out, _ := d.hearth(t, ExitOK, "vm", "get", id)
	if strings.HasPrefix(out, id+": SUSPENDED\n") {
		d.hearth(t, ExitOK, "vm", "resume", id)
	}
}

type vmHits struct {
	Hits     int    `json:"hits"`
	Instance string `json:"instance"`
}

func endpointHits(t *testing.T, endpoint, token string) vmHits {
	t.Helper()
	st, b := endpointGetStatus(t, endpoint, "/", token, 0)
	var h vmHits
	if st != http.StatusOK || json.Unmarshal(b, &h) != nil {
		t.Fatalf("GET %s: %d %s", endpoint, st, b)
	}
	return h
}

// endpointGetStatus is a GET of p on the endpoint with the token (and the
// guest port, when not 0), dialled on loopback (Go's resolver does not
// know *.localhost).
func endpointGetStatus(t *testing.T, endpoint, p, token string, port int) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := microvm.Request(ctx, http.MethodGet, endpoint, p, token, port, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, microvm.LoopbackAddr(addr))
		}}}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
