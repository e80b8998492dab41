// Package microvm runs Lambda MicroVMs: long-lived microVMs cloned from an
// image's template, each with an endpoint, an idle policy and lifecycle
// hooks (API version 2025-09-09). The names follow AWS's.
package microvm

import (
	"errors"
	"time"
)

// State is a MicroVM's lifecycle state, as AWS names it.
type State string

// States.
const (
	StatePending     State = "PENDING"
	StateRunning     State = "RUNNING"
	StateSuspending  State = "SUSPENDING"
	StateSuspended   State = "SUSPENDED"
	StateTerminating State = "TERMINATING"
	StateTerminated  State = "TERMINATED"
)

// ImageState is an image's (and an image version's) build state.
type ImageState string

// Image states.
const (
	ImageCreating     ImageState = "CREATING"
	ImageCreated      ImageState = "CREATED"
	ImageCreateFailed ImageState = "CREATE_FAILED"
)

// Errors the API maps to AWS's error types.
var (
	ErrNotFound   = errors.New("ResourceNotFoundException") // 404
	ErrConflict   = errors.New("ConflictException")         // 409: wrong state, name taken, token reused with other input
	ErrValidation = errors.New("ValidationException")       // 400
)

// IdlePolicy is when a running MicroVM is suspended and a suspended one
// terminated. Unlike AWS, activity counts inbound requests, outbound
// traffic and exec sessions.
type IdlePolicy struct {
	MaxIdleDurationSeconds   int  `json:"maxIdleDurationSeconds"`
	SuspendedDurationSeconds int  `json:"suspendedDurationSeconds"`
	AutoResumeEnabled        bool `json:"autoResumeEnabled"`
}

// Hooks are the image's lifecycle hooks on its hook port: POST
// /aws/lambda-microvms/runtime/v1/<name>. A zero timeout is the default.
type Hooks struct {
	Port                      int  `json:"port"`
	Ready                     bool `json:"ready"`
	ReadyTimeoutInSeconds     int  `json:"readyTimeoutInSeconds,omitempty"`
	Validate                  bool `json:"validate"`
	ValidateTimeoutInSeconds  int  `json:"validateTimeoutInSeconds,omitempty"`
	Run                       bool `json:"run"`
	RunTimeoutInSeconds       int  `json:"runTimeoutInSeconds,omitempty"`
	Resume                    bool `json:"resume"`
	ResumeTimeoutInSeconds    int  `json:"resumeTimeoutInSeconds,omitempty"`
	Suspend                   bool `json:"suspend"`
	SuspendTimeoutInSeconds   int  `json:"suspendTimeoutInSeconds,omitempty"`
	Terminate                 bool `json:"terminate"`
	TerminateTimeoutInSeconds int  `json:"terminateTimeoutInSeconds,omitempty"`
}

// ImageInput is what an image version is built from: Hearth takes an OCI
// reference where AWS takes an S3 zip with a Dockerfile.
type ImageInput struct {
	Name                 string            `json:"name"`
	ImageURI             string            `json:"imageUri"`
	MemoryMiB            int               `json:"memoryMiB"`
	EnvironmentVariables map[string]string `json:"environmentVariables,omitempty"`
	Hooks                *Hooks            `json:"hooks,omitempty"`
	Description          string            `json:"description,omitempty"`
	ClientToken          string            `json:"clientToken,omitempty"`
}

// Image is a named image; its versions are its builds.
type Image struct {
	Name          string     `json:"name"`
	ARN           string     `json:"arn"`
	State         ImageState `json:"state"` // the latest version's
	LatestVersion string     `json:"latestVersion"`
	// LatestActiveVersion and LatestFailedVersion are the newest version
	// built and active, and the newest whose build failed ("" if none): a
	// failed update leaves the last good version in use.
	LatestActiveVersion string    `json:"latestActiveVersion,omitempty"`
	LatestFailedVersion string    `json:"latestFailedVersion,omitempty"`
	Description         string    `json:"description,omitempty"`
	CreatedAt           time.Time `json:"createdAt"`
	UpdatedAt           time.Time `json:"updatedAt"`
}

// ImageVersion is one build of an image: its input, its state, and the
// template MicroVMs are cloned from once CREATED.
type ImageVersion struct {
	Image       string     `json:"image"`
	Version     string     `json:"version"` // "1", "2", …
	ARN         string     `json:"arn"`
	Input       ImageInput `json:"input"`
	Digest      string     `json:"digest,omitempty"` // the OCI image's
	State       ImageState `json:"state"`
	StateReason string     `json:"stateReason,omitempty"`
	Active      bool       `json:"active"`
	CreatedAt   time.Time  `json:"createdAt"`
	BuiltAt     time.Time  `json:"builtAt,omitzero"`
}

// RunInput is RunMicrovm's input.
type RunInput struct {
	ImageIdentifier string      `json:"imageIdentifier"` // a name or an image ARN
	ImageVersion    string      `json:"imageVersion,omitempty"`
	IdlePolicy      *IdlePolicy `json:"idlePolicy,omitempty"`
	// MaximumDurationInSeconds caps the MicroVM's life; 0 is no cap
	// (AWS's is 8 hours and required).
	MaximumDurationInSeconds int    `json:"maximumDurationInSeconds,omitempty"`
	RunHookPayload           string `json:"runHookPayload,omitempty"` // ≤ 16 KB
	ClientToken              string `json:"clientToken,omitempty"`    // ≤ 128
}

// MaxRunHookPayload bounds RunInput.RunHookPayload.
const MaxRunHookPayload = 16 << 10

// MicroVM is one MicroVM, as GetMicrovm describes it.
type MicroVM struct {
	ID                       string      `json:"microvmId"`
	State                    State       `json:"state"`
	StateReason              string      `json:"stateReason,omitempty"`
	Endpoint                 string      `json:"endpoint"`
	ImageARN                 string      `json:"imageArn"`
	ImageVersion             string      `json:"imageVersion"`
	IdlePolicy               *IdlePolicy `json:"idlePolicy,omitempty"`
	MaximumDurationInSeconds int         `json:"maximumDurationInSeconds,omitempty"`
	MemoryMiB                int         `json:"memoryMiB"`
	StartedAt                time.Time   `json:"startedAt"`
	TerminatedAt             time.Time   `json:"terminatedAt,omitzero"`
	// LastActivity is the last inbound request, outbound packet or exec.
	LastActivity time.Time `json:"lastActivity,omitzero"`
	// Node is the host that runs it, in a cluster's lists (empty
	// standalone).
	Node string `json:"node,omitempty"`
}

// ListInput filters and pages ListMicrovms.
type ListInput struct {
	ImageIdentifier string
	ImageVersion    string
	MaxResults      int // 1–50; 0 is 50
	NextToken       string
}

// PortRange is a token's allowed ports: one port (Start == End), a range,
// or all (Start 1, End 65535).
type PortRange struct {
	Start, End int
}

// DefaultPort is the guest port the endpoint forwards to without
// X-aws-proxy-port.
const DefaultPort = 8080
