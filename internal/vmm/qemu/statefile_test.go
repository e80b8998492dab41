package qemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// stream builds a migration stream as QEMU 7.2 writes one.
type stream struct{ bytes.Buffer }

func (s *stream) u8(v byte) *stream { s.WriteByte(v); return s }
func (s *stream) u32(v uint32) *stream {
	_ = binary.Write(&s.Buffer, binary.BigEndian, v)
	return s
}
func (s *stream) u64(v uint64) *stream {
	_ = binary.Write(&s.Buffer, binary.BigEndian, v)
	return s
}
func (s *stream) name(n string) *stream { s.u8(byte(len(n))); s.WriteString(n); return s }

func (s *stream) header() *stream {
	return s.u32(vmFileMagic).u32(vmFileVersion).u8(vmConfiguration).u32(7).raw([]byte("microvm"))
}
func (s *stream) raw(b []byte) *stream { s.Write(b); return s }

// ramStart is the ram section's start: its blocks and their lengths.
func (s *stream) ramStart(id uint32, blocks ...any) *stream {
	s.u8(vmSectionStart).u32(id).name(ramSectionIDStr).u32(0).u32(4)
	var total uint64
	for i := 1; i < len(blocks); i += 2 {
		total += blocks[i].(uint64)
	}
	s.u64(total | ramFlagMemSize)
	for i := 0; i < len(blocks); i += 2 {
		s.name(blocks[i].(string)).u64(blocks[i+1].(uint64))
	}
	return s
}
func (s *stream) part(typ byte, id uint32) *stream { return s.u8(typ).u32(id) }
func (s *stream) eos(id uint32) *stream {
	return s.u64(ramFlagEOS).u8(vmSectionFooter).u32(id)
}

// page is a page record: block "" for CONTINUE.
func (s *stream) page(block string, off uint64, fill byte) *stream {
	if block == "" {
		s.u64(off | ramFlagPage | ramFlagContinue)
	} else {
		s.u64(off | ramFlagPage).name(block)
	}
	return s.raw(bytes.Repeat([]byte{fill}, targetPageSize))
}
func (s *stream) zero(block string, off uint64) *stream {
	if block == "" {
		s.u64(off | ramFlagZero | ramFlagContinue)
	} else {
		s.u64(off | ramFlagZero).name(block)
	}
	return s.u8(0)
}

// device is a non-iterable section as the test's loader reads it: a
// length-prefixed body (QEMU's are vmstate, which only their device
// knows how to read).
func (s *stream) device(id uint32, body string) *stream {
	return s.u8(0x04).u32(id).name("dev").u32(0).u32(1).u32(uint32(len(body))).raw([]byte(body)).u8(vmSectionFooter).u32(id)
}
func (s *stream) eof() *stream { return s.u8(0x00) }

// load is what a restore makes of stream over base: the memory of each
// block (mem starts as base, mapped privately; others as zeros), read as
// ram_load_precopy does, with CONTINUE meaning the last block named.
func load(t *testing.T, b []byte, base []byte) map[string][]byte {
	t.Helper()
	mem := map[string][]byte{}
	r := bytes.NewReader(b)
	u8 := func() byte { c, err := r.ReadByte(); must(t, err); return c }
	u32 := func() uint32 { var v uint32; must(t, binary.Read(r, binary.BigEndian, &v)); return v }
	u64 := func() uint64 { var v uint64; must(t, binary.Read(r, binary.BigEndian, &v)); return v }
	name := func() string { b := make([]byte, u8()); _, err := io.ReadFull(r, b); must(t, err); return string(b) }
	if u32() != vmFileMagic || u32() != vmFileVersion || u8() != vmConfiguration {
		t.Fatal("bad header")
	}
	_ = name2(t, r, int(u32()))
	last := ""
	records := func() {
		for {
			w := u64()
			flags, off := w&ramFlagMask, w&^ramFlagMask
			switch flags &^ ramFlagContinue {
			case ramFlagEOS:
				if u8() != vmSectionFooter {
					t.Fatal("no footer")
				}
				u32()
				return
			case ramFlagMemSize:
				for total := off; total > 0; {
					n := name()
					size := u64()
					if n == ramBlockMem {
						mem[n] = append([]byte(nil), base[:size]...)
					} else {
						mem[n] = make([]byte, size)
					}
					total -= size
				}
				continue
			}
			if flags&ramFlagContinue == 0 {
				last = name()
			} else if last == "" {
				t.Fatal("CONTINUE before any block")
			}
			page := mem[last][off : off+targetPageSize]
			if flags&ramFlagZero != 0 {
				if c := u8(); c != 0 || !allZero(page) {
					for i := range page {
						page[i] = c
					}
				}
			} else {
				_, err := io.ReadFull(r, page)
				must(t, err)
			}
		}
	}
	for {
		switch typ := u8(); typ {
		case vmSectionStart:
			u32()
			if n := name(); n != ramSectionIDStr {
				t.Fatalf("section %q", n)
			}
			u32()
			u32()
			records()
		case vmSectionPart, vmSectionEnd:
			u32()
			records()
		case 0x04:
			u32()
			name()
			u32()
			u32()
			_ = name2(t, r, int(u32()))
			u8()
			u32()
		case 0x00:
			return mem
		default:
			t.Fatalf("section type %#x", typ)
		}
	}
}

func name2(t *testing.T, r io.Reader, n int) string {
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	must(t, err)
	return string(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriteDelta(t *testing.T) {
	const P = targetPageSize
	// The template's memory: pages 0–3 hold 1, 2, 0, 4; 4–7 are zero.
	base := make([]byte, 8*P)
	for i, fill := range []byte{1, 2, 0, 4} {
		copy(base[i*P:], bytes.Repeat([]byte{fill}, P))
	}
	start := func() *stream {
		s := &stream{}
		return s.header().ramStart(2, "mem", uint64(8*P), "pc.bios", uint64(2*P)).eos(2)
	}
	tests := []struct {
		name   string
		stream *stream
		want   deltaStats
	}{{
		name: "pages equal to the template's are dropped, others kept",
		stream: start().part(vmSectionPart, 2).
			page("mem", 0, 1).page("", P, 9).page("", 3*P, 4).page("", 2*P, 7).eos(2).
			part(vmSectionEnd, 2).eos(2).device(3, "cpu").eof(),
		want: deltaStats{Pages: 4, PagesDropped: 2},
	}, {
		name: "a dropped record named the block: the next one kept names it",
		stream: start().part(vmSectionPart, 2).
			page("pc.bios", 0, 5).page("mem", 0, 1).page("", P, 8).eos(2).
			part(vmSectionEnd, 2).eos(2).device(3, "cpu").eof(),
		want: deltaStats{Pages: 2, PagesDropped: 1},
	}, {
		name: "zero pages: dropped over the template's zeros, kept over its data",
		stream: start().part(vmSectionPart, 2).
			zero("mem", 0).zero("", 2*P).zero("", 5*P).zero("", 3*P).eos(2).
			part(vmSectionEnd, 2).eos(2).device(3, "cpu").eof(),
		want: deltaStats{Zeros: 4, ZerosDropped: 2},
	}, {
		name: "other blocks are never filtered, and blocks interleave",
		stream: start().part(vmSectionPart, 2).
			page("pc.bios", 0, 0).zero("", P).page("mem", P, 2).page("pc.bios", P, 3).page("mem", 4*P, 6).page("", 0, 1).eos(2).
			part(vmSectionEnd, 2).eos(2).device(3, "cpu").eof(),
		want: deltaStats{Pages: 3, PagesDropped: 2},
	}, {
		name: "a section whose last records are dropped ends on the input's block",
		stream: start().part(vmSectionPart, 2).
			page("pc.bios", 0, 3).page("mem", 0, 1).eos(2).
			// QEMU would not write ram after a device, but what is copied
			// as it is must still read the same: its CONTINUE is mem.
			device(3, "cpu").part(vmSectionEnd, 2).page("", P, 7).eos(2).eof(),
		want: deltaStats{Pages: 1, PagesDropped: 0},
	}, {
		// The last goes back in: it names the block for what follows.
		name: "every record dropped but the last",
		stream: start().part(vmSectionEnd, 2).
			page("mem", 0, 1).page("", P, 2).zero("", 6*P).eos(2).device(3, "").eof(),
		want: deltaStats{Pages: 2, PagesDropped: 2, Zeros: 1, ZerosDropped: 0},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.stream.Bytes()
			var out bytes.Buffer
			st, err := writeDelta(&out, bytes.NewReader(in), ramBlockMem, base)
			if err != nil {
				t.Fatal(err)
			}
			if st != tt.want {
				t.Errorf("stats %+v, want %+v", st, tt.want)
			}
			want, got := load(t, in, base), load(t, out.Bytes(), base)
			for b := range want {
				if !bytes.Equal(want[b], got[b]) {
					t.Errorf("block %s loads differently from the delta", b)
				}
			}
			if dropped := st.PagesDropped*(8+P) + st.ZerosDropped*9; out.Len() > len(in)-dropped+4 {
				t.Errorf("the delta is %d bytes of %d, with %d bytes of records dropped", out.Len(), len(in), dropped)
			}
		})
	}
}

// Every stream this parser does not know is refused, for the caller to
// keep the state whole.
func TestWriteDeltaRefusesTheUnknown(t *testing.T) {
	const P = targetPageSize
	base := make([]byte, 4*P)
	hdr := func() *stream { return (&stream{}).header() }
	start := func() *stream { return hdr().ramStart(2, "mem", uint64(4*P)).eos(2) }
	tests := []struct {
		name   string
		stream *stream
	}{
		{"bad magic", (&stream{}).u32(0x12345678).u32(3)},
		{"version 2", (&stream{}).u32(vmFileMagic).u32(2)},
		{"capabilities (x-ignore-shared)", hdr().u8(vmSubsection).name("configuration/capabilities").u32(1).u32(1).name("x-ignore-shared")},
		{"unknown configuration subsection", hdr().u8(vmSubsection).name("configuration/new").u32(1).u32(0)},
		{"another iterable section", hdr().u8(vmSectionStart).u32(1).name("dirty-bitmap").u32(0).u32(1)},
		{"a device before ram", hdr().device(3, "cpu")},
		{"blocks summing to another size (postcopy or ignore-shared fields)",
			hdr().u8(vmSectionStart).u32(2).name("ram").u32(0).u32(4).u64(uint64(4*P) | ramFlagMemSize).name("mem").u64(uint64(4 * P)).u64(0).eos(2)},
		{"no guest memory block", hdr().ramStart(2, "other", uint64(4*P)).eos(2)},
		{"a block longer than its base", hdr().ramStart(2, "mem", uint64(8*P)).eos(2)},
		{"XBZRLE page", start().part(vmSectionPart, 2).u64(ramFlagContinue | 0x40)},
		{"compressed page", start().part(vmSectionPart, 2).u64(0x100).name("mem")},
		{"hook", start().part(vmSectionPart, 2).u64(0x80)},
		{"CONTINUE before any block", start().part(vmSectionPart, 2).page("", 0, 1)},
		{"page past the base", start().part(vmSectionPart, 2).page("mem", 4*P, 1)},
		{"part of another section", start().part(vmSectionPart, 5)},
		{"no footer", start().part(vmSectionPart, 2).u64(ramFlagEOS).u8(0)},
		{"a second ram start", start().ramStart(2, "mem", uint64(4*P))},
		{"truncated page", start().part(vmSectionPart, 2).u64(ramFlagPage).name("mem").raw(make([]byte, 100))},
		{"truncated after the setup", start()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := writeDelta(io.Discard, bytes.NewReader(tt.stream.Bytes()), ramBlockMem, base)
			if !errors.Is(err, errUnexpected) {
				t.Errorf("err = %v, want errUnexpected", err)
			}
		})
	}
	// The subsections QEMU 7.2 may send unasked are known.
	s := hdr().u8(vmSubsection).name("configuration/target-page-bits").u32(1).u32(12).
		u8(vmSubsection).name("configuration/uuid").u32(1).raw(make([]byte, 16))
	s.ramStart(2, "mem", uint64(4*P)).eos(2).device(3, "cpu").eof()
	if _, err := writeDelta(io.Discard, bytes.NewReader(s.Bytes()), ramBlockMem, base); err != nil {
		t.Errorf("configuration with target-page-bits and uuid: %v", err)
	}
}
