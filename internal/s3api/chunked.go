package s3api

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"hash/crc32"
	"io"
	"strconv"
	"strings"

	"github.com/johannesboyne/gofakes3"

	"github.com/hearthdev/hearth/internal/api"
)

// A body sent aws-chunked is frames of "<hex size>[;chunk-signature=<sig>]\r\n<bytes>\r\n",
// a last frame of size 0, then (the -TRAILER kinds) trailing headers — a
// checksum, and with signed chunks the trailer's own signature — and an
// empty line. Each chunk's signature chains from the one before, the first
// from the request's; the decoder checks each before it hands on the
// chunk's end, and checks the count and the checksum before it says EOF,
// so that a body that fails leaves nothing stored.

// maxChunkLine bounds a frame's header line and a trailer line.
const maxChunkLine = 4096

// maxTrailerBytes bounds all the trailers.
const maxTrailerBytes = 16 << 10

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func badBody(format string, args ...any) error {
	return gofakes3.ErrorMessagef(gofakes3.ErrBadDigest, format, args...)
}

// chunkSigner computes chunk and trailer signatures for one request.
type chunkSigner struct {
	key   []byte
	date  string // X-Amz-Date
	scope string
	prev  string
}

func newChunkSigner(s api.Signed) *chunkSigner {
	day := s.Time.UTC().Format("20060102")
	k := hmacSHA256([]byte("AWS4"+s.Secret), day)
	k = hmacSHA256(k, s.Region)
	k = hmacSHA256(k, s.Service)
	k = hmacSHA256(k, "aws4_request")
	return &chunkSigner{key: k, date: s.Time.UTC().Format("20060102T150405Z"),
		scope: day + "/" + s.Region + "/" + s.Service + "/aws4_request", prev: s.Signature}
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// next checks sig as the signature of the chunk whose SHA-256 is sum.
func (c *chunkSigner) next(sum []byte, sig string) bool {
	want := hex.EncodeToString(hmacSHA256(c.key, strings.Join([]string{"AWS4-HMAC-SHA256-PAYLOAD", c.date, c.scope,
		c.prev, emptySHA256, hex.EncodeToString(sum)}, "\n")))
	c.prev = want
	return hmac.Equal([]byte(want), []byte(sig))
}

// trailer checks sig as the signature of the trailers.
func (c *chunkSigner) trailer(trailers []byte, sig string) bool {
	sum := sha256.Sum256(trailers)
	want := hex.EncodeToString(hmacSHA256(c.key, strings.Join([]string{"AWS4-HMAC-SHA256-TRAILER", c.date, c.scope,
		c.prev, hex.EncodeToString(sum[:])}, "\n")))
	return hmac.Equal([]byte(want), []byte(sig))
}

type chunkedReader struct {
	r       *bufio.Reader
	signer  *chunkSigner // nil: chunks are not signed
	trailer bool         // trailers follow the last chunk
	want    int64        // the decoded length declared

	left    int64     // bytes left of the current chunk
	sig     string    // its signature
	sum     hash.Hash // its SHA-256, when signed
	total   int64
	sums    map[string]hash.Hash // checksums a trailer may name
	inChunk bool                 // a chunk's header was read, its end is to come
	done    bool
	err     error
}

func newChunkedReader(r io.Reader, signer *chunkSigner, want int64) *chunkedReader {
	c := &chunkedReader{r: bufio.NewReaderSize(r, 64<<10), signer: signer, want: want, sum: sha256.New(),
		sums: map[string]hash.Hash{
			"x-amz-checksum-crc32":  crc32.NewIEEE(),
			"x-amz-checksum-crc32c": crc32.New(crc32.MakeTable(crc32.Castagnoli)),
			"x-amz-checksum-sha1":   sha1.New(),
			"x-amz-checksum-sha256": sha256.New(),
		}}
	return c
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.nextChunk(); err != nil {
			c.err = err
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	c.total += int64(n)
	if c.total > c.want {
		c.err = badBody("the body holds more than X-Amz-Decoded-Content-Length (%d) bytes", c.want)
		return 0, c.err
	}
	c.sum.Write(p[:n])
	for _, h := range c.sums {
		h.Write(p[:n])
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *chunkedReader) line() (string, error) {
	var b []byte
	for {
		part, isPrefix, err := c.r.ReadLine()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		b = append(b, part...)
		if len(b) > maxChunkLine {
			return "", badBody("an aws-chunked line is too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// nextChunk ends the chunk just read (its CRLF and signature) and reads
// the next one's header; after the last, the trailers.
func (c *chunkedReader) nextChunk() error {
	if c.inChunk {
		if err := c.endChunk(); err != nil {
			return err
		}
	}
	hdr, err := c.line()
	if err != nil {
		return err
	}
	sizeHex, ext, _ := strings.Cut(hdr, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeHex), 16, 64)
	if err != nil || size < 0 || size > c.want-c.total {
		return badBody("bad aws-chunked chunk size %q", sizeHex)
	}
	c.sig = ""
	if c.signer != nil {
		sig, ok := strings.CutPrefix(ext, "chunk-signature=")
		if !ok {
			return badBody("an aws-chunked chunk has no chunk-signature")
		}
		c.sig = sig
	}
	c.sum.Reset()
	c.left, c.inChunk = size, size > 0
	if size > 0 {
		return nil
	}
	// The last chunk: its signature covers nothing.
	if c.signer != nil && !c.signer.next(c.sum.Sum(nil), c.sig) {
		return badBody("the last chunk's signature does not match")
	}
	if c.total != c.want {
		return badBody("the body holds %d bytes, not X-Amz-Decoded-Content-Length's %d", c.total, c.want)
	}
	if err := c.trailers(); err != nil {
		return err
	}
	c.done = true
	return nil
}

// endChunk reads the CRLF after a chunk's bytes and checks its signature.
func (c *chunkedReader) endChunk() error {
	var crlf [2]byte
	if _, err := io.ReadFull(c.r, crlf[:]); err != nil || crlf != [2]byte{'\r', '\n'} {
		return badBody("an aws-chunked chunk does not end with CRLF")
	}
	if c.signer != nil && !c.signer.next(c.sum.Sum(nil), c.sig) {
		return badBody("a chunk's signature does not match")
	}
	return nil
}

// trailers reads what follows the last chunk up to the empty line, and
// checks the checksum and (signed chunks) the trailers' signature.
func (c *chunkedReader) trailers() error {
	var signedPart bytes.Buffer
	var trailerSig string
	read := 0
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		if read += len(l); read > maxTrailerBytes {
			return badBody("the trailers are too long")
		}
		if l == "" {
			break
		}
		if !c.trailer {
			return badBody("unexpected trailer %q", l)
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return badBody("bad trailer %q", l)
		}
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		if name == "x-amz-trailer-signature" {
			trailerSig = value
			continue
		}
		signedPart.WriteString(name + ":" + value + "\n")
		if h, ok := c.sums[name]; ok {
			if got := base64.StdEncoding.EncodeToString(h.Sum(nil)); got != value {
				return badBody("%s does not match the body (%s, not %s)", name, got, value)
			}
		}
	}
	if c.signer != nil && c.trailer && !c.signer.trailer(signedPart.Bytes(), trailerSig) {
		return badBody("the trailer's signature does not match")
	}
	return nil
}

// hashChecker passes a body on and, at its end, checks its SHA-256 against
// the one signed: a body that differs ends in an error, not EOF.
type hashChecker struct {
	r    io.Reader
	want string
	h    hash.Hash
}

func newHashChecker(r io.Reader, want string) *hashChecker {
	return &hashChecker{r: r, want: strings.ToLower(want), h: sha256.New()}
}

func (c *hashChecker) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.want {
			return n, badBody("the body's SHA-256 (%s) is not X-Amz-Content-Sha256 (%s)", got, c.want)
		}
	}
	return n, err
}
