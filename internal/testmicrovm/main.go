// Command testmicrovm is the server program of the test MicroVM image
// (testvm.MicroVMImage): one static binary, the image's ENTRYPOINT, that
// serves what the MicroVM tests reach through the endpoint and records the
// lifecycle hooks the host calls. All listeners are on 0.0.0.0.
//
// The app, on 8080 (APP_PORT), HTTP/1.1 and h2c (prior knowledge):
//
//	GET /          {"hits":N,"instance":"<hex>","proto":"HTTP/1.1"}: N counts
//	               the requests to / since the process started, instance is
//	               random per process (both show that state survived a
//	               suspend/resume, or that a new process answers)
//	ANY /echo      {"method","path","rawQuery","query":{k:[v]},"host","proto",
//	               "headers":{K:[v]},"body","bodyBytes"} of the request (body
//	               read up to 1 MB), to check what reached the guest
//	GET /ws        WebSocket echo: each text or binary message is sent back as
//	               it came. The Sec-WebSocket-Protocol header received is in
//	               the 101's X-Received-Protocol header; the first offered
//	               subprotocol is the one chosen. With ?hello=1 the first
//	               message is {"protocol":"<header received>","headers":{…}}.
//	GET /sse?n=N   text/event-stream: N events (default 5) "id: i\ndata: i\n\n",
//	               each flushed, 50 ms apart (SSE_DELAY_MS)
//
// gRPC on 8081 (GRPC_PORT): the health service (grpc_health_v1), SERVING.
//
// The hook server, on 9000 (HOOK_PORT):
//
//	POST /aws/lambda-microvms/runtime/v1/{ready,validate,run,resume,suspend,terminate}
//	               200 {"ok":true}; each call, answered or not, is recorded as
//	               {"name","body","bodyBytes","unixMs","status"} (body: its
//	               first 16 KB) in memory and appended to /tmp/hooks.jsonl
//	               (HOOKS_FILE)
//	GET /hooks     the recorded calls in order, a JSON array ([] when none)
//
// Knobs: READY_503=N answers /ready 503 N times first; VALIDATE_FAIL=1
// answers /validate 500; HOOK_DELAY_MS=N waits N ms before answering a hook
// (every hook, or only the one named by HOOK_DELAY_ONLY, e.g. "suspend");
// OUTBOUND_TO=host:port connects there every OUTBOUND_EVERY (a Go
// duration, 500ms by default), forever, with a small HTTP GET on a new
// connection each time, errors ignored: a guest working with the network.
//
// The image has no shell, so exec tests run this binary with a subcommand:
//
//	echo-args A B…  prints each argument on its own line
//	stderr A B…     the same, on stderr
//	env             prints its environment, one VAR=value a line
//	cat             copies stdin to stdout until EOF
//	sleep D         sleeps D (a Go duration, or seconds), then exits 0
//	exit N          exits with status N
//	signals         prints "ready", then on SIGINT or SIGTERM prints
//	                "got <signal>" and exits 128+signo
//	tty             prints {"tty":bool,"rows":R,"cols":C} of stdin, then again
//	                after each SIGWINCH, until stdin ends
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 {
		os.Exit(subcommand(os.Args[1], os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		log.Error("testmicrovm: bad environment", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "testmicrovm:", err)
		os.Exit(1)
	}
}
