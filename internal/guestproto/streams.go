package guestproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// StreamsPortName is the virtio-serial port that carries connections from
// the host into the guest: a yamux session (host = client, agent = server),
// apart from the control channel so that its framing stays as it is.
const StreamsPortName = "hearth.streams"

// The raw port outlives any one session: a host process attaches and
// leaves, a snapshot is restored. Each session therefore opens with a
// handshake that names it, so that neither end mistakes what the other
// wrote for an earlier session for its own:
//
//	host:  "HEARTH-STREAMS <nonce>\n"    (repeated until answered)
//	guest: "HEARTH-STREAMS-OK <nonce>\n"
//	host:  "HEARTH-STREAMS-GO <nonce>\n" (then yamux, both ways)
//
// The guest drops whatever comes before the hello and between its answer
// and GO (the host's repeated hellos); the host drops what comes before the
// answer, up to MaxStreamsJunk bytes.
const (
	streamsHello = "HEARTH-STREAMS "
	streamsOK    = "HEARTH-STREAMS-OK "
	streamsGo    = "HEARTH-STREAMS-GO "
	nonceLen     = 16
)

// MaxStreamsJunk bounds what the host reads from the guest before the
// answer to its hello.
const MaxStreamsJunk = 64 << 10

// MaxStreams bounds the streams the host has open at once in one session.
const MaxStreams = 256

// MaxAgentStreams is the agent's own bound, a backstop: a stream the host
// closed lives on in the agent until the guest's side of it ends, so the
// agent leaves room for those.
const MaxAgentStreams = 2 * MaxStreams

// MaxGuestStreams bounds the streams a guest has open at once to the
// host's services (see ServicesStreamKind); the host closes any beyond.
const MaxGuestStreams = 32

// ServicesStreamKind is the one byte a stream the guest opens begins with:
// a connection to the host's services endpoint (the S3 API), made to the
// agent's listener on the guest's loopback (Init.ServicesPort). The host
// accepts no other kind, and reads the byte by a deadline.
const ServicesStreamKind byte = 0x53

// StreamHelloEvery is how often the host repeats its hello: the first may
// be eaten by what is left of an earlier session in the guest.
const StreamHelloEvery = 200 * time.Millisecond

// StreamsHello is the host's hello for a session named nonce.
func StreamsHello(nonce string) []byte { return []byte(streamsHello + nonce + "\n") }

// StreamsGo is the host's last word before yamux.
func StreamsGo(nonce string) []byte { return []byte(streamsGo + nonce + "\n") }

// StreamsOK is the guest's answer.
func StreamsOK(nonce string) []byte { return []byte(streamsOK + nonce + "\n") }

// AwaitLine reads r until it has read prefix+nonce+"\n", dropping what
// comes before; with nonce "" any nonce of the right length is taken and
// returned. It gives up after limit bytes (0: no limit).
func AwaitLine(r io.ByteReader, prefix, nonce string, limit int) (string, error) {
	want := []byte(prefix)
	var got []byte
	n := 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		n++
		if limit > 0 && n > limit {
			return "", fmt.Errorf("no %q in %d bytes", prefix, limit)
		}
		got = append(got, b)
		if len(got) <= len(want) {
			if !bytes.HasPrefix(want, got) {
				got = restart(got, want)
			}
			continue
		}
		if len(got) < len(want)+nonceLen+1 {
			if !isHex(b) {
				got = restart(got, want)
			}
			continue
		}
		s := string(got[len(want) : len(want)+nonceLen])
		if b == '\n' && (nonce == "" || s == nonce) {
			return s, nil
		}
		got = restart(got, want)
	}
}

// restart keeps the longest suffix of got that may still begin prefix.
func restart(got, prefix []byte) []byte {
	for i := 1; i < len(got); i++ {
		if bytes.HasPrefix(prefix, got[i:]) {
			return append(got[:0], got[i:]...)
		}
	}
	return got[:0]
}

func isHex(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' }

// AwaitHello is the guest's wait for a host's hello; it returns the nonce.
func AwaitHello(r *bufio.Reader) (string, error) { return AwaitLine(r, streamsHello, "", 0) }

// AwaitGo is the guest's wait for the host's GO.
func AwaitGo(r *bufio.Reader, nonce string) error {
	_, err := AwaitLine(r, streamsGo, nonce, 0)
	return err
}

// AwaitOK is the host's wait for the guest's answer, bounded.
func AwaitOK(r io.ByteReader, nonce string) error {
	_, err := AwaitLine(r, streamsOK, nonce, MaxStreamsJunk)
	return err
}

// YamuxConfig is the session's configuration, the same on both ends:
// yamux's flow-control window (256 KiB a stream, which is also its
// smallest) bounds what either end buffers for a stream its reader does
// not drain; keepalives find a peer that vanished.
func YamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = MaxStreams
	c.MaxStreamWindowSize = 256 << 10
	c.KeepAliveInterval = 15 * time.Second
	c.ConnectionWriteTimeout = 10 * time.Second
	c.StreamOpenTimeout = 10 * time.Second
	c.StreamCloseTimeout = 30 * time.Second
	c.LogOutput = io.Discard
	return c
}

// A stream opens with its request (StreamRequestLen bytes: version 1, the
// guest TCP port big-endian) and the agent's answer (a status byte, a
// length byte and that many bytes of message).
const (
	streamVersion    = 1
	StreamRequestLen = 3
)

// StreamStatus is the agent's answer to a stream's request.
type StreamStatus byte

// Statuses.
const (
	StreamOK         StreamStatus = 0
	StreamRefused    StreamStatus = 1 // nothing listens on the port
	StreamBadRequest StreamStatus = 2
	StreamTooMany    StreamStatus = 3
	StreamFailed     StreamStatus = 4 // any other failure to connect
)

// ErrBadStreamRequest is a stream request the agent cannot take.
var ErrBadStreamRequest = errors.New("bad stream request")

// EncodeStreamRequest is the request for a guest TCP port.
func EncodeStreamRequest(port int) ([]byte, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("%w: port %d out of range", ErrBadStreamRequest, port)
	}
	b := []byte{streamVersion, 0, 0}
	binary.BigEndian.PutUint16(b[1:], uint16(port))
	return b, nil
}

// DecodeStreamRequest checks a request and returns its port.
func DecodeStreamRequest(b []byte) (int, error) {
	if len(b) != StreamRequestLen || b[0] != streamVersion {
		return 0, fmt.Errorf("%w: version or length", ErrBadStreamRequest)
	}
	port := int(binary.BigEndian.Uint16(b[1:]))
	if port == 0 {
		return 0, fmt.Errorf("%w: port 0", ErrBadStreamRequest)
	}
	return port, nil
}

// WriteStreamAnswer writes the agent's answer; msg is cut to 255 bytes.
func WriteStreamAnswer(w io.Writer, s StreamStatus, msg string) error {
	if len(msg) > 255 {
		msg = msg[:255]
	}
	_, err := w.Write(append([]byte{byte(s), byte(len(msg))}, msg...))
	return err
}

// ReadStreamAnswer reads the agent's answer (at most 257 bytes).
func ReadStreamAnswer(r io.Reader) (StreamStatus, string, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, "", err
	}
	msg := make([]byte, h[1])
	if _, err := io.ReadFull(r, msg); err != nil {
		return 0, "", err
	}
	return StreamStatus(h[0]), string(msg), nil
}
