package clustertest

import (
	"io"
	"net"
)

// ListenInside listens on addr inside h's network namespace (a socket
// stays in the namespace it was made in): a service there on h's own
// loopback, as on h's machine (an image registry only h reaches).
func (h *Host) ListenInside(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := h.inside(func() (io.Closer, error) {
		var err error
		l, err = net.Listen(network, addr)
		return l, err
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}
