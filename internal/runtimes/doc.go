// Package runtimes holds the managed runtimes, python3.11 and nodejs18.x:
// their runtime interface clients and how their base roots are built.
//
// A runtime interface client (RIC) is the program, in the runtime's own
// language, that implements Lambda's handler contract against the Runtime
// API: it loads the function's handler (`module.function`, `file.export`),
// fetches events from /invocation/next, calls the handler with the event and
// a context object, and posts the result or the error. Each RIC is a
// `bootstrap` shell script and one source file, embedded here (Files) so
// that the host can put them into a root or a layer; in a root they live in
// /var/runtime, where Lambda keeps its own.
//
// A runtime's base root is a read-only ext4 image holding Debian 12's
// packages for the language (bookworm ships Python 3.11 and Node.js 18) and
// the RIC. scripts/build-runtimes.sh builds them (`make runtimes`):
// mmdebstrap writes the packages as a tar, and internal/runtimes/mkroot
// (WriteRoot) adds the RIC, the function's user and the mount points and
// turns the stream into ext4 with hcsshim's tar2ext4, without root or a loop
// device. The roots are cached by a hash of their inputs; RootPath finds the
// one for a runtime.
package runtimes
