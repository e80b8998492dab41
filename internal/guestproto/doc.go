// Package guestproto holds the messages between the host (sandbox) and the
// guest agent, and the framing that carries them over one byte stream
// (a virtio-serial port under QEMU, a vsock under Firecracker).
//
// A frame is a type byte, two big-endian lengths, a JSON header and a raw
// body. Payloads and log bytes travel in the body so that a 6 MB event is not
// inflated by base64, and the header stays small and readable.
//
// Both the agent and the host import this package, so it must stay free of
// heavy dependencies: the standard library only.
package guestproto
