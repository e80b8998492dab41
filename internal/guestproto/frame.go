package guestproto

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// MaxBody bounds a frame's body. It is above the largest payload Hearth lets
// through (6 MB each way) so that limits are enforced, with clear errors, by
// the layers that know them, and this one only protects against garbage.
const MaxBody = 16 << 20

// maxHeader bounds a frame's JSON header.
const maxHeader = 1 << 20

// readStep is how much a Reader allocates for a frame before its bytes
// arrive: a frame's buffer grows with what was sent, not with what its
// prefix announced, so a peer that announces a large frame and sends
// nothing pins no memory.
const readStep = 64 << 10

// Frame is one message as read from the stream: its type, the raw JSON
// header (decode it with Decode) and the body.
type Frame struct {
	Type   Type
	Header json.RawMessage
	Body   []byte
}

// Decode unmarshals the frame's header into v.
func (f Frame) Decode(v any) error {
	if len(f.Header) == 0 {
		return nil
	}
	if err := json.Unmarshal(f.Header, v); err != nil {
		return fmt.Errorf("guestproto: decode %s header: %w", f.Type, err)
	}
	return nil
}

// ErrFrameTooLarge is returned by Reader.Read for a frame whose lengths are
// beyond the protocol's bounds: the stream is not trustworthy after it.
var ErrFrameTooLarge = errors.New("guestproto: frame too large")

// TooLargeError is the ErrFrameTooLarge a Reader returns: the frame's type
// and what its prefix announced, which says, for one, that a guest tried
// to send a response over Lambda's limit.
type TooLargeError struct {
	Type         Type
	Header, Body uint32
	Limit        Limit
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%v: %s frame announces header %d, body %d bytes (limits %d, %d)",
		ErrFrameTooLarge, e.Type, e.Header, e.Body, e.Limit.Header, e.Limit.Body)
}

// Is makes errors.Is(err, ErrFrameTooLarge) hold.
func (e *TooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }

// Limit bounds one type of frame.
type Limit struct {
	Header, Body uint32
}

// anyFrame is the limit of a Reader made by NewReader.
func anyFrame(Type) Limit { return Limit{Header: maxHeader, Body: MaxBody} }

// Reader reads frames from a stream.
type Reader struct {
	r     *bufio.Reader
	limit func(Type) Limit
}

// NewReader returns a Reader reading from r, bounding each frame by the
// protocol's general limits (MaxBody).
func NewReader(r io.Reader) *Reader {
	return NewLimitedReader(r, anyFrame)
}

// NewLimitedReader returns a Reader that refuses a frame beyond limit(its
// type), before reading or allocating any of it. A host reads its guest
// with AgentLimit.
func NewLimitedReader(r io.Reader, limit func(Type) Limit) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), limit: limit}
}

// Read reads the next frame.
func (r *Reader) Read() (Frame, error) {
	var pre [9]byte
	if _, err := io.ReadFull(r.r, pre[:]); err != nil {
		return Frame{}, err
	}
	t := Type(pre[0])
	hl := binary.BigEndian.Uint32(pre[1:5])
	bl := binary.BigEndian.Uint32(pre[5:9])
	if lim := r.limit(t); hl > lim.Header || bl > lim.Body || hl > maxHeader || bl > MaxBody {
		return Frame{}, &TooLargeError{Type: t, Header: hl, Body: bl, Limit: lim}
	}
	buf, err := readN(r.r, int(hl)+int(bl))
	if err != nil {
		return Frame{}, fmt.Errorf("guestproto: short %s frame: %w", t, err)
	}
	return Frame{Type: t, Header: buf[:hl:hl], Body: buf[hl:]}, nil
}

// readN reads exactly n bytes, growing its buffer as they arrive.
func readN(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, readStep))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) && len(buf) < n {
				err = io.ErrUnexpectedEOF
			}
			if len(buf) < n {
				return nil, err
			}
		}
	}
	return buf, nil
}

// Writer writes frames to a stream. It is safe for concurrent use: each
// frame is written whole, so logs and responses can interleave safely.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// Write sends one frame whose header is the JSON encoding of header (nil for
// none) followed by body.
func (w *Writer) Write(t Type, header any, body []byte) error {
	var hb []byte
	if header != nil {
		var err error
		if hb, err = json.Marshal(header); err != nil {
			return fmt.Errorf("guestproto: encode %s header: %w", t, err)
		}
	}
	if len(body) > MaxBody {
		return fmt.Errorf("%w: body %d bytes", ErrFrameTooLarge, len(body))
	}
	buf := make([]byte, 9, 9+len(hb)+len(body))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(hb)))
	binary.BigEndian.PutUint32(buf[5:9], uint32(len(body)))
	buf = append(buf, hb...)
	buf = append(buf, body...)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(buf); err != nil {
		return fmt.Errorf("guestproto: write %s: %w", t, err)
	}
	return nil
}
