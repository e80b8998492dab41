package network

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The test host's addresses: TEST-NET-3 (not a private range, which the
// default policy denies) and, for the link-local rule, 169.254.77.0/24
// (never 169.254.169.254).
var (
	TestHostRoot = netip.MustParsePrefix("203.0.113.1/24") // the host's side: a host address
	TestHostAddr = netip.MustParsePrefix("203.0.113.2/24")
	TestHostLL   = netip.MustParsePrefix("169.254.77.2/24")
)

const (
	// TestHostBody is what the test host's HTTP server answers at "/".
	TestHostBody = "hello from the test host"
	// TestHostName is the name its DNS server resolves to TestHostAddr.
	TestHostName = "svc.test"
)

// TestHost is a host for network tests and benchmarks on this machine
// alone: a namespace of its own, joined to the host's by a veth, serving
// HTTP on port 80 (GET / answers TestHostBody, GET /bytes?n=N N bytes)
// and DNS on port 53. It needs root; Close removes it all.
type TestHost struct {
	Netns string
	link  string
	srv   *http.Server
	pc    net.PacketConn
	lock  *os.File
}

// testHostLock is held while a test host exists: its addresses are fixed,
// so two processes (test packages run in parallel, a bench) take turns.
const testHostLock = "/run/hearth-testhost.lock"

// NewTestHost makes the test host; one on this machine at a time (a second
// caller waits for the first to close it).
func NewTestHost(ctx context.Context) (*TestHost, error) {
	lock, err := os.OpenFile(testHostLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("test host: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("test host: %w", err)
	}
	h := &TestHost{Netns: fmt.Sprintf("htest-%d", os.Getpid()), link: fmt.Sprintf("ht%d", os.Getpid()%100000), lock: lock}
	if err := run(ctx, "", "", "ip", "netns", "add", h.Netns); err != nil {
		lock.Close()
		return nil, err
	}
	steps := [][]string{
		{"ip", "link", "add", h.link, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
		{"ip", "addr", "add", TestHostRoot.String(), "dev", h.link},
		{"ip", "link", "set", h.link, "up"},
		{"ip", "route", "add", TestHostLL.Masked().String(), "via", TestHostAddr.Addr().String()},
		{"ip", "-n", h.Netns, "link", "set", "lo", "up"},
		{"ip", "-n", h.Netns, "addr", "add", TestHostAddr.String(), "dev", "eth0"},
		{"ip", "-n", h.Netns, "addr", "add", TestHostLL.String(), "dev", "eth0"},
		{"ip", "-n", h.Netns, "link", "set", "eth0", "up"},
		{"ip", "-n", h.Netns, "route", "add", "default", "via", TestHostRoot.Addr().String()},
	}
	for _, s := range steps {
		if err := run(ctx, "", "", s[0], s[1:]...); err != nil {
			h.Close()
			return nil, err
		}
	}
	var ln net.Listener
	err = InNetns(netnsDir+"/"+h.Netns, func() error {
		var err error
		if ln, err = net.Listen("tcp", "0.0.0.0:80"); err != nil {
			return err
		}
		h.pc, err = net.ListenPacket("udp", "0.0.0.0:53")
		return err
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		h.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, TestHostBody) })
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(max(n, 0)))
		buf := make([]byte, 64<<10)
		for n > 0 {
			k := min(n, len(buf))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	h.srv = &http.Server{Handler: mux}
	go func() { _ = h.srv.Serve(ln) }()
	go serveDNS(h.pc, TestHostName, TestHostAddr.Addr())
	return h, nil
}

// Close stops the servers and removes the namespace and its veth.
func (h *TestHost) Close() error {
	if h.srv != nil {
		_ = h.srv.Close()
	}
	if h.pc != nil {
		_ = h.pc.Close()
	}
	ctx := context.Background()
	_ = run(ctx, "", "", "ip", "link", "del", h.link) // gone with the namespace too
	err := run(ctx, "", "", "ip", "netns", "del", h.Netns)
	if h.lock != nil {
		_ = h.lock.Close() // releases the lock
	}
	return err
}

// serveDNS answers A queries for name with addr; other names NXDOMAIN,
// other types no answer.
func serveDNS(pc net.PacketConn, name string, addr netip.Addr) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		if len(q) < 12 {
			continue
		}
		// The question: labels to the zero byte, then type and class.
		i, labels := 12, []string{}
		for i < len(q) && q[i] != 0 {
			l := int(q[i])
			if i+1+l > len(q) {
				break
			}
			labels = append(labels, string(q[i+1:i+1+l]))
			i += 1 + l
		}
		if i+5 > len(q) {
			continue
		}
		qtype := binary.BigEndian.Uint16(q[i+1:])
		question := q[12 : i+5]
		resp := append([]byte{}, q[:2]...)
		flags, ancount := uint16(0x8180), uint16(0)
		match := strings.EqualFold(strings.Join(labels, "."), name)
		if !match {
			flags |= 3 // NXDOMAIN
		} else if qtype == 1 {
			ancount = 1
		}
		resp = binary.BigEndian.AppendUint16(resp, flags)
		resp = binary.BigEndian.AppendUint16(resp, 1)
		resp = binary.BigEndian.AppendUint16(resp, ancount)
		resp = append(resp, 0, 0, 0, 0)
		resp = append(resp, question...)
		if ancount == 1 {
			a := addr.As4()
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
			resp = append(resp, a[:]...)
		}
		_, _ = pc.WriteTo(resp, from)
	}
}
