#!/usr/bin/env bash
# Hearth's demo: run a function in a real microVM, then suspend it to disk
# and resume it exactly where it stopped, with the timings of each step.
set -euo pipefail
cd "$(dirname "$0")/.."
hearth=./bin/hearth
export HEARTH_DATA_DIR=${HEARTH_DATA_DIR:-$(mktemp -d /tmp/hearth-demo.XXXXXX)}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
cleanup() { set +e; for id in $($hearth env list -o json | grep -o '"id":"[^"]*"' | cut -d'"' -f4); do $hearth env rm "$id" || true; done; }
trap cleanup EXIT

step "hello, cold, in its own microVM"
show $hearth run --zip examples/hello/hello.zip --payload '{"name":"Ada"}'

step "a function error: exit status 1 and Lambda's error object"
$hearth run --zip examples/hello/hello.zip --payload '{"name": 42}' || echo "(exit status $?)"

step "bad input is refused before a VM starts"
printf 'not a zip' > "$HEARTH_DATA_DIR/not.zip"
$hearth run --zip "$HEARTH_DATA_DIR/not.zip" || echo "(exit status $?)"

step "an environment that keeps its memory: start the counter, call it twice"
id=$($hearth env start --zip examples/counter/counter.zip)
show $hearth env invoke "$id"
show $hearth env invoke "$id"

step "suspend it: its QEMU exits, its memory stays on disk"
show $hearth env suspend "$id"
show $hearth env list
echo "QEMU processes of $id: $(pgrep -fc "hearth-$id" || true)"

step "call it again: it resumes where it stopped (the count goes on)"
show $hearth env invoke "$id"
show $hearth env invoke "$id"

step "snap-start: a template taken after init, and a clone of it"
tpl=$($hearth env template --zip examples/counter/counter.zip)
clone=$($hearth env clone "$tpl")
show $hearth env invoke "$clone"

step "the daemon: the Lambda API, pools that scale to zero"
port=${HEARTH_DEMO_PORT:-9400}
export HEARTH_ENDPOINT=http://127.0.0.1:$port
$hearth serve --listen 127.0.0.1:$port --keep-warm 3s --keep-paused 0 --url-listen 127.0.0.1:$((port+80)) --url-tls-listen "" 2> "$HEARTH_DATA_DIR/serve.log" &
serve_pid=$!
trap 'kill -INT $serve_pid 2>/dev/null || true; wait $serve_pid 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 50); do curl -sf "$HEARTH_ENDPOINT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
show $hearth fn create hello --zip examples/hello/hello.zip --memory 256
show $hearth invoke hello --payload '{"name":"Ada"}'
show $hearth invoke hello --payload '{"name":"Grace"}'
echo "(idle for 5 s: past the 3 s keep-warm time the environment is suspended)"
sleep 5
show $hearth invoke hello --payload '{"name":"Edsger"}'

step "a function URL: the web example behind its own HTTP endpoint"
show $hearth fn create web --zip examples/web/web.zip
url=$($hearth url create web --auth-type NONE --cors-allow-origins '*')
echo "function URL: $url"
show curl -s "${url}greet?name=Ada"
echo
show curl -s -o /dev/null -w '%{http_code} for %{url_effective}\n' "${url}fail"
show $hearth top --once
kill -INT $serve_pid; wait $serve_pid || true; serve_pid=

step "cold vs resume vs clone, measured in one run (hello; 3 runs each)"
show $hearth bench lifecycle -n 3 --large-mb 0

step "what it cost: GB-seconds as Lambda bills them, beside always-on and without suspend"
$hearth serve --listen 127.0.0.1:$port --url-listen "" --url-tls-listen "" 2> "$HEARTH_DATA_DIR/serve2.log" &
serve_pid=$!
for _ in $(seq 50); do curl -sf "$HEARTH_ENDPOINT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
show $hearth cost
kill -INT $serve_pid; wait $serve_pid || true; serve_pid=
