package microvm

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"time"
)

// The Lambda MicroVMs API's JSON shapes (API version 2025-09-09), with
// AWS's member names; the daemon answers with these and the client reads
// them. Hearth's own members are marked.

// APIVersion is the path prefix of the Lambda MicroVMs operations.
const APIVersion = "2025-09-09"

// Header names on the MicroVM's endpoint.
const (
	// AuthHeader carries a token from CreateMicrovmAuthToken.
	AuthHeader = "X-aws-proxy-auth"
	// PortHeader picks the guest port (default 8080).
	PortHeader = "X-aws-proxy-port"
)

// MicroVM states.
const (
	StatePending     = "PENDING"
	StateRunning     = "RUNNING"
	StateSuspending  = "SUSPENDING"
	StateSuspended   = "SUSPENDED"
	StateTerminating = "TERMINATING"
	StateTerminated  = "TERMINATED"
)

// Hook states, as a hook's member says whether it is called.
const (
	HookEnabled  = "ENABLED"
	HookDisabled = "DISABLED"
)

// Timestamp is a time on the wire as AWS's REST JSON protocols write it:
// seconds since the epoch, a JSON number with a fraction.
type Timestamp struct{ time.Time }

// NewTimestamp is t as a *Timestamp; the zero time is nil (not sent).
func NewTimestamp(t time.Time) *Timestamp {
	if t.IsZero() {
		return nil
	}
	return &Timestamp{t}
}

// MarshalJSON writes epoch seconds with millisecond precision.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)), nil
}

// UnmarshalJSON reads epoch seconds.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("timestamp %s: %w", b, err)
	}
	sec, frac := math.Modf(f)
	t.Time = time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC()
	return nil
}

// IdlePolicy is when a MicroVM is suspended, and when a suspended one is
// terminated. All three members are required when the policy is given.
type IdlePolicy struct {
	MaxIdleDurationSeconds   int  `json:"maxIdleDurationSeconds"`
	SuspendedDurationSeconds int  `json:"suspendedDurationSeconds"`
	AutoResumeEnabled        bool `json:"autoResumeEnabled"`
}

// RunInput is RunMicrovm's request.
type RunInput struct {
	ImageIdentifier string      `json:"imageIdentifier"`
	ImageVersion    string      `json:"imageVersion,omitempty"`
	IdlePolicy      *IdlePolicy `json:"idlePolicy,omitempty"`
	// MaximumDurationInSeconds caps the MicroVM's life; Hearth has no cap
	// unless it is set.
	MaximumDurationInSeconds int    `json:"maximumDurationInSeconds,omitempty"`
	RunHookPayload           string `json:"runHookPayload,omitempty"`
	ClientToken              string `json:"clientToken,omitempty"`
}

// MicroVM is RunMicrovm's and GetMicrovm's answer.
type MicroVM struct {
	MicrovmID                string      `json:"microvmId"`
	State                    string      `json:"state"`
	StateReason              string      `json:"stateReason,omitempty"`
	Endpoint                 string      `json:"endpoint,omitempty"`
	ImageARN                 string      `json:"imageArn"`
	ImageVersion             string      `json:"imageVersion"`
	IdlePolicy               *IdlePolicy `json:"idlePolicy,omitempty"`
	MaximumDurationInSeconds int         `json:"maximumDurationInSeconds,omitempty"`
	StartedAt                *Timestamp  `json:"startedAt,omitempty"`
	TerminatedAt             *Timestamp  `json:"terminatedAt,omitempty"`
}

// MicroVMItem is one MicroVM in ListMicrovms.
type MicroVMItem struct {
	MicrovmID    string     `json:"microvmId"`
	State        string     `json:"state"`
	ImageARN     string     `json:"imageArn"`
	ImageVersion string     `json:"imageVersion"`
	StartedAt    *Timestamp `json:"startedAt,omitempty"`
	// Node is the host that runs it, in a cluster (Hearth's own field).
	Node string `json:"node,omitempty"`
}

// ListInput filters and pages ListMicrovms.
type ListInput struct {
	ImageIdentifier string
	ImageVersion    string
	MaxResults      int // 1–50; 0 leaves it to the daemon
	NextToken       string
}

// ListOutput is ListMicrovms's answer.
type ListOutput struct {
	Items     []MicroVMItem `json:"items"`
	NextToken string        `json:"nextToken,omitempty"`
}

// PortRange is a range of guest ports, both ends included.
type PortRange struct {
	StartPort int `json:"startPort"`
	EndPort   int `json:"endPort"`
}

// Unit is an empty member of a union (allPorts).
type Unit struct{}

// PortSpecification is one of: a port, a range, or all ports.
type PortSpecification struct {
	Port     *int       `json:"port,omitempty"`
	Range    *PortRange `json:"range,omitempty"`
	AllPorts *Unit      `json:"allPorts,omitempty"`
}

// Port is the specification of one port.
func Port(p int) PortSpecification { return PortSpecification{Port: &p} }

// Ports is the specification of the ports from start to end.
func Ports(start, end int) PortSpecification {
	return PortSpecification{Range: &PortRange{StartPort: start, EndPort: end}}
}

// AllPorts is the specification of every port.
func AllPorts() PortSpecification { return PortSpecification{AllPorts: &Unit{}} }

// AuthTokenInput is CreateMicrovmAuthToken's request.
type AuthTokenInput struct {
	ExpirationInMinutes int                 `json:"expirationInMinutes"`
	AllowedPorts        []PortSpecification `json:"allowedPorts"`
}

// AuthTokenOutput is CreateMicrovmAuthToken's answer: the headers to send,
// AuthHeader's value the token.
type AuthTokenOutput struct {
	AuthToken map[string]string `json:"authToken"`
}

// ImageHooks are the hooks an image build calls.
type ImageHooks struct {
	Ready                    string `json:"ready,omitempty"`
	ReadyTimeoutInSeconds    int    `json:"readyTimeoutInSeconds,omitempty"`
	Validate                 string `json:"validate,omitempty"`
	ValidateTimeoutInSeconds int    `json:"validateTimeoutInSeconds,omitempty"`
}

// MicroVMHooks are the hooks a MicroVM's lifecycle calls.
type MicroVMHooks struct {
	Run                       string `json:"run,omitempty"`
	RunTimeoutInSeconds       int    `json:"runTimeoutInSeconds,omitempty"`
	Resume                    string `json:"resume,omitempty"`
	ResumeTimeoutInSeconds    int    `json:"resumeTimeoutInSeconds,omitempty"`
	Suspend                   string `json:"suspend,omitempty"`
	SuspendTimeoutInSeconds   int    `json:"suspendTimeoutInSeconds,omitempty"`
	Terminate                 string `json:"terminate,omitempty"`
	TerminateTimeoutInSeconds int    `json:"terminateTimeoutInSeconds,omitempty"`
}

// Hooks is an image's hook configuration: the port its hook server listens
// on, and which hooks it answers.
type Hooks struct {
	Port              int           `json:"port,omitempty"`
	MicrovmImageHooks *ImageHooks   `json:"microvmImageHooks,omitempty"`
	MicrovmHooks      *MicroVMHooks `json:"microvmHooks,omitempty"`
}

// Resources is a MicroVM's memory.
type Resources struct {
	MinimumMemoryInMiB int `json:"minimumMemoryInMiB"`
}

// ImageInput is CreateMicrovmImage's and UpdateMicrovmImage's request.
// Hearth builds from an OCI image reference (ImageURI), where AWS takes a
// codeArtifact zip with a Dockerfile.
type ImageInput struct {
	Name                 string            `json:"name,omitempty"` // CreateMicrovmImage only
	ImageURI             string            `json:"imageUri"`       // Hearth's
	Resources            []Resources       `json:"resources,omitempty"`
	EnvironmentVariables map[string]string `json:"environmentVariables,omitempty"`
	Hooks                *Hooks            `json:"hooks,omitempty"`
	Description          string            `json:"description,omitempty"`
	ClientToken          string            `json:"clientToken,omitempty"`
}

// Image is CreateMicrovmImage's, UpdateMicrovmImage's and
// GetMicrovmImage's answer.
type Image struct {
	ImageARN                 string            `json:"imageArn"`
	Name                     string            `json:"name"`
	State                    string            `json:"state"`
	ImageVersion             string            `json:"imageVersion,omitempty"` // the version a create or update started
	LatestActiveImageVersion string            `json:"latestActiveImageVersion,omitempty"`
	LatestFailedImageVersion string            `json:"latestFailedImageVersion,omitempty"`
	Description              string            `json:"description,omitempty"`
	ImageURI                 string            `json:"imageUri,omitempty"` // Hearth's
	EnvironmentVariables     map[string]string `json:"environmentVariables,omitempty"`
	Hooks                    *Hooks            `json:"hooks,omitempty"`
	Resources                []Resources       `json:"resources,omitempty"`
	CreatedAt                *Timestamp        `json:"createdAt,omitempty"`
	UpdatedAt                *Timestamp        `json:"updatedAt,omitempty"`
}

// ImageSummary is one image in ListMicrovmImages.
type ImageSummary struct {
	ImageARN                 string     `json:"imageArn"`
	Name                     string     `json:"name"`
	State                    string     `json:"state"`
	LatestActiveImageVersion string     `json:"latestActiveImageVersion,omitempty"`
	LatestFailedImageVersion string     `json:"latestFailedImageVersion,omitempty"`
	CreatedAt                *Timestamp `json:"createdAt,omitempty"`
}

// ListImagesOutput is ListMicrovmImages's answer.
type ListImagesOutput struct {
	Items     []ImageSummary `json:"items"`
	NextToken string         `json:"nextToken,omitempty"`
}

// Image version states (a build's) and statuses.
const (
	VersionPending    = "PENDING"
	VersionInProgress = "IN_PROGRESS"
	VersionSuccessful = "SUCCESSFUL"
	VersionFailed     = "FAILED"
	VersionActive     = "ACTIVE"
	VersionInactive   = "INACTIVE"
)

// ImageVersion is GetMicrovmImageVersion's answer and one version in
// ListMicrovmImageVersions.
type ImageVersion struct {
	ImageARN             string            `json:"imageArn"`
	ImageVersion         string            `json:"imageVersion"`
	State                string            `json:"state"`
	Status               string            `json:"status"`
	StateReason          string            `json:"stateReason,omitempty"`
	Description          string            `json:"description,omitempty"`
	ImageURI             string            `json:"imageUri,omitempty"`    // Hearth's
	ImageDigest          string            `json:"imageDigest,omitempty"` // Hearth's
	EnvironmentVariables map[string]string `json:"environmentVariables,omitempty"`
	Hooks                *Hooks            `json:"hooks,omitempty"`
	Resources            []Resources       `json:"resources,omitempty"`
	CreatedAt            *Timestamp        `json:"createdAt,omitempty"`
	UpdatedAt            *Timestamp        `json:"updatedAt,omitempty"`
}

// ListImageVersionsOutput is ListMicrovmImageVersions's answer.
type ListImageVersionsOutput struct {
	Items     []ImageVersion `json:"items"`
	NextToken string         `json:"nextToken,omitempty"`
}

// DeleteImageOutput is DeleteMicrovmImage's answer.
type DeleteImageOutput struct {
	ImageIdentifier string `json:"imageIdentifier"`
	State           string `json:"state"`
}

// ExecRequest is a process to start in a MicroVM (Hearth's sandbox
// interface). Argv[0] is a path in the guest, or a name looked up in the
// PATH of Env (or the usual one) in the guest's root.
type ExecRequest struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	// TTY runs the process on a terminal of Rows x Cols; its output all
	// comes as stdout.
	TTY  bool `json:"tty,omitempty"`
	Rows int  `json:"rows,omitempty"`
	Cols int  `json:"cols,omitempty"`
}

// ExitStatus is how an exec'd process ended: Code, or Signal (Code -1);
// Error when it could not start or the session broke.
type ExitStatus struct {
	Code   int    `json:"code"`
	Signal int    `json:"signal,omitempty"`
	Error  string `json:"error,omitempty"`
}

// FileInfo describes a file in a MicroVM.
type FileInfo struct {
	Name    string      `json:"name"`
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"mode"`
	ModTime time.Time   `json:"modTime"`
	IsDir   bool        `json:"isDir"`
}

// DirList is a folder's listing.
type DirList struct {
	Entries []FileInfo `json:"entries"`
}

// WriteResult is an upload's answer.
type WriteResult struct {
	Path         string `json:"path"`
	BytesWritten int64  `json:"bytesWritten"`
}
