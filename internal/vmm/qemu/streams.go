package qemu

import (
	"context"
	"net"
	"path/filepath"
)

// DialStreams connects to the machine's streams port (guest connections,
// see guestproto.StreamsPortName). QEMU takes one connection at a time on
// it: the caller holds it for a session and closes it to let another
// process in. It is dialed on demand, not with the machine's other
// sockets, so an environment nobody connects into costs nothing.
func (m *machine) DialStreams(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", filepath.Join(sockDir(m.spec), streamsSocket))
}
