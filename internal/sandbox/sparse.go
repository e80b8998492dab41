package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// A sparse stream carries a file as its size and the extents that hold
// data, so that a memory file or a /tmp disk of which the guest touched a
// tenth costs a tenth to send: extents the file system knows as holes are
// skipped, and so are blocks of zeros inside the others (a guest's memory
// holds many). The receiver writes the extents into a file of that size,
// which stays sparse.
//
//	magic "HSPARSE1" | size u64 | { offset u64 | length u64 | bytes }* | end u64 (all ones) | 0 u64
const sparseMagic = "HSPARSE1"

// sparseBlock is the granularity at which zeros are skipped.
const sparseBlock = 64 << 10

// sparseEnd marks the end of the extents.
const sparseEnd = ^uint64(0)

// WriteSparse writes the file at path to w as a sparse stream, and returns
// the bytes of data it carried.
func WriteSparse(w io.Writer, path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	var hdr [16]byte
	copy(hdr[:8], sparseMagic)
	binary.BigEndian.PutUint64(hdr[8:], uint64(size))
	if _, err := w.Write(hdr[:]); err != nil {
		return 0, err
	}
	var sent int64
	buf := make([]byte, sparseBlock)
	zero := make([]byte, sparseBlock)
	// emit sends one extent of data.
	emit := func(off int64, b []byte) error {
		var eh [16]byte
		binary.BigEndian.PutUint64(eh[:8], uint64(off))
		binary.BigEndian.PutUint64(eh[8:], uint64(len(b)))
		if _, err := w.Write(eh[:]); err != nil {
			return err
		}
		_, err := w.Write(b)
		sent += int64(len(b))
		return err
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole from here on
		}
		if err != nil {
			return sent, fmt.Errorf("%s: %w", path, err)
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return sent, fmt.Errorf("%s: %w", path, err)
		}
		for p := data; p < hole; {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), hole-p)], p)
			if n == 0 && err != nil {
				return sent, fmt.Errorf("%s: %w", path, err)
			}
			if !bytes.Equal(buf[:n], zero[:n]) {
				if err := emit(p, buf[:n]); err != nil {
					return sent, err
				}
			}
			p += int64(n)
		}
		off = hole
	}
	var end [16]byte
	binary.BigEndian.PutUint64(end[:8], sparseEnd)
	_, err = w.Write(end[:])
	return sent, err
}

// ReadSparse reads a sparse stream from r into a new file at path (which
// must not exist), bounded by maxSize. A stream that is malformed, out of
// order or cut short leaves no file.
func ReadSparse(r io.Reader, path string, maxSize int64) (err error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("sparse stream: %w", err)
	}
	if string(hdr[:8]) != sparseMagic {
		return errors.New("sparse stream: not one")
	}
	size := binary.BigEndian.Uint64(hdr[8:])
	if size > uint64(maxSize) {
		return fmt.Errorf("sparse stream: a file of %d bytes, more than %d", size, maxSize)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := f.Truncate(int64(size)); err != nil {
		return err
	}
	var next uint64
	for {
		var eh [16]byte
		if _, err := io.ReadFull(r, eh[:]); err != nil {
			return fmt.Errorf("sparse stream: %w", err)
		}
		off, n := binary.BigEndian.Uint64(eh[:8]), binary.BigEndian.Uint64(eh[8:])
		if off == sparseEnd {
			if n != 0 {
				return errors.New("sparse stream: a bad end")
			}
			return f.Sync()
		}
		if off < next || n > size || off > size-n {
			return fmt.Errorf("sparse stream: extent %d+%d out of order or past %d", off, n, size)
		}
		got, err := io.Copy(io.NewOffsetWriter(f, int64(off)), io.LimitReader(r, int64(n)))
		if err != nil {
			return fmt.Errorf("sparse stream: %w", err)
		}
		if got != int64(n) {
			return errors.New("sparse stream: cut short")
		}
		next = off + n
	}
}
