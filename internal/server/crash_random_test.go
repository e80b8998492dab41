package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/testvm"
)

// The crash test's bounds: kills, and the time after which no new round
// starts.
const (
	crashKills  = 20
	crashBudget = 4 * time.Minute
)

// crashFn is what the test knows of one function. exists is 1 or 0, or -1
// when an operation that creates or deletes it was cut by a kill; gens are
// the values its TESTFN_VAR may have (two while an update was cut); acked
// counts the invocations the client saw succeed.
type crashFn struct {
	exists int
	gens   []string
	acked  int
}

// crashRun is a scripted workload against `hearth serve`, killed -9 at
// random points and checked after each restart.
type crashRun struct {
	t      *testing.T
	bin    string
	data   string
	addr   string
	zip    []byte
	rng    *rand.Rand
	client *lambda.Client
	log    *bytes.Buffer

	killed atomic.Bool // set just before the kill: errors after it are the kill's
	// trigger, when set, is the operation the round's kill aims at: the
	// workload signals at when it starts one, so that kills land inside
	// operations that take milliseconds too, not only in invocations.
	trigger string
	at      chan struct{}
	fns     map[string]*crashFn
	gen     int
	errs    []string // failures seen by the workload while the daemon ran

	// What the run did, for its summary: operations acknowledged and cut
	// by a kill, by kind; start types of the acknowledged invocations.
	done, cut map[string]int
	starts    map[string]int
}

// Killing the daemon with SIGKILL at random points of a workload that
// creates, invokes (cold, warm, resumed), updates and deletes functions
// loses nothing acknowledged: after each restart every function is there
// as last acknowledged, every acknowledged invocation has its meter
// record, no QEMU of the killed daemon runs, every env folder has a
// record, and each function serves its next invocation — from its
// snapshot, or from a cold start when the snapshot is refused. The seed is
// printed; HEARTH_CRASH_SEED replays its kill points.
func TestCrashAtRandomPoints(t *testing.T) {
	testvm.Driver(t)
	seed := time.Now().UnixNano()
	if s := os.Getenv("HEARTH_CRASH_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("HEARTH_CRASH_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (HEARTH_CRASH_SEED=%d replays it)", seed, seed)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := &crashRun{t: t, bin: testvm.Hearth(t), data: t.TempDir(), addr: addr, zip: readZip(t, "./internal/testfunction"),
		rng: rand.New(rand.NewPCG(uint64(seed), 0)), log: &bytes.Buffer{},
		fns:  map[string]*crashFn{"crash-a": {}, "crash-b": {}},
		done: map[string]int{}, cut: map[string]int{}, starts: map[string]int{}, at: make(chan struct{}, 1)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemons' logs (last 8 KB):\n%s", tailString(r.log.String(), 8<<10))
		}
		for _, pid := range qemusOf(r.data) {
			t.Errorf("QEMU %d of the test still runs at its end: killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = network.RemoveEnvNetworks(filepath.Join(r.data, "envs"))
	})

	t0 := time.Now()
	kills, withVMs := 0, 0 // withVMs: kills with a QEMU of the test running
	for kills < crashKills && time.Since(t0) < crashBudget {
		daemon := r.start()
		r.check()
		if t.Failed() {
			_ = daemon.Process.Kill()
			_ = daemon.Wait()
			return
		}
		// Half the rounds are killed at a random time, the others a few
		// milliseconds into an operation of a random kind (or at that
		// time if none comes).
		r.trigger = ""
		if r.rng.IntN(2) == 0 {
			r.trigger = []string{"create", "update", "delete", "invoke"}[r.rng.IntN(4)]
		}
		select {
		case <-r.at:
		default:
		}
		done := make(chan struct{})
		go func() { defer close(done); r.workload(context.Background()) }()
		delay := time.Duration(200+r.rng.IntN(6800)) * time.Millisecond
		select {
		case <-done:
			t.Fatalf("the workload stopped before its kill: %v", r.errs)
		case <-time.After(delay):
		case <-r.at:
			time.Sleep(time.Duration(r.rng.IntN(5000)) * time.Microsecond)
		}
		if len(qemusOf(r.data)) > 0 {
			withVMs++
		}
		r.killed.Store(true)
		_ = daemon.Process.Signal(syscall.SIGKILL)
		_ = daemon.Wait()
		<-done
		kills++
		for _, e := range r.errs {
			t.Errorf("round %d: while the daemon ran: %s", kills, e)
		}
		r.afterKill(kills, delay)
		if t.Failed() {
			return
		}
		r.killed.Store(false)
	}
	t.Logf("%d kills in %s; acknowledged %v, cut by a kill %v; start types %v", kills, time.Since(t0).Round(time.Second), r.done, r.cut, r.starts)
	rep := r.log.String()
	t.Logf("the daemons adopted %d envs, ended %d, swept leftovers %d times", strings.Count(rep, "adopted suspended env"),
		strings.Count(rep, "ended env left by a previous daemon"), strings.Count(rep, "removed what a previous daemon left"))
	if withVMs == 0 {
		t.Error("no kill found a QEMU of the test running: the checks for leftover QEMUs see none")
	}
	t.Logf("%d kills found QEMUs running", withVMs)
	if kills < crashKills/2 {
		t.Errorf("only %d kills within %s", kills, crashBudget)
	}
	// A last daemon checks the last kill and stops cleanly.
	daemon := r.start()
	r.check()
	r.killed.Store(false)
	for _, name := range r.names() {
		if r.fns[name].exists == 1 && !r.invoke(context.Background(), name) {
			t.Errorf("last invocation of %s: %v", name, r.errs)
		}
	}
	_ = daemon.Process.Signal(syscall.SIGINT)
	_ = daemon.Wait()
	if pids := qemusOf(r.data); len(pids) > 0 {
		t.Errorf("QEMUs %v run after the daemon stopped", pids)
	}
}

// start runs a daemon on the test's data folder, with a short keep-warm so
// that idle environments are suspended within the rounds.
func (r *crashRun) start() *exec.Cmd {
	r.t.Helper()
	cmd, err := startServe(r.log, r.bin, r.data, r.addr, "--keep-warm", "1s", "--keep-paused", "0", "--debug")
	if err != nil {
		r.t.Fatal(err)
	}
	profiles, err := server.ReadCredentials(server.CredentialsFile(r.data))
	if err != nil || len(profiles) == 0 {
		r.t.Fatalf("credentials: %v %v", profiles, err)
	}
	r.client = lambda.New(lambda.Options{BaseEndpoint: aws.String("http://" + r.addr), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(profiles[0].AccessKeyID, profiles[0].SecretAccessKey, "")})
	return cmd
}

func (r *crashRun) names() []string {
	var out []string
	for n := range r.fns {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// failed records err unless the daemon has been killed: then it is the
// kill's. It reports whether the workload goes on.
// starting tells the round's kill that an operation of kind op starts.
func (r *crashRun) starting(op string) {
	if op == r.trigger {
		select {
		case r.at <- struct{}{}:
		default:
		}
	}
}

func (r *crashRun) failed(op, name string, err error) bool {
	if r.killed.Load() {
		r.cut[op]++
	} else {
		r.errs = append(r.errs, fmt.Sprintf("%s %s: %v", op, name, err))
	}
	return false
}

// workload first invokes every function (each must serve after a
// restart, whatever became of its environment), then runs random
// operations until the kill stops it.
func (r *crashRun) workload(ctx context.Context) {
	for _, name := range r.names() {
		if r.fns[name].exists == 1 && !r.invoke(ctx, name) {
			return
		}
	}
	for {
		name := r.names()[r.rng.IntN(len(r.fns))]
		var ok bool
		switch k := r.rng.IntN(20); {
		case r.fns[name].exists == 0:
			ok = r.create(ctx, name)
		case k < 10:
			ok = r.invoke(ctx, name)
		case k < 14: // idle past the keep-warm: the next call resumes
			time.Sleep(1300 * time.Millisecond)
			ok = r.invoke(ctx, name)
		case k < 18:
			ok = r.update(ctx, name)
		default:
			ok = r.remove(ctx, name)
		}
		if !ok {
			return
		}
	}
}

func (r *crashRun) create(ctx context.Context, name string) bool {
	f := r.fns[name]
	r.gen++
	g := fmt.Sprintf("gen-%d", r.gen)
	f.exists, f.gens = -1, []string{g}
	r.starting("create")
	_, err := r.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: r.zip}, Timeout: aws.Int32(20), MemorySize: aws.Int32(128),
		Environment: &types.Environment{Variables: map[string]string{"TESTFN_VAR": g}}})
	if err != nil {
		return r.failed("create", name, err)
	}
	f.exists = 1
	r.done["create"]++
	return true
}

func (r *crashRun) invoke(ctx context.Context, name string) bool {
	f := r.fns[name]
	r.starting("invoke")
	out, err := r.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{"action":"echo"}`),
		LogType: types.LogTypeTail})
	if err != nil {
		return r.failed("invoke", name, err)
	}
	if out.FunctionError != nil {
		r.errs = append(r.errs, fmt.Sprintf("invoke %s: function error %s: %s", name, *out.FunctionError, out.Payload))
		return false
	}
	var ok bool
	for _, g := range f.gens {
		ok = ok || strings.Contains(string(out.Payload), `"TESTFN_VAR":"`+g+`"`)
	}
	if !ok {
		r.errs = append(r.errs, fmt.Sprintf("invoke %s: served with a configuration other than %v: %s", name, f.gens, out.Payload))
		return false
	}
	f.acked++
	r.done["invoke"]++
	r.starts[startType(aws.ToString(out.LogResult))]++
	return true
}

// startType reads how an invocation started from its REPORT line.
func startType(logResult string) string {
	b, _ := base64.StdEncoding.DecodeString(logResult)
	_, after, ok := strings.Cut(string(b), "Start Type: ")
	if !ok {
		return "unknown"
	}
	return strings.Fields(after + " ")[0]
}

func (r *crashRun) update(ctx context.Context, name string) bool {
	f := r.fns[name]
	r.gen++
	g := fmt.Sprintf("gen-%d", r.gen)
	f.gens = append(f.gens[:1:1], g)
	r.starting("update")
	_, err := r.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(name),
		Environment: &types.Environment{Variables: map[string]string{"TESTFN_VAR": g}}})
	if err != nil {
		return r.failed("update", name, err)
	}
	f.gens = []string{g}
	r.done["update"]++
	return true
}

func (r *crashRun) remove(ctx context.Context, name string) bool {
	f := r.fns[name]
	f.exists = -1
	r.starting("delete")
	if _, err := r.client.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
		return r.failed("delete", name, err)
	}
	f.exists, f.gens = 0, nil
	r.done["delete"]++
	return true
}

// afterKill checks that the killed daemon's VMs died with it: those its
// records name, and any QEMU on the test's data folder.
func (r *crashRun) afterKill(round int, delay time.Duration) {
	r.t.Helper()
	st, err := store.Open(context.Background(), r.data)
	if err != nil {
		r.t.Fatal(err)
	}
	recs, err := st.Envs(context.Background())
	st.Close()
	if err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var left []int
	for {
		left = qemusOf(r.data)
		for _, rec := range recs {
			if rec.PID > 0 && testvm.Alive(rec.PID) && isQEMUProcess(rec.PID) && !slices.Contains(left, rec.PID) {
				left = append(left, rec.PID)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range left {
		r.t.Errorf("round %d (killed after %s): QEMU %d outlived the killed daemon", round, delay, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// check is run on a freshly started daemon, before any work: nothing
// acknowledged is lost, and nothing is left that no record points to.
func (r *crashRun) check() {
	r.t.Helper()
	ctx := context.Background()
	for _, name := range r.names() {
		f := r.fns[name]
		got, err := r.client.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		var nf *types.ResourceNotFoundException
		switch {
		case errors.As(err, &nf):
			if f.exists == 1 {
				r.t.Errorf("function %s, acknowledged, is lost", name)
			}
			f.exists, f.gens = 0, nil
		case err != nil:
			r.t.Fatalf("get %s: %v", name, err)
		default:
			if f.exists == 0 {
				r.t.Errorf("function %s, deleted, is back", name)
			}
			g := got.Environment.Variables["TESTFN_VAR"]
			if !slices.Contains(f.gens, g) {
				r.t.Errorf("function %s has TESTFN_VAR %q, want one of %v", name, g, f.gens)
			}
			f.exists, f.gens = 1, []string{g}
		}
	}
	st, err := store.Open(ctx, r.data)
	if err != nil {
		r.t.Fatal(err)
	}
	defer st.Close()
	for _, name := range r.names() {
		recs, err := st.Records(ctx, name, time.Unix(0, 0), time.Now().Add(time.Hour))
		if err != nil {
			r.t.Fatal(err)
		}
		if len(recs) < r.fns[name].acked {
			r.t.Errorf("function %s: %d meter records for %d acknowledged invocations", name, len(recs), r.fns[name].acked)
		}
	}
	envs, err := st.Envs(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, e := range envs {
		recorded[filepath.Clean(e.Dir)] = true
		if e.State != "suspended" {
			r.t.Errorf("env %s is recorded %s after a restart: only suspended ones are adopted", e.ID, e.State)
		}
	}
	folders, _ := os.ReadDir(filepath.Join(r.data, "envs"))
	for _, e := range folders {
		if dir := filepath.Join(r.data, "envs", e.Name()); !recorded[dir] {
			r.t.Errorf("env folder %s has no record", e.Name())
		}
	}
	if pids := qemusOf(r.data); len(pids) > 0 {
		r.t.Errorf("QEMUs %v run on a daemon that started none", pids)
	}
}

// qemusOf lists the running QEMUs (not zombies) of data: this test's, and
// no other's. A QEMU is handed its files as descriptors, so it is known by
// what they point to (its memory file), or by a path on its command line.
func qemusOf(data string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !isQEMUProcess(pid) || !testvm.Alive(pid) {
			continue
		}
		if usesPath(pid, data+"/") {
			out = append(out, pid)
		}
	}
	return out
}

// usesPath reports whether pid's command line or open files name a path
// under prefix.
func usesPath(pid int, prefix string) bool {
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	if cl, err := os.ReadFile(filepath.Join(proc, "cmdline")); err == nil && bytes.Contains(cl, []byte(prefix)) {
		return true
	}
	fds, _ := os.ReadDir(filepath.Join(proc, "fd"))
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(proc, "fd", fd.Name())); err == nil && strings.HasPrefix(target, prefix) {
			return true
		}
	}
	return false
}

func isQEMUProcess(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.HasPrefix(string(b), "qemu")
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
