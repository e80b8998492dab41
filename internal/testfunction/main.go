// Command testfunction is a Lambda function for Hearth's tests: its event picks
// what it does, including every way a function can misbehave.
//
//	{"action":"echo", ...}          returns the event and its Lambda context
//	{"action":"panic"}              panics in the handler
//	{"action":"error"}              returns an error
//	{"action":"sleep","ms":N}       sleeps N ms, then answers
//	{"action":"flood","bytes":N}    writes N bytes to stdout, then answers
//	{"action":"exit","code":N}      exits the process mid-invocation
//	{"action":"big","bytes":N}      returns a string of N bytes
//	{"action":"random"}             returns 16 bytes from crypto/rand
//	{"action":"read","path":P}      returns the file at P as {"body": ...}
//	{"action":"whoami"}             reports its user, privileges, mounts and
//	                                which paths it can write (see whoami)
//
//	{"action":"fetch","url":U}      GETs U: {"status":N,"body":…} or {"error":…}
//	{"action":"resolve","name":N}   looks N up: {"addrs":[…]} or {"error":…}
//	{"action":"dial","addr":A}      connects to TCP A (2 s at most):
//	                                {"ok":true} or {"error":…,"errno":"ECONNREFUSED"}
//	{"action":"netinfo"}            its hostname and interfaces' addresses
//	{"action":"download","url":U}   GETs U to the end: {"bytes":N,"ms":F}
//	{"action":"connects","addr":A,"count":N}
//	                                N TCP connects to A: {"p50_ms":F,…}
//	{"action":"hold","addr":A}      connects to TCP A and keeps the connection
//	{"action":"held"}               writes to the kept one and reads (5 s at
//	                                most): {"ok":true} or {"error":…,"errno":…}
//
//	{"action":"verify"}             checks the data loaded at init (TESTFN_INIT_MB)
//	{"action":"argv"}               reports its argv, working folder and env
//	{"action":"tmp","data":"…"}     appends data (if any) to /tmp/testfn and
//	                                returns the file's content and /tmp's size;
//	                                with "bytes":N it also writes N bytes to
//	                                /tmp/testfn-big and reads them back
//
// With TESTFN_SERVERS=1 it serves HTTP, h2c, WebSocket, SSE and gRPC on the
// guest's loopback (see servers.go).
// With TESTFN_INIT=exit the process exits during init; with
// TESTFN_INIT=initerror it reports an init error through the Runtime API.
// With TESTFN_INIT_TMP=S it appends S to /tmp/testfn at init.
// With TESTFN_LOG_EVENT=1 it writes each event to its log ("testfn: event
// <json>"), for a function that is only ever invoked asynchronously.
// With TESTFN_INIT_MB=N it fills N MB of memory at init and keeps a checksum.
// With TESTFN_INIT_SLEEP_MS=N it sleeps N ms at init, before it asks the
// Runtime API for work: an init of known length, for metering.
// With TESTFN_HOOKS=1, initialised for a snapshot (snap-start), it waits in
// the Runtime API's /restore/next and records that its after-restore hook
// ran; with TESTFN_HOOKS=fail the hook reports an error.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action string `json:"action"`
	MS     int    `json:"ms"`
	Bytes  int    `json:"bytes"`
	Code   int    `json:"code"`
	Data   string `json:"data"`
	Path   string `json:"path"`
	URL    string `json:"url"`
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Count  int    `json:"count"`
}

var (
	afterRestore int // after-restore hooks run
	inits        int
	loaded       []byte
	loadedAt     time.Time
)

func pattern(i int) uint64 { return uint64(i)*0x9e3779b97f4a7c15 + 1 }

// intact checks every word of the loaded data.
func intact() bool {
	for i := 0; i < len(loaded); i += 8 {
		if binary.LittleEndian.Uint64(loaded[i:]) != pattern(i) {
			return false
		}
	}
	return true
}

func init() {
	inits++
	if hooks := os.Getenv("TESTFN_HOOKS"); hooks != "" && os.Getenv("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start" {
		defer restoreHooks(hooks)
	}
	if mb, _ := strconv.Atoi(os.Getenv("TESTFN_INIT_MB")); mb > 0 {
		// Distinct bytes on every page, so that a page lost or zeroed by a
		// suspend shows up in the checksum.
		loaded = make([]byte, mb<<20)
		for i := 0; i < len(loaded); i += 8 {
			binary.LittleEndian.PutUint64(loaded[i:], pattern(i))
		}
		loadedAt = time.Now()
	}
	if v := os.Getenv("TESTFN_INIT_TMP"); v != "" {
		if _, err := tmpFile(v, 0); err != nil {
			fmt.Fprintln(os.Stderr, "testfn: /tmp at init:", err)
			os.Exit(4)
		}
	}
	if ms, _ := strconv.Atoi(os.Getenv("TESTFN_INIT_SLEEP_MS")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	switch os.Getenv("TESTFN_INIT") {
	case "exit":
		fmt.Fprintln(os.Stderr, "testfn: exiting during init")
		os.Exit(3)
	case "initerror":
		body := `{"errorMessage":"cannot load configuration","errorType":"ConfigError"}`
		url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Lambda-Runtime-Function-Error-Type", "ConfigError")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		os.Exit(1)
	}
}

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var ev event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, err
	}
	fmt.Printf("testfn: action %q\n", ev.Action)
	if os.Getenv("TESTFN_LOG_EVENT") != "" {
		fmt.Printf("testfn: event %s\n", raw)
	}
	switch ev.Action {
	case "panic":
		panic("testfn was asked to panic")
	case "error":
		return nil, errors.New("testfn was asked to fail")
	case "sleep":
		time.Sleep(time.Duration(ev.MS) * time.Millisecond)
		return map[string]int{"slept": ev.MS}, nil
	case "flood":
		line := bytes.Repeat([]byte("x"), 1023)
		line = append(line, '\n')
		for n := 0; n < ev.Bytes; n += len(line) {
			os.Stdout.Write(line)
		}
		return map[string]int{"flooded": ev.Bytes}, nil
	case "exit":
		os.Exit(ev.Code)
	case "big":
		return strings.Repeat("b", ev.Bytes), nil
	case "verify":
		return map[string]any{"inits": inits, "loadedMB": len(loaded) >> 20, "intact": intact(),
			"loadedAt": loadedAt.UnixMilli()}, nil
	case "whoami":
		return whoami(), nil
	case "argv":
		return map[string]any{"argv": os.Args, "cwd": must(os.Getwd()), "env": os.Environ()}, nil
	case "tmp":
		return tmpFile(ev.Data, ev.Bytes)
	case "read":
		b, err := os.ReadFile(ev.Path)
		if err != nil {
			return nil, err
		}
		return map[string]string{"body": string(b)}, nil
	case "download", "connects", "hold", "held":
		return benchAction(ctx, ev), nil
	case "fetch", "resolve", "dial", "netinfo":
		return netAction(ctx, ev), nil
	case "random":
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		return map[string]string{"random": hex.EncodeToString(b)}, nil
	}
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	return map[string]any{
		"event":        raw,
		"requestId":    lc.AwsRequestID,
		"functionArn":  lc.InvokedFunctionArn,
		"functionName": lambdacontext.FunctionName,
		"memoryMB":     lambdacontext.MemoryLimitInMB,
		"deadlineMs":   deadline.UnixMilli(),
		"inits":        inits,
		"afterRestore": afterRestore,
		"env": map[string]string{
			"AWS_LAMBDA_RUNTIME_API":          os.Getenv("AWS_LAMBDA_RUNTIME_API"),
			"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
			"LAMBDA_TASK_ROOT":                os.Getenv("LAMBDA_TASK_ROOT"),
			"_HANDLER":                        os.Getenv("_HANDLER"),
			"TESTFN_VAR":                      os.Getenv("TESTFN_VAR"),
		},
		"cwd":     must(os.Getwd()),
		"nowUnix": time.Now().Unix(),
	}, nil
}

func must(s string, _ error) string { return s }

// restoreHooks is what a runtime with SnapStart hooks does at the end of
// init: wait in /restore/next until restored, then run after-restore hooks.
func restoreHooks(mode string) {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/restore/"
	resp, err := http.Get(api + "next")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testfn: restore/next:", err)
		return
	}
	resp.Body.Close()
	if mode == "fail" {
		body := `{"errorMessage":"after-restore hook failed","errorType":"HookError"}`
		if resp, err := http.Post(api+"error", "application/json", strings.NewReader(body)); err == nil {
			resp.Body.Close()
		}
		return
	}
	afterRestore++
}

func main() {
	if code := os.Getenv("TESTFN_EXEC"); code != "" {
		execMode(code)
		return
	}
	maybeStartServers()
	lambda.Start(handle)
}

// execMode is the test function run as a plain program (by an exec into
// its environment): it says who it runs as, echoes its stdin to stdout,
// writes a line to stderr, and exits with the status TESTFN_EXEC names.
func execMode(code string) {
	fmt.Printf("uid %d\n", os.Getuid())
	_, _ = io.Copy(os.Stdout, os.Stdin)
	fmt.Fprintln(os.Stderr, "to stderr")
	n, _ := strconv.Atoi(code)
	os.Exit(n)
}

// whoami reports what a hostile function could try: who it runs as, with
// what privileges, and whether it can write its code, the agent's channel
// to the host, the console, the kernel log or the root file system. For
// each path, "" means the write worked, else the error.
func whoami() map[string]any {
	groups, _ := os.Getgroups()
	name := ""
	if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil {
		name = u.Username
	}
	status, _ := os.ReadFile("/proc/self/status")
	field := func(key string) string {
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, key+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	writes := map[string]string{}
	create := func(p string) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err == nil {
			_, err = f.WriteString("hostile\n")
			f.Close()
			os.Remove(p)
		}
		writes[p] = errText(err)
	}
	open := func(p string) {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		writes[p] = errText(err)
	}
	create("/var/task/hostile")
	create("/tmp/hostile")
	create("/hostile")
	create("/etc/hostile")
	open("/var/task/bootstrap")
	open("/etc/passwd")
	ports, _ := filepath.Glob("/dev/vport*")
	for _, p := range append(ports, "/dev/console", "/dev/ttyS0", "/dev/kmsg") {
		open(p)
	}
	mounts := map[string]string{}
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			mounts[f[1]] = f[3] // the last mount on a path wins
		}
	}
	_, pid1Err := os.Stat("/proc/1")
	return map[string]any{
		"uid": os.Getuid(), "gid": os.Getgid(), "euid": os.Geteuid(), "groups": groups, "user": name,
		"noNewPrivs": field("NoNewPrivs"), "capEff": field("CapEff"), "capPrm": field("CapPrm"),
		"writes": writes, "ports": ports, "mounts": mounts,
		"pid1Visible": pid1Err == nil, "home": os.Getenv("HOME"), "term": os.Getenv("TERM"),
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// tmpFile appends data to /tmp/testfn and reports its content and the size
// of the file system /tmp is on.
func tmpFile(data string, big int) (any, error) {
	const p = "/tmp/testfn"
	bigRead := 0
	if big > 0 {
		n, err := bigFile("/tmp/testfn-big", big)
		if err != nil {
			return nil, err
		}
		bigRead = n
	}
	if data != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		_, err = f.WriteString(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs("/tmp", &st); err != nil {
		return nil, err
	}
	return map[string]any{"content": string(b), "tmpMB": int64(st.Blocks) * st.Bsize >> 20, "bigRead": bigRead}, nil
}

// bigFile writes n bytes of a pattern to p, synced (so that they left the
// page cache), then reads them back and returns how many matched.
func bigFile(p string, n int) (int, error) {
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*7 + 1)
	}
	f, err := os.Create(p)
	if err != nil {
		return 0, err
	}
	for left := n; left > 0; left -= len(chunk) {
		if _, err := f.Write(chunk[:min(left, len(chunk))]); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	f, err = os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, len(chunk))
	read := 0
	for {
		k, err := io.ReadFull(f, buf)
		if k > 0 && !bytes.Equal(buf[:k], chunk[:k]) {
			return read, fmt.Errorf("%s: wrong bytes after %d", p, read)
		}
		read += k
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return read, nil
		}
		if err != nil {
			return read, err
		}
	}
}
