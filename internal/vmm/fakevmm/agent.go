package fakevmm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// Mode is a way the fake agent misbehaves, as a guest whose agent hostile
// code took over could. A mode is chosen:
//
//   - for the time before the runtime's init, by VMM.BootMode;
//   - for the init, by the function's environment variable FAKE_INIT;
//   - for every resume or clone of the guest, by FAKE_RESUME (the guest
//     keeps its environment across a suspend, as a real one does);
//   - for one invocation, by its event: {"hostile":"<mode>", "bytes":N,
//     "count":N, "chunk":N}.
//
// Where a mode ends with the agent hung, it stays so until the machine is
// stopped.
type Mode string

// Modes.
const (
	// Oversized sends a frame prefix announcing a frame larger than the
	// protocol allows (4 GiB), then nothing more.
	Oversized Mode = "oversized"
	// BigControl sends a frame prefix announcing a 6 MB control frame (a
	// pong), within the protocol's general bound, then nothing more.
	BigControl Mode = "big-control"
	// Truncated sends the start of a response announcing 6 MB, then
	// nothing more.
	Truncated Mode = "truncated"
	// StopReading stops reading the channel, and sends nothing more.
	StopReading Mode = "stop-reading"
	// Silent reads on and answers nothing.
	Silent Mode = "silent"
	// AnswerThenOversized answers as it should, then acts Oversized.
	AnswerThenOversized Mode = "answer-then-oversized"
	// AnswerThenStopReading answers as it should, then acts StopReading.
	AnswerThenStopReading Mode = "answer-then-stop-reading"
	// Lie answers with absurd figures: boot times in the hello, the peak
	// memory and the dropped output of a result.
	Lie Mode = "lie"
	// FloodLogs writes "bytes" of output, ignoring the log limit, then
	// answers.
	FloodLogs Mode = "flood-logs"
	// BigResponse answers with a body of "bytes".
	BigResponse Mode = "big-response"
	// Stale first sends "count" results of "bytes" each for other
	// requests, then answers.
	Stale Mode = "stale"
	// StaleAfter answers, then sends "count" results of "bytes" each for
	// the request it answered and for others, while the host has nothing
	// in progress.
	StaleAfter Mode = "stale-after"
	// Stream sends "bytes" of streamed response in chunks of "chunk",
	// then ends the response.
	Stream Mode = "stream"
)

// event is what an invocation's event can ask of the fake function.
type event struct {
	SleepMs int    `json:"sleepMs"`
	Print   string `json:"print"`
	Hostile Mode   `json:"hostile"`
	Bytes   int    `json:"bytes"`
	Count   int    `json:"count"`
	Chunk   int    `json:"chunk"`
}

// agent plays the guest agent and a function that counts its calls; an
// event {"sleepMs":N} makes the call take that long, {"print":"text"}
// writes text to the function's output first, and {"hostile":…} makes the
// agent misbehave.
func (m *machine) agent() {
	select {
	case <-m.started:
	case <-m.done:
		return
	}
	out := guestproto.NewWriter(m.guest)
	if m.boot {
		hello := guestproto.Hello{AgentVersion: "fake"}
		switch m.v.BootMode {
		case Oversized:
			m.oversized()
			return
		case Lie:
			hello.UptimeMs, hello.AgentMs = 1e300, -1e300
		}
		if err := out.Write(guestproto.TypeHello, hello, nil); err != nil {
			return
		}
		switch m.v.BootMode {
		case StopReading:
			m.hang()
			return
		case Silent:
			m.drain()
			return
		}
	} else {
		// A restored guest: what it does is in its memory.
		if Mode(m.mem.getEnv("FAKE_RESUME")) == StopReading {
			m.hang()
			return
		}
	}
	r := guestproto.NewReader(m.guest)
	for {
		f, err := r.Read()
		if err != nil {
			return
		}
		switch f.Type {
		case guestproto.TypeInit:
			var in guestproto.Init
			_ = f.Decode(&in)
			m.mem.setEnv(in.Env)
			if strings.Contains(in.Env["FAIL_INIT"], "yes") {
				_ = out.Write(guestproto.TypeInitError, guestproto.ErrorInfo{ErrorType: "Fake.InitError"},
					[]byte(`{"errorMessage":"init failed","errorType":"Fake.InitError"}`))
				continue
			}
			// FAKE_INIT_MS: an init that takes this long, as a heavy
			// runtime's does.
			if ms, err := strconv.Atoi(in.Env["FAKE_INIT_MS"]); err == nil && ms > 0 {
				time.Sleep(time.Duration(ms) * time.Millisecond)
			}
			if !m.misbehave(Mode(in.Env["FAKE_INIT"]), func() error {
				return out.Write(guestproto.TypeReady, guestproto.Ready{}, nil)
			}) {
				return
			}
		case guestproto.TypeResume:
			if !m.misbehave(Mode(m.mem.getEnv("FAKE_RESUME")), func() error {
				return out.Write(guestproto.TypeResumed, guestproto.Resumed{}, nil)
			}) {
				return
			}
		case guestproto.TypeInvoke:
			if !m.invoke(out, f) {
				return
			}
		case guestproto.TypePing:
			_ = out.Write(guestproto.TypePong, guestproto.Ping{}, nil)
		}
	}
}

// misbehave answers with answer, or as mode says instead; false means
// the agent is done.
func (m *machine) misbehave(mode Mode, answer func() error) bool {
	switch mode {
	case Oversized:
		m.oversized()
		return false
	case BigControl:
		m.bigControl()
		return false
	case Truncated:
		m.truncated()
		return false
	case StopReading:
		m.hang()
		return false
	case Silent:
		return true
	}
	if err := answer(); err != nil {
		return false
	}
	switch mode {
	case AnswerThenOversized:
		m.oversized()
		return false
	case AnswerThenStopReading:
		m.hang()
		return false
	}
	return true
}

// invoke runs one invocation; false means the agent is done.
func (m *machine) invoke(out *guestproto.Writer, f guestproto.Frame) bool {
	if !m.waitRunning() {
		return false
	}
	var iv guestproto.Invoke
	_ = f.Decode(&iv)
	var ev event
	_ = json.Unmarshal(f.Body, &ev)
	if ev.Print != "" {
		_ = out.Write(guestproto.TypeLog, guestproto.Log{Stream: "stdout"}, []byte(ev.Print))
	}
	time.Sleep(time.Duration(ev.SleepMs) * time.Millisecond)
	n := m.mem.count.Add(1)
	body, _ := json.Marshal(map[string]any{"count": n, "machine": m.spec.ID})
	result := guestproto.Result{RequestID: iv.RequestID, MaxRSSKiB: 20 << 10}
	switch ev.Hostile {
	case Lie:
		result.MaxRSSKiB, result.LogDropped = math.MaxInt64, -1
	case FloodLogs:
		line := bytes.Repeat([]byte("flood "), 32<<10/6)
		for sent := 0; sent < ev.Bytes; sent += len(line) {
			if err := out.Write(guestproto.TypeLog, guestproto.Log{Stream: "stdout"}, line[:min(len(line), ev.Bytes-sent)]); err != nil {
				return false
			}
		}
	case BigResponse:
		body = bytes.Repeat([]byte("x"), ev.Bytes)
	case Stale:
		for i := range ev.Count {
			stale := guestproto.Result{RequestID: fmt.Sprintf("stale-%d", i)}
			if err := out.Write(guestproto.TypeResponse, stale, make([]byte, ev.Bytes)); err != nil {
				return false
			}
		}
	case Stream:
		chunk := max(ev.Chunk, 1)
		part := bytes.Repeat([]byte("s"), chunk)
		for sent := 0; sent < ev.Bytes; sent += chunk {
			ch := guestproto.Chunk{RequestID: iv.RequestID}
			if sent == 0 {
				ch.ContentType = "text/plain"
			}
			if err := out.Write(guestproto.TypeResponseChunk, ch, part[:min(chunk, ev.Bytes-sent)]); err != nil {
				return false
			}
		}
		body = nil
	}
	if !m.misbehave(ev.Hostile, func() error { return out.Write(guestproto.TypeResponse, result, body) }) {
		return false
	}
	if ev.Hostile == StaleAfter {
		for i := range ev.Count {
			id := iv.RequestID
			if i%2 == 1 {
				id = fmt.Sprintf("stale-%d", i)
			}
			if err := out.Write(guestproto.TypeResponse, guestproto.Result{RequestID: id}, make([]byte, ev.Bytes)); err != nil {
				return false
			}
		}
	}
	return true
}

// oversized sends a prefix announcing a 4 GiB frame and hangs.
func (m *machine) oversized() {
	_, _ = m.guest.Write([]byte{byte(guestproto.TypeResponse), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	m.hang()
}

// bigControl sends a prefix announcing a 6 MB pong and hangs.
func (m *machine) bigControl() {
	_, _ = m.guest.Write([]byte{byte(guestproto.TypePong), 0, 0, 0, 0, 0, 0x60, 0, 0})
	m.hang()
}

// truncated sends the start of a response announcing 6 MB and hangs.
func (m *machine) truncated() {
	pre := []byte{byte(guestproto.TypeResponse), 0, 0, 0, 0, 0, 0x60, 0, 0}
	_, _ = m.guest.Write(append(pre, "{}"...))
	m.hang()
}

// hang reads and writes nothing until the machine stops.
func (m *machine) hang() { <-m.done }

// drain reads everything and answers nothing until the machine stops.
func (m *machine) drain() {
	r := guestproto.NewReader(m.guest)
	for {
		if _, err := r.Read(); err != nil {
			return
		}
	}
}
