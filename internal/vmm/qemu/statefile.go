package qemu

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/vmm"
)

// A clone's snapshot carries its whole guest RAM in QEMU's migration
// stream (its memory is a private mapping of the template's file), though
// most of its pages are still the template's. writeDelta rewrites such a
// stream without the RAM page records the template already holds: the
// restore maps the template's file privately again, so a page not sent
// reads the template's.
//
// Only what QEMU 7.2 writes for a precopy migration to a file is parsed
// (migration/savevm.c and migration/ram.c): the file header, the
// configuration section, and the "ram" sections' records up to their
// footers. From the first section that is not "ram" on, the rest (device
// state, the EOF mark, the JSON description) is copied as it is. Anything
// else is an error, and the caller keeps the stream unfiltered.

// Section types and marks (savevm.h).
const (
	vmFileMagic     = 0x5145564d // "QEVM"
	vmFileVersion   = 3
	vmSectionStart  = 0x01
	vmSectionPart   = 0x02
	vmSectionEnd    = 0x03
	vmSubsection    = 0x05
	vmConfiguration = 0x07
	vmSectionFooter = 0x7e
	ramSectionIDStr = "ram"
	// ramBlockMem is the RAM block of the guest's memory: the memory
	// backend's id in args.
	ramBlockMem      = "mem"
	ramSectionVerMin = 4
)

// A RAM record is a big-endian 64-bit word: the page's offset in its block
// with these flags in the bits below the target page size (ram.c).
const (
	ramFlagZero     = 0x02
	ramFlagMemSize  = 0x04
	ramFlagPage     = 0x08
	ramFlagEOS      = 0x10
	ramFlagContinue = 0x20
	// x86's TARGET_PAGE_SIZE: the unit of a RAM record.
	targetPageSize = 4096
	ramFlagMask    = targetPageSize - 1
)

// errUnexpected marks a stream this parser does not know: not an error of
// the snapshot, only a reason to keep it whole.
var errUnexpected = errors.New("unexpected migration stream")

func unexpected(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUnexpected, fmt.Sprintf(format, a...))
}

// deltaStats counts what writeDelta kept and dropped of the filtered
// block's records.
type deltaStats struct {
	Pages, PagesDropped int
	Zeros, ZerosDropped int
}

// deltaWriter holds the state of one rewrite.
type deltaWriter struct {
	r       *bufio.Reader
	w       *bufio.Writer
	block   string // the RAM block filtered: the guest's memory
	base    []byte // what a restore reads where no page is sent
	ramID   uint32 // the "ram" section's id, once its start is seen
	ramSeen bool
	// inLast is the block the input's last record named; outLast the
	// block the output's last written record named. A CONTINUE record is
	// written as such only when the two agree: a dropped record may have
	// been the one that named its block.
	inLast, outLast string
	// held is the last record of the filtered block that was dropped and
	// the output has not named since: written back at a section's end if
	// the output's last block would otherwise differ from the input's.
	held  *ramRecord
	stats deltaStats
}

// ramRecord is one page or zero-page record.
type ramRecord struct {
	offset uint64
	flags  uint64
	block  string
	data   []byte // the page (4096 bytes) or the zero record's one byte
}

// writeDelta copies the migration stream src to dst without the records
// of RAM block whose content equals base's at their offset: pages equal to
// it, and zero pages where base is zero too. Zero pages where base is not
// zero are kept (a restore's ram_handle_compressed clears a page it finds
// non-zero). An error wrapping errUnexpected means a stream this parser
// does not know; dst is then partly written and must be discarded.
func writeDelta(dst io.Writer, src io.Reader, block string, base []byte) (deltaStats, error) {
	d := &deltaWriter{r: bufio.NewReaderSize(src, 1<<20), w: bufio.NewWriterSize(dst, 1<<20), block: block, base: base}
	if err := d.run(); err != nil {
		return d.stats, err
	}
	return d.stats, d.w.Flush()
}

func (d *deltaWriter) run() error {
	magic, err := d.copyU32()
	if err != nil {
		return err
	}
	version, err := d.copyU32()
	if err != nil {
		return err
	}
	if magic != vmFileMagic || version != vmFileVersion {
		return unexpected("header %#x version %d", magic, version)
	}
	for {
		b, err := d.r.ReadByte()
		if err != nil {
			return unexpectedEOF(err)
		}
		switch {
		case b == vmConfiguration && !d.ramSeen:
			if err := d.w.WriteByte(b); err != nil {
				return err
			}
			if err := d.configuration(); err != nil {
				return err
			}
		case b == vmSectionStart:
			if err := d.sectionStart(); err != nil {
				return err
			}
		case (b == vmSectionPart || b == vmSectionEnd) && d.ramSeen:
			id, err := d.peekU32()
			if err != nil {
				return err
			}
			if id != d.ramID {
				return unexpected("iterable section %d besides ram", id)
			}
			if err := d.w.WriteByte(b); err != nil {
				return err
			}
			if _, err := d.copyU32(); err != nil {
				return err
			}
			if err := d.ramRecords(); err != nil {
				return err
			}
		default:
			if !d.ramSeen {
				return unexpected("section type %#x before ram", b)
			}
			// The first section that is not ram: the rest is the devices'
			// state, copied as it is.
			if err := d.w.WriteByte(b); err != nil {
				return err
			}
			_, err := io.Copy(d.w, d.r)
			return err
		}
	}
}

// sectionStart handles a SECTION_START: its header names the section, and
// only "ram" is known.
func (d *deltaWriter) sectionStart() error {
	var hdr bytes.Buffer
	hdr.WriteByte(vmSectionStart)
	id, err := d.readU32(&hdr)
	if err != nil {
		return err
	}
	name, err := d.readName(&hdr)
	if err != nil {
		return err
	}
	if name != ramSectionIDStr {
		return unexpected("iterable section %q", name)
	}
	if d.ramSeen {
		return unexpected("a second ram section")
	}
	if _, err := d.readU32(&hdr); err != nil { // instance id
		return err
	}
	ver, err := d.readU32(&hdr)
	if err != nil {
		return err
	}
	if ver < ramSectionVerMin {
		return unexpected("ram section version %d", ver)
	}
	d.ramID, d.ramSeen = id, true
	if _, err := d.w.Write(hdr.Bytes()); err != nil {
		return err
	}
	return d.ramSetup()
}

// ramSetup copies the setup records of the ram section's start: the total
// size with RAM_SAVE_FLAG_MEM_SIZE, each block's name and length (and no
// more: the fields of postcopy and x-ignore-shared would come after it,
// and the lengths' sum then would not match), then the records that
// follow up to RAM_SAVE_FLAG_EOS and the footer.
func (d *deltaWriter) ramSetup() error {
	word, err := d.copyU64()
	if err != nil {
		return err
	}
	if word&ramFlagMask != ramFlagMemSize {
		return unexpected("ram setup flags %#x", word&ramFlagMask)
	}
	total := word &^ ramFlagMask
	var sum uint64
	found := false
	for sum < total {
		name, err := d.readName(d.w)
		if err != nil {
			return err
		}
		n, err := d.copyU64()
		if err != nil {
			return err
		}
		if name == d.block {
			if n > uint64(len(d.base)) {
				return unexpected("block %s is %d bytes, its base %d", name, n, len(d.base))
			}
			found = true
		}
		sum += n
	}
	if sum != total || !found {
		return unexpected("ram blocks sum to %d of %d bytes (block %s found: %v)", sum, total, d.block, found)
	}
	return d.ramRecords()
}

// ramRecords filters the records of one ram section up to its EOS, then
// copies its footer.
func (d *deltaWriter) ramRecords() error {
	for {
		word, err := d.readU64(nil)
		if err != nil {
			return err
		}
		flags, offset := word&ramFlagMask, word&^ramFlagMask
		switch flags &^ ramFlagContinue {
		case ramFlagEOS:
			if err := d.settle(); err != nil {
				return err
			}
			if err := d.putU64(word); err != nil {
				return err
			}
			return d.footer()
		case ramFlagZero, ramFlagPage:
		default:
			return unexpected("ram record flags %#x", flags)
		}
		rec := ramRecord{offset: offset, flags: flags}
		if flags&ramFlagContinue != 0 {
			if d.inLast == "" {
				return unexpected("CONTINUE record before any block")
			}
			rec.block = d.inLast
		} else {
			if rec.block, err = d.readName(nil); err != nil {
				return err
			}
			d.inLast = rec.block
		}
		n := 1
		if flags&ramFlagPage != 0 {
			n = targetPageSize
		}
		rec.data = make([]byte, n)
		if _, err := io.ReadFull(d.r, rec.data); err != nil {
			return unexpectedEOF(err)
		}
		drop, err := d.redundant(rec)
		if err != nil {
			return err
		}
		if drop {
			d.held = &rec
			continue
		}
		if err := d.write(rec); err != nil {
			return err
		}
	}
}

// redundant says whether a restore that maps base privately gets rec's
// page without rec.
func (d *deltaWriter) redundant(rec ramRecord) (bool, error) {
	if rec.block != d.block {
		return false, nil
	}
	if rec.offset+targetPageSize > uint64(len(d.base)) {
		return false, unexpected("page %#x past the base's %d bytes", rec.offset, len(d.base))
	}
	page := d.base[rec.offset : rec.offset+targetPageSize]
	if rec.flags&ramFlagZero != 0 {
		d.stats.Zeros++
		if rec.data[0] == 0 && allZero(page) {
			d.stats.ZerosDropped++
			return true, nil
		}
		return false, nil
	}
	d.stats.Pages++
	if bytes.Equal(rec.data, page) {
		d.stats.PagesDropped++
		return true, nil
	}
	return false, nil
}

// settle ends a section's records with the output's last block the
// input's, so that whatever follows (a CONTINUE record of a later section,
// which a rewrite would leave alone) reads the same block: when they
// differ, the last dropped record goes back in.
func (d *deltaWriter) settle() error {
	held := d.held
	d.held = nil
	if d.outLast == d.inLast || held == nil || held.block != d.inLast {
		return nil
	}
	if held.flags&ramFlagZero != 0 {
		d.stats.ZerosDropped--
	} else {
		d.stats.PagesDropped--
	}
	return d.write(*held)
}

// write puts rec out, naming its block unless the output's last record
// named the same one.
func (d *deltaWriter) write(rec ramRecord) error {
	flags := rec.flags &^ ramFlagContinue
	if rec.block == d.outLast {
		flags |= ramFlagContinue
	}
	if err := d.putU64(rec.offset | flags); err != nil {
		return err
	}
	if flags&ramFlagContinue == 0 {
		if err := d.w.WriteByte(byte(len(rec.block))); err != nil {
			return err
		}
		if _, err := d.w.WriteString(rec.block); err != nil {
			return err
		}
	}
	d.outLast, d.held = rec.block, nil
	_, err := d.w.Write(rec.data)
	return err
}

// footer copies a section's footer: QEMU_VM_SECTION_FOOTER and the id of
// the section it ends.
func (d *deltaWriter) footer() error {
	b, err := d.r.ReadByte()
	if err != nil {
		return unexpectedEOF(err)
	}
	if b != vmSectionFooter {
		return unexpected("%#x where the ram section's footer should be", b)
	}
	if err := d.w.WriteByte(b); err != nil {
		return err
	}
	id, err := d.copyU32()
	if err != nil {
		return err
	}
	if id != d.ramID {
		return unexpected("footer of section %d in ram section %d", id, d.ramID)
	}
	return nil
}

// configuration copies the configuration section (vmstate_configuration
// in savevm.c): the machine type's name, then the subsections QEMU 7.2
// may send. An unknown subsection has no length to skip it by.
func (d *deltaWriter) configuration() error {
	n, err := d.copyU32()
	if err != nil {
		return err
	}
	if n > 256 {
		return unexpected("machine name of %d bytes", n)
	}
	if err := d.copyN(int(n)); err != nil {
		return err
	}
	for {
		b, err := d.r.Peek(1)
		if err != nil {
			return unexpectedEOF(err)
		}
		if b[0] != vmSubsection {
			return nil
		}
		_, _ = d.r.ReadByte()
		if err := d.w.WriteByte(vmSubsection); err != nil {
			return err
		}
		name, err := d.readName(d.w)
		if err != nil {
			return err
		}
		if _, err := d.copyU32(); err != nil { // version
			return err
		}
		switch name {
		case "configuration/target-page-bits":
			bits, err := d.copyU32()
			if err != nil {
				return err
			}
			if 1<<bits != targetPageSize {
				return unexpected("target page bits %d", bits)
			}
		case "configuration/uuid":
			if err := d.copyN(16); err != nil {
				return err
			}
		case "configuration/capabilities":
			// Capabilities both ends must agree on: x-ignore-shared is
			// one, and a stream that leaves shared memory out has other
			// setup records.
			return unexpected("capabilities in the configuration")
		default:
			return unexpected("configuration subsection %q", name)
		}
	}
}

// readName reads a length-prefixed name (one byte, then the bytes),
// copying it to w if w is not nil.
func (d *deltaWriter) readName(w io.Writer) (string, error) {
	n, err := d.r.ReadByte()
	if err != nil {
		return "", unexpectedEOF(err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		return "", unexpectedEOF(err)
	}
	if w != nil {
		if _, err := w.Write([]byte{n}); err != nil {
			return "", err
		}
		if _, err := w.Write(b); err != nil {
			return "", err
		}
	}
	return string(b), nil
}

func (d *deltaWriter) readU32(w io.Writer) (uint32, error) {
	var b [4]byte
	if _, err := io.ReadFull(d.r, b[:]); err != nil {
		return 0, unexpectedEOF(err)
	}
	if w != nil {
		if _, err := w.Write(b[:]); err != nil {
			return 0, err
		}
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

func (d *deltaWriter) readU64(w io.Writer) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(d.r, b[:]); err != nil {
		return 0, unexpectedEOF(err)
	}
	if w != nil {
		if _, err := w.Write(b[:]); err != nil {
			return 0, err
		}
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

func (d *deltaWriter) peekU32() (uint32, error) {
	b, err := d.r.Peek(4)
	if err != nil {
		return 0, unexpectedEOF(err)
	}
	return binary.BigEndian.Uint32(b), nil
}

func (d *deltaWriter) copyU32() (uint32, error) { return d.readU32(d.w) }
func (d *deltaWriter) copyU64() (uint64, error) { return d.readU64(d.w) }

func (d *deltaWriter) copyN(n int) error {
	if _, err := io.CopyN(d.w, d.r, int64(n)); err != nil {
		return unexpectedEOF(err)
	}
	return nil
}

func (d *deltaWriter) putU64(v uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	_, err := d.w.Write(b[:])
	return err
}

// unexpectedEOF makes a stream that ends early an unexpected one.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return unexpected("the stream ends early")
	}
	return err
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// deltaState rewrites the state file at path in place to carry only the
// pages that differ from the memory file base (see writeDelta). On an
// error the file at path is left whole.
func deltaState(path, base string) (deltaStats, error) {
	bf, err := os.Open(base)
	if err != nil {
		return deltaStats{}, err
	}
	defer bf.Close()
	fi, err := bf.Stat()
	if err != nil {
		return deltaStats{}, err
	}
	if fi.Size() <= 0 || fi.Size() > 1<<40 {
		return deltaStats{}, fmt.Errorf("delta over %s: %d bytes", base, fi.Size())
	}
	// Mapped, the base's holes cost nothing to read and its pages come
	// from the page cache a running clone already holds.
	mem, err := unix.Mmap(int(bf.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return deltaStats{}, fmt.Errorf("map %s: %w", base, err)
	}
	defer unix.Munmap(mem)
	src, err := os.Open(path)
	if err != nil {
		return deltaStats{}, err
	}
	defer src.Close()
	tmp := path + ".delta"
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return deltaStats{}, err
	}
	st, err := writeDelta(dst, src, ramBlockMem, mem)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return st, fmt.Errorf("delta over %s: %w", base, err)
	}
	return st, nil
}

// checkBase refuses to restore a delta state into anything but a private
// mapping of the file it is a delta over: elsewhere the pages it leaves
// out would read as zeros, or as another file's.
func checkBase(spec vmm.MachineSpec, base string) error {
	if !spec.MemoryPrivate {
		return fmt.Errorf("the state is a delta over %s: its memory must be mapped privately", base)
	}
	a, err := os.Stat(spec.MemoryFile())
	if err != nil {
		return err
	}
	b, err := os.Stat(base)
	if err != nil {
		return fmt.Errorf("the state's memory base: %w", err)
	}
	if !os.SameFile(a, b) {
		return fmt.Errorf("the state is a delta over %s, not over %s", base, spec.MemoryFile())
	}
	return nil
}
