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

// Reader reads frames from a stream.
type Reader struct {
	r *bufio.Reader
}

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Read reads the next frame.
func (r *Reader) Read() (Frame, error) {
	var pre [9]byte
	if _, err := io.ReadFull(r.r, pre[:]); err != nil {
		return Frame{}, err
	}
	hl := binary.BigEndian.Uint32(pre[1:5])
	bl := binary.BigEndian.Uint32(pre[5:9])
	if hl > maxHeader || bl > MaxBody {
		return Frame{}, fmt.Errorf("%w: header %d, body %d bytes", ErrFrameTooLarge, hl, bl)
	}
	buf := make([]byte, int(hl)+int(bl))
	if _, err := io.ReadFull(r.r, buf); err != nil {
		return Frame{}, fmt.Errorf("guestproto: short frame: %w", err)
	}
	return Frame{Type: Type(pre[0]), Header: buf[:hl:hl], Body: buf[hl:]}, nil
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
