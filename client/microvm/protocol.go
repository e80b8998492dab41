package microvm

// The exec WebSocket's protocol (GET /hearth/v1/microvms/{id}/exec): every
// message is binary, its first byte the frame type and the rest its
// payload. The client's first message is FrameStart with the ExecRequest
// as JSON; the daemon ends with FrameExit (an ExitStatus as JSON) and a
// normal close.
const (
	FrameStart      byte = 0 // client: ExecRequest JSON
	FrameStdin      byte = 1 // client: bytes for the process's stdin
	FrameStdout     byte = 2 // daemon: the process's stdout (a TTY's output)
	FrameStderr     byte = 3 // daemon: the process's stderr
	FrameResize     byte = 4 // client: Resize JSON
	FrameSignal     byte = 5 // client: SignalMessage JSON
	FrameCloseStdin byte = 6 // client: end of stdin
	FrameExit       byte = 7 // daemon: ExitStatus JSON, the last frame
)

// MaxFrame bounds a frame's payload; longer data is sent in several.
const MaxFrame = 32 << 10

// ExecPathSuffix and the sandbox paths below /hearth/v1/microvms/{id}.
const (
	SandboxPrefix = "/hearth/v1/microvms/"
)

// Resize is FrameResize's payload.
type Resize struct {
	Rows int `json:"rows"`
	Cols int `json:"cols"`
}

// SignalMessage is FrameSignal's payload: "INT", "TERM" or "KILL".
type SignalMessage struct {
	Signal string `json:"signal"`
}
