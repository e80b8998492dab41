package funcurl

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// integrationResponse is the content type of a function URL's streamed
// response: a JSON prelude (status, headers, cookies), eight zero bytes,
// then the body, as aws-lambda-go's LambdaFunctionURLStreamingResponse
// writes it.
const integrationResponse = "application/vnd.awslambda.http-integration-response"

var preludeEnd = make([]byte, 8)

// streamWriter turns a streamed response into an HTTP response, flushing
// each chunk to the client as it comes. Each write to the client has its
// own deadline: a client that stops reading is abandoned when one expires,
// and the rest of the stream is dropped, so that the function's stream
// (and the invocation's slot) is never held by a client that does not
// read; the invocation runs to its end.
type streamWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	timeout  time.Duration // for one write to the client
	answer   time.Duration // for writing a buffered answer whole
	prelude  bool          // still reading the prelude
	buffered bool          // a plain JSON answer: mapped as a buffered one
	buf      bytes.Buffer  // the prelude so far, or the buffered answer
	tooBig   bool          // the buffered answer went over MaxPayload
	sent     bool          // the status line is out
	gone     error         // why the client was abandoned; nil while it reads
}

func newStreamWriter(w http.ResponseWriter, t Timeouts) *streamWriter {
	t = t.orDefaults()
	return &streamWriter{w: w, rc: http.NewResponseController(w), timeout: t.StreamWrite, answer: t.AnswerWrite}
}

// Begin learns the response's kind: an integration response starts with a
// prelude; anything else is a body, sent as it is.
func (s *streamWriter) Begin(contentType string) {
	if contentType == integrationResponse {
		s.prelude = true
		return
	}
	if contentType == "application/json" {
		// A handler that does not stream: its answer ({statusCode, …} or
		// any JSON) is mapped once whole, as on a BUFFERED URL.
		s.buffered = true
		return
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	s.w.Header().Set("Content-Type", contentType)
	s.start(http.StatusOK)
}

func (s *streamWriter) start(status int) {
	s.sent = true
	s.deadline()
	s.w.WriteHeader(status)
	s.flush()
}

// deadline gives the next write to the client its time. A ResponseWriter
// without deadlines (a test's recorder) is written without.
func (s *streamWriter) deadline() {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
}

func (s *streamWriter) flush() {
	if s.gone != nil {
		return
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.gone = err
	}
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if s.buffered {
		// Past the limit nothing more is kept, and the answer is known
		// lost: keeping the chunks that still fit would map a truncated
		// answer that may yet be valid JSON.
		if s.tooBig || s.buf.Len()+len(p) > MaxPayload {
			s.tooBig = true
			s.buf.Reset()
			return len(p), nil
		}
		s.buf.Write(p)
		return len(p), nil
	}
	if s.prelude {
		s.buf.Write(p)
		i := bytes.Index(s.buf.Bytes(), preludeEnd)
		if i < 0 {
			if s.buf.Len() > 64<<10 {
				s.prelude = false // no prelude after all: pass it on
				s.start(http.StatusOK)
				return s.writeBody(s.buf.Bytes(), len(p))
			}
			return len(p), nil
		}
		var pre struct {
			StatusCode int               `json:"statusCode"`
			Headers    map[string]string `json:"headers"`
			Cookies    []string          `json:"cookies"`
		}
		_ = json.Unmarshal(s.buf.Bytes()[:i], &pre)
		for k, v := range pre.Headers {
			s.w.Header().Set(k, v)
		}
		for _, c := range pre.Cookies {
			s.w.Header().Add("Set-Cookie", c)
		}
		if pre.StatusCode < 100 || pre.StatusCode > 599 {
			pre.StatusCode = http.StatusOK
		}
		s.prelude = false
		rest := append([]byte(nil), s.buf.Bytes()[i+len(preludeEnd):]...)
		s.buf.Reset()
		s.start(pre.StatusCode)
		return s.writeBody(rest, len(p))
	}
	return s.writeBody(p, len(p))
}

// writeBody sends b and reports n written, whatever the client does: a
// client that left or stopped reading must not fail, nor hold, the
// function.
func (s *streamWriter) writeBody(b []byte, n int) (int, error) {
	if len(b) == 0 || s.gone != nil {
		return n, nil
	}
	s.deadline()
	if _, err := s.w.Write(b); err != nil {
		s.gone = err
		return n, nil
	}
	s.flush()
	return n, nil
}

func (s *streamWriter) started() bool { return s.sent }

// finish ends a stream: a buffered answer is mapped and sent; a prelude
// that never ended is sent as a body.
func (s *streamWriter) finish() {
	if s.buffered {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.answer))
		if s.tooBig {
			message(s.w, http.StatusBadGateway, "Internal Server Error")
			return
		}
		writeResponse(s.w, s.buf.Bytes())
		return
	}
	if !s.sent {
		s.start(http.StatusOK)
		_, _ = s.writeBody(s.buf.Bytes(), 0)
	}
	// The end of the stream (and net/http's last chunk after it) gets its
	// own time, not what is left of the last chunk's.
	s.deadline()
	s.flush()
}
