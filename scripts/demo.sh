#!/usr/bin/env bash
# Hearth's demo: run the example functions in real microVMs and show what a
# cold start is made of.
set -euo pipefail
cd "$(dirname "$0")/.."
hearth=./bin/hearth
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "hello, cold, in its own microVM"
echo "\$ hearth run --zip examples/hello/hello.zip --event '{\"name\":\"Ada\"}'"
$hearth run --zip examples/hello/hello.zip --event '{"name":"Ada"}'

step "a function error: exit status 1 and Lambda's error object"
set +e
$hearth run --zip examples/hello/hello.zip --event '{"name": 42}'
echo "(exit status $?)"
set -e

step "bad input is refused before a VM starts"
set +e
printf 'not a zip' > /tmp/hearth-demo-not.zip
$hearth run --zip /tmp/hearth-demo-not.zip
echo "(exit status $?)"
rm -f /tmp/hearth-demo-not.zip
set -e

step "what a cold start is made of (3 fresh VMs)"
$hearth bench cold -n 3
