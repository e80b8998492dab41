#!/usr/bin/env bash
# Hearth's demo: run a function in a real microVM, then suspend it to disk
# and resume it exactly where it stopped, with the timings of each step.
set -euo pipefail
cd "$(dirname "$0")/.."
hearth=./bin/hearth
export HEARTH_DATA_DIR=${HEARTH_DATA_DIR:-$(mktemp -d /tmp/hearth-demo.XXXXXX)}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
cleanup() { for id in $($hearth env list -o json | grep -o '"id":"[^"]*"' | cut -d'"' -f4); do $hearth env rm "$id" || true; done; }
trap cleanup EXIT

step "hello, cold, in its own microVM"
show $hearth run --zip examples/hello/hello.zip --event '{"name":"Ada"}'

step "a function error: exit status 1 and Lambda's error object"
$hearth run --zip examples/hello/hello.zip --event '{"name": 42}' || echo "(exit status $?)"

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

step "cold vs resume vs clone, measured in one run (hello; 3 runs each)"
show $hearth bench lifecycle -n 3 --large-mb 0
