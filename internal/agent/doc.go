// Package agent is the guest side of Hearth: hearth-agent runs it as PID 1
// in every microVM. It prepares the system (mounts, kernel modules,
// loopback), opens the channel to the host, serves the AWS Lambda Runtime API
// to the function's runtime, supervises that process and streams its output
// to the host as logs.
//
// It links no database, metrics or AWS SDK code: the guest binary is kept
// small because it is copied into every initramfs (see the dependency test).
package agent
