package guestproto

import "fmt"

// Type says what a frame carries.
type Type uint8

// Frame types. Host → agent: Init, Invoke. Agent → host: the rest.
const (
	TypeHello         Type = 1  // agent: up and listening; header Hello
	TypeInit          Type = 2  // host: start the runtime; header Init, body entropy
	TypeReady         Type = 3  // agent: the runtime asked for its first event; header Ready
	TypeInitError     Type = 4  // agent: init failed; header ErrorInfo, body error object
	TypeInvoke        Type = 5  // host: one invocation; header Invoke, body event
	TypeResponse      Type = 6  // agent: the result; header Result, body response
	TypeFunctionError Type = 7  // agent: the invocation failed; header Result, body error object
	TypeLog           Type = 8  // agent: output of the function; header Log, body bytes
	TypeExit          Type = 9  // agent: the runtime process ended; header Exit
	TypePing          Type = 10 // either side: liveness; header Ping
	TypePong          Type = 11 // the answer to a Ping; header Ping
	TypeIdle          Type = 12 // agent: the runtime asked for its next event; header Idle
	TypeResume        Type = 13 // host: the VM was just restored; header Resume, body entropy
	TypeResumed       Type = 14 // agent: clock and RNG are fresh; header Resumed
	TypeResponseChunk Type = 15 // agent: part of a streamed response; header Chunk, body bytes
)

var typeNames = map[Type]string{
	TypeHello: "hello", TypeInit: "init", TypeReady: "ready", TypeInitError: "init-error",
	TypeInvoke: "invoke", TypeResponse: "response", TypeFunctionError: "function-error",
	TypeLog: "log", TypeExit: "exit", TypePing: "ping", TypePong: "pong", TypeIdle: "idle", TypeResume: "resume", TypeResumed: "resumed", TypeResponseChunk: "response-chunk",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// PortName is the name of the virtio-serial port the agent looks for.
const PortName = "hearth.agent"

// RuntimeAPIAddr is where the agent serves the Lambda Runtime API.
const RuntimeAPIAddr = "127.0.0.1:9001"

// Hello is the agent's first frame: nothing is sent to it before.
type Hello struct {
	AgentVersion string `json:"agentVersion"`
	// UptimeMs is the guest's CLOCK_BOOTTIME when the agent started, which
	// splits the host-measured boot into kernel time and agent time.
	UptimeMs float64 `json:"uptimeMs"`
	// AgentMs is the time the agent took from its start to this frame
	// (mounts, modules, channel).
	AgentMs float64 `json:"agentMs"`
}

// Init configures the function and starts its runtime.
type Init struct {
	FunctionName    string            `json:"functionName"`
	FunctionVersion string            `json:"functionVersion"`
	FunctionARN     string            `json:"functionArn"`
	MemoryMB        int               `json:"memoryMB"`
	Handler         string            `json:"handler"`
	Region          string            `json:"region"`
	LogGroup        string            `json:"logGroup"`
	LogStream       string            `json:"logStream"`
	Env             map[string]string `json:"env,omitempty"`
	// LogLimit caps the function's output per phase (init, each invocation);
	// the rest is counted and dropped so a flood cannot stall the channel.
	LogLimit int64 `json:"logLimit"`
	// UnixNano is the host's wall clock: the guest sets its clock from it.
	UnixNano int64 `json:"unixNano"`
	// InitType is AWS_LAMBDA_INITIALIZATION_TYPE: "on-demand", or
	// "snap-start" for an environment that becomes a template.
	InitType string `json:"initType,omitempty"`
	EnvID    string `json:"envId"`
	// ServicesPort, when set, is the port on the guest's loopback where
	// the agent listens and carries each connection to the host's
	// services as a stream it opens (ServicesStreamKind); 0: none.
	ServicesPort int `json:"servicesPort,omitempty"`
	// EphemeralStorageMB is the size of /tmp; 0 keeps the guest's default,
	// Lambda's 512 MB.
	EphemeralStorageMB int `json:"ephemeralStorageMB,omitempty"`
	// TmpDisk is the serial of the environment's writable ext4 /tmp, for a
	// function without a Root (whose own TmpDisk names it then); empty
	// keeps /tmp a tmpfs of EphemeralStorageMB in the guest's memory.
	TmpDisk string `json:"tmpDisk,omitempty"`
	// Root, when set, runs the function in a root file system of its own
	// (a container image's) instead of the initramfs.
	Root *Root `json:"root,omitempty"`
	// Net configures the guest's network card; nil leaves it down.
	Net *Net `json:"net,omitempty"`
	// Service runs the command as a long-lived server (a MicroVM's) rather
	// than a Lambda runtime: the agent reports ready once it has started,
	// without waiting for the Runtime API, and it is never invoked.
	Service bool `json:"service,omitempty"`
}

// Net is the guest's network identity: eth0's address and MAC, its
// default route, its name and resolvers. It is sent at init and after
// every restore (a clone's is new).
type Net struct {
	// Address is eth0's, with its prefix ("10.200.0.10/30").
	Address string `json:"address"`
	Gateway string `json:"gateway"`
	MAC     string `json:"mac"`
	// Hostname goes to the kernel and /etc/hosts.
	Hostname string `json:"hostname"`
	// DNS are the resolvers for /etc/resolv.conf; none writes none.
	DNS []string `json:"dns,omitempty"`
}

// Root is a function's root file system on disks the host attached,
// named by their virtio-blk serials.
type Root struct {
	// Disk is the serial of the read-only ext4 root.
	Disk string `json:"disk"`
	// TmpDisk is the serial of the environment's writable ext4 /tmp.
	TmpDisk string `json:"tmpDisk"`
	// Command is the runtime's argv (an image's ENTRYPOINT and CMD, after
	// the function's overrides); its first word is an absolute path in the
	// root. Empty runs LAMBDA_TASK_ROOT/bootstrap of a zip, whose code
	// (/var/task) and layers (/opt) are then bound into the root.
	Command []string `json:"command,omitempty"`
	// WorkingDir is the runtime's working folder in the root; empty is /.
	WorkingDir string `json:"workingDir,omitempty"`
}

// Ready says the runtime finished its init: it called /invocation/next.
type Ready struct {
	InitMs float64 `json:"initMs"`
}

// ErrorInfo describes an init error; the body is the error object.
type ErrorInfo struct {
	ErrorType string `json:"errorType"`
}

// Invoke is one invocation; the body is the event.
type Invoke struct {
	RequestID       string `json:"requestId"`
	DeadlineMs      int64  `json:"deadlineMs"`
	FunctionARN     string `json:"functionArn"`
	TraceID         string `json:"traceId,omitempty"`
	ClientContext   string `json:"clientContext,omitempty"`
	CognitoIdentity string `json:"cognitoIdentity,omitempty"`
	// Stream asks for the response in chunks as the runtime writes it
	// (function URLs in RESPONSE_STREAM mode), up to MaxStreamBytes.
	Stream bool `json:"stream,omitempty"`
}

// MaxStreamBytes is Lambda's limit on a streamed response.
const MaxStreamBytes = 200 << 20

// Chunk is part of a streamed response; the first carries its content type.
type Chunk struct {
	RequestID   string `json:"requestId"`
	ContentType string `json:"contentType,omitempty"`
}

// Result ends an invocation; the body is the response or the error object.
type Result struct {
	RequestID string `json:"requestId"`
	ErrorType string `json:"errorType,omitempty"`
	// MaxRSSKiB is the runtime process's peak resident memory so far.
	MaxRSSKiB int64 `json:"maxRssKiB"`
	// LogDropped counts output bytes dropped over the log limit.
	LogDropped int64 `json:"logDropped,omitempty"`
}

// Log is a chunk of the function's output; the body is the bytes.
type Log struct {
	Stream string `json:"stream"` // "stdout" or "stderr", or "agent" for notices
}

// Exit says the runtime process ended.
type Exit struct {
	Status string `json:"status"` // as os.ProcessState.String: "exit status 2", "signal: killed"
	Code   int    `json:"code"`
}

// Idle says the runtime asked for more work after the invocation After.
type Idle struct {
	After string `json:"after"`
}

// Resume tells the agent its VM was restored from a snapshot: its wall
// clock is behind and its RNG state is shared with every other restore of
// the same snapshot.
type Resume struct {
	UnixNano int64 `json:"unixNano"`
	// EnvID is the environment's id, new for a clone.
	EnvID string `json:"envId"`
	Clone bool   `json:"clone"`
	// Net re-addresses the guest: connections open at the suspend are
	// gone, new ones work at once.
	Net *Net `json:"net,omitempty"`
}

// Resumed acknowledges a Resume once the guest is fresh again.
type Resumed struct {
	EnvID string `json:"envId"`
	// Restores counts the restores this guest has been through.
	Restores int `json:"restores"`
	// FreshenMs is the time the agent took to set the clock and the RNG.
	FreshenMs float64 `json:"freshenMs"`
}

// Ping checks that the other side is alive.
type Ping struct {
	Seq uint64 `json:"seq"`
}

// ErrorObject is the Lambda error shape a runtime posts and a caller gets.
type ErrorObject struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType"`
	StackTrace   []string `json:"stackTrace,omitempty"`
}

// MaxResponseBytes is Lambda's limit on a buffered response (and an error
// object): 6 MB and the 100 bytes Lambda allows over it, as its error
// message says.
const MaxResponseBytes = 6291556

// Bounds of what an agent may send, per frame type (AgentLimit).
const (
	// maxAgentHeader bounds every header an agent sends: they carry ids,
	// error types, a content type and counters.
	maxAgentHeader = 64 << 10
	// MaxLogFrame bounds one Log frame: the agent forwards output in reads
	// of its pipes (32 KiB) and short notices.
	MaxLogFrame = 256 << 10
	// MaxChunkFrame bounds one part of a streamed response.
	MaxChunkFrame = 1 << 20
	// maxControlBody bounds the body of a frame that carries none.
	maxControlBody = 4 << 10
)

// AgentLimit is what a host accepts from its agent in one frame of type t:
// a response or an error object up to Lambda's limit, output and stream
// chunks in small pieces, and nothing large in a control frame, so that a
// hostile guest cannot make the host buffer more than one response's worth
// per environment. A frame over its limit breaks the channel.
func AgentLimit(t Type) Limit {
	switch t {
	case TypeResponse, TypeFunctionError, TypeInitError:
		return Limit{Header: maxAgentHeader, Body: MaxResponseBytes}
	case TypeLog:
		return Limit{Header: maxAgentHeader, Body: MaxLogFrame}
	case TypeResponseChunk:
		return Limit{Header: maxAgentHeader, Body: MaxChunkFrame}
	default:
		return Limit{Header: maxAgentHeader, Body: maxControlBody}
	}
}
