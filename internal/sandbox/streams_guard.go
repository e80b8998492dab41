package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// yamux's frame header, as the guest sends it (see yamux's const.go).
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
	yamuxTypeWindow = 1
	yamuxTypePing   = 2
	yamuxFlagSYN    = 1
)

// maxGuestOpensPerSecond bounds the streams a guest allowed to open them
// (to the host's services) may open a second: each is a yamux stream and
// a goroutine on the host until it is refused or served.
const maxGuestOpensPerSecond = 64

// maxGuestPingsPerSecond bounds the pings the guest may send: yamux
// answers each from a goroutine of its own, which waits while the guest
// does not read, so a flood would grow the host without bound.
const maxGuestPingsPerSecond = 64

var errGuestProtocol = errors.New("guest broke the streams protocol")

// guardReader reads the guest's side of a yamux session and ends it when
// the guest does what yamux would let it do at the host's cost: open
// streams of its own (unless the session serves the host's services to
// it, and then not more than maxGuestOpensPerSecond) or flood pings.
type guardReader struct {
	r          io.Reader
	allowOpens bool
	openSec    time.Time
	openSeen   int

	hdr      [yamuxHeaderSize]byte
	have     int    // header bytes read so far
	payload  uint32 // data bytes left of the current frame
	pingSec  time.Time
	pingSeen int
	now      func() time.Time
}

func newGuardReader(r io.Reader, allowOpens bool) *guardReader {
	return &guardReader{r: r, allowOpens: allowOpens, now: time.Now}
}

func (g *guardReader) Read(b []byte) (int, error) {
	n, err := g.r.Read(b)
	if cerr := g.check(b[:n]); cerr != nil {
		return 0, cerr
	}
	return n, err
}

// check follows the frames in p, which the caller is about to hand on.
func (g *guardReader) check(p []byte) error {
	for len(p) > 0 {
		if g.payload > 0 {
			k := uint32(len(p))
			if k > g.payload {
				k = g.payload
			}
			g.payload -= k
			p = p[k:]
			continue
		}
		k := copy(g.hdr[g.have:], p)
		g.have += k
		p = p[k:]
		if g.have < yamuxHeaderSize {
			return nil
		}
		g.have = 0
		typ, flags := g.hdr[1], binary.BigEndian.Uint16(g.hdr[2:4])
		length := binary.BigEndian.Uint32(g.hdr[8:12])
		switch typ {
		case yamuxTypeData, yamuxTypeWindow:
			if flags&yamuxFlagSYN != 0 {
				if !g.allowOpens {
					return fmt.Errorf("%w: it opened a stream", errGuestProtocol)
				}
				if now := g.now(); now.Sub(g.openSec) >= time.Second {
					g.openSec, g.openSeen = now, 0
				}
				if g.openSeen++; g.openSeen > maxGuestOpensPerSecond {
					return fmt.Errorf("%w: it opened more than %d streams a second", errGuestProtocol, maxGuestOpensPerSecond)
				}
			}
			if typ == yamuxTypeData {
				g.payload = length
			}
		case yamuxTypePing:
			if flags&yamuxFlagSYN == 0 {
				continue
			}
			if now := g.now(); now.Sub(g.pingSec) >= time.Second {
				g.pingSec, g.pingSeen = now, 0
			}
			if g.pingSeen++; g.pingSeen > maxGuestPingsPerSecond {
				return fmt.Errorf("%w: more than %d pings a second", errGuestProtocol, maxGuestPingsPerSecond)
			}
		}
	}
	return nil
}
