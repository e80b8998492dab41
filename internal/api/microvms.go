package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	wire "github.com/hearthdev/hearth/client/microvm"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// MicroVMs runs Lambda MicroVMs; microvm.Manager is it. The API serves the
// Lambda MicroVMs operations (version 2025-09-09) and Hearth's sandbox
// interface (exec and files) with it.
type MicroVMs interface {
	CreateImage(ctx context.Context, in microvm.ImageInput) (microvm.ImageVersion, error)
	UpdateImage(ctx context.Context, in microvm.ImageInput) (microvm.ImageVersion, error)
	GetImage(ctx context.Context, name string) (microvm.Image, error)
	ListImages(ctx context.Context, maxResults int, nextToken string) ([]microvm.Image, string, error)
	DeleteImage(ctx context.Context, name string) error
	GetImageVersion(ctx context.Context, name, version string) (microvm.ImageVersion, error)
	ListImageVersions(ctx context.Context, name string, maxResults int, nextToken string) ([]microvm.ImageVersion, string, error)
	DeleteImageVersion(ctx context.Context, name, version string) error

	Run(ctx context.Context, in microvm.RunInput) (microvm.MicroVM, error)
	Get(ctx context.Context, id string) (microvm.MicroVM, error)
	List(ctx context.Context, in microvm.ListInput) ([]microvm.MicroVM, string, error)
	Suspend(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	Terminate(ctx context.Context, id string) error
	AuthToken(ctx context.Context, id string, ports []microvm.PortRange, ttl time.Duration) (string, error)
	// Hold resumes a suspended MicroVM and keeps it active until release
	// is called: exec and files go through it.
	Hold(ctx context.Context, id string) (env *sandbox.Env, release func(), err error)
}

// Bounds of the MicroVMs operations' input, as AWS documents them.
const (
	maxMicroVMControlBody = 256 << 10 // a control request's JSON (a 16 KB payload escaped, with room)
	maxIdentifierLen      = 256
	maxClientTokenLen     = 128
	maxListResults        = 50
	// AWS's least idle time is 60 s; Hearth takes 1 s, for sandboxes
	// that should cost nothing the moment they are left (and for tests).
	minIdleSeconds        = 1
	maxTokenMinutes       = 60
	maxImageNameLen       = 64
	maxImageHookTimeout   = 3600
	maxMicroVMHookTimeout = 60
	maxDescriptionLen     = 256
	maxEnvVars            = 1024
)

// Error types of the MicroVMs API.
func validation(format string, args ...any) *lambdaerr.Error {
	return &lambdaerr.Error{Type: "ValidationException", Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func mvmNotFound(format string, args ...any) *lambdaerr.Error {
	return &lambdaerr.Error{Type: "ResourceNotFoundException", Status: http.StatusNotFound, Message: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) *lambdaerr.Error {
	return &lambdaerr.Error{Type: "ConflictException", Status: http.StatusConflict, Message: fmt.Sprintf(format, args...)}
}

func accessDenied(format string, args ...any) *lambdaerr.Error {
	return &lambdaerr.Error{Type: "AccessDeniedException", Status: http.StatusForbidden, Message: fmt.Sprintf(format, args...)}
}

// microvmError maps the Manager's errors to the MicroVMs API's error
// types; the message is the Manager's, without the sentinel's name it
// ends with. Anything else is the daemon's own failure (writeError logs
// it and tells the caller only a request id).
func microvmError(err error) error {
	for _, m := range []struct {
		sentinel error
		make     func(string, ...any) *lambdaerr.Error
	}{
		{microvm.ErrNotFound, mvmNotFound},
		{microvm.ErrConflict, conflict},
		{microvm.ErrValidation, validation},
	} {
		if errors.Is(err, m.sentinel) {
			msg := strings.TrimSuffix(err.Error(), ": "+m.sentinel.Error())
			if msg == m.sentinel.Error() {
				msg = "the request was refused"
			}
			return m.make("%s", msg)
		}
	}
	return err
}

// microvms is the Manager, or an error when the daemon runs none.
func (a *API) microvms() (MicroVMs, error) {
	if a.cfg.MicroVMs == nil {
		return nil, lambdaerr.UnknownOperation(http.StatusNotFound, "this Hearth daemon runs no MicroVMs")
	}
	return a.cfg.MicroVMs, nil
}

// mvmHandler is a MicroVMs operation: it returns the answer to write as
// JSON with status 200, or an error.
type mvmHandler func(r *http.Request, m MicroVMs) (any, error)

// mvm serves one MicroVMs operation: it bounds the body, writes the answer
// or the error in the API's shape.
func (a *API) mvm(h mvmHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m, err := a.microvms()
		if err != nil {
			a.writeError(w, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxMicroVMControlBody)
		out, err := h(r, m)
		if err != nil {
			a.writeError(w, microvmError(err))
			return
		}
		if out == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// decodeMVM reads a MicroVMs request's JSON body into v: a body over the
// bound or not JSON is a ValidationException.
func decodeMVM(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return validation("the request body is larger than %d bytes", maxMicroVMControlBody)
		}
		return fmt.Errorf("reading the request: %w", err)
	}
	if len(b) == 0 {
		return validation("the request body is empty: a JSON object is required")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return validation("the request body is not valid JSON: %v", err)
	}
	return nil
}

// identifier reads a path parameter that names a MicroVM or an image.
func identifier(r *http.Request, param, what string) (string, error) {
	v := r.PathValue(param)
	if v == "" || len(v) > maxIdentifierLen {
		return "", validation("%s must be 1 to %d characters", what, maxIdentifierLen)
	}
	return v, nil
}

// pageQuery reads maxResults (1–50) and nextToken.
func pageQuery(r *http.Request) (int, string, error) {
	q := r.URL.Query()
	max := 0
	if s := q.Get("maxResults"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxListResults {
			return 0, "", validation("maxResults must be a whole number from 1 to %d, not %q", maxListResults, s)
		}
		max = n
	}
	return max, q.Get("nextToken"), nil
}

// runMicrovm is RunMicrovm: POST /2025-09-09/microvms.
func (a *API) runMicrovm(r *http.Request, m MicroVMs) (any, error) {
	var in struct {
		ImageIdentifier string `json:"imageIdentifier"`
		ImageVersion    string `json:"imageVersion"`
		IdlePolicy      *struct {
			MaxIdleDurationSeconds   *int  `json:"maxIdleDurationSeconds"`
			SuspendedDurationSeconds *int  `json:"suspendedDurationSeconds"`
			AutoResumeEnabled        *bool `json:"autoResumeEnabled"`
		} `json:"idlePolicy"`
		MaximumDurationInSeconds *int    `json:"maximumDurationInSeconds"`
		RunHookPayload           *string `json:"runHookPayload"`
		ClientToken              *string `json:"clientToken"`
	}
	if err := decodeMVM(r, &in); err != nil {
		return nil, err
	}
	run := microvm.RunInput{ImageIdentifier: in.ImageIdentifier, ImageVersion: in.ImageVersion}
	switch {
	case in.ImageIdentifier == "" || len(in.ImageIdentifier) > maxIdentifierLen:
		return nil, validation("imageIdentifier is required: an image's name or ARN of 1 to %d characters", maxIdentifierLen)
	case strings.ContainsAny(in.ImageVersion, " \t\r\n"):
		return nil, validation("imageVersion must not contain white space")
	}
	if p := in.IdlePolicy; p != nil {
		if p.MaxIdleDurationSeconds == nil || p.SuspendedDurationSeconds == nil || p.AutoResumeEnabled == nil {
			return nil, validation("idlePolicy needs all of maxIdleDurationSeconds, suspendedDurationSeconds and autoResumeEnabled")
		}
		if *p.MaxIdleDurationSeconds < minIdleSeconds {
			return nil, validation("idlePolicy.maxIdleDurationSeconds must be at least %d, not %d", minIdleSeconds, *p.MaxIdleDurationSeconds)
		}
		if *p.SuspendedDurationSeconds < 0 {
			return nil, validation("idlePolicy.suspendedDurationSeconds must not be negative")
		}
		run.IdlePolicy = &microvm.IdlePolicy{MaxIdleDurationSeconds: *p.MaxIdleDurationSeconds,
			SuspendedDurationSeconds: *p.SuspendedDurationSeconds, AutoResumeEnabled: *p.AutoResumeEnabled}
	}
	if d := in.MaximumDurationInSeconds; d != nil {
		// Hearth has no 8-hour cap: any positive duration, or none.
		if *d < 1 {
			return nil, validation("maximumDurationInSeconds must be at least 1 (leave it out for no cap)")
		}
		run.MaximumDurationInSeconds = *d
	}
	if p := in.RunHookPayload; p != nil {
		if len(*p) > microvm.MaxRunHookPayload {
			return nil, validation("runHookPayload is %d bytes: at most %d are allowed", len(*p), microvm.MaxRunHookPayload)
		}
		run.RunHookPayload = *p
	}
	if t := in.ClientToken; t != nil {
		if len(*t) < 1 || len(*t) > maxClientTokenLen {
			return nil, validation("clientToken must be 1 to %d characters", maxClientTokenLen)
		}
		run.ClientToken = *t
	}
	vm, err := m.Run(r.Context(), run)
	if err != nil {
		return nil, err
	}
	return wireMicroVM(vm), nil
}

// getMicrovm is GetMicrovm: GET /2025-09-09/microvms/{id}.
func (a *API) getMicrovm(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "id", "microvmIdentifier")
	if err != nil {
		return nil, err
	}
	vm, err := m.Get(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return wireMicroVM(vm), nil
}

// listMicrovms is ListMicrovms: GET /2025-09-09/microvms.
func (a *API) listMicrovms(r *http.Request, m MicroVMs) (any, error) {
	max, next, err := pageQuery(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	in := microvm.ListInput{ImageIdentifier: q.Get("imageIdentifier"), ImageVersion: q.Get("imageVersion"), MaxResults: max, NextToken: next}
	if len(in.ImageIdentifier) > maxIdentifierLen {
		return nil, validation("imageIdentifier must be at most %d characters", maxIdentifierLen)
	}
	vms, next, err := m.List(r.Context(), in)
	if err != nil {
		return nil, err
	}
	out := wire.ListOutput{Items: make([]wire.MicroVMItem, 0, len(vms)), NextToken: next}
	for _, vm := range vms {
		out.Items = append(out.Items, wire.MicroVMItem{MicrovmID: vm.ID, State: string(vm.State), ImageARN: vm.ImageARN,
			ImageVersion: vm.ImageVersion, StartedAt: wire.NewTimestamp(vm.StartedAt), Node: vm.Node})
	}
	return out, nil
}

// suspendMicrovm is SuspendMicrovm: POST /2025-09-09/microvms/{id}/suspend.
func (a *API) suspendMicrovm(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "id", "microvmIdentifier")
	if err != nil {
		return nil, err
	}
	return nil, m.Suspend(r.Context(), id)
}

// resumeMicrovm is ResumeMicrovm: POST /2025-09-09/microvms/{id}/resume.
func (a *API) resumeMicrovm(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "id", "microvmIdentifier")
	if err != nil {
		return nil, err
	}
	return nil, m.Resume(r.Context(), id)
}

// terminateMicrovm is TerminateMicrovm: DELETE /2025-09-09/microvms/{id};
// terminating a terminated MicroVM succeeds.
func (a *API) terminateMicrovm(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "id", "microvmIdentifier")
	if err != nil {
		return nil, err
	}
	return nil, m.Terminate(r.Context(), id)
}

// createMicrovmAuthToken is CreateMicrovmAuthToken: POST
// /2025-09-09/microvms/{id}/auth-token.
func (a *API) createMicrovmAuthToken(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "id", "microvmIdentifier")
	if err != nil {
		return nil, err
	}
	var in struct {
		ExpirationInMinutes *int `json:"expirationInMinutes"`
		AllowedPorts        []struct {
			Port     *int            `json:"port"`
			Range    *wire.PortRange `json:"range"`
			AllPorts *struct{}       `json:"allPorts"`
		} `json:"allowedPorts"`
	}
	if err := decodeMVM(r, &in); err != nil {
		return nil, err
	}
	if in.ExpirationInMinutes == nil || *in.ExpirationInMinutes < 1 || *in.ExpirationInMinutes > maxTokenMinutes {
		return nil, validation("expirationInMinutes is required: 1 to %d", maxTokenMinutes)
	}
	if len(in.AllowedPorts) == 0 {
		return nil, validation("allowedPorts needs at least one port specification")
	}
	ports := make([]microvm.PortRange, 0, len(in.AllowedPorts))
	for i, p := range in.AllowedPorts {
		set := 0
		for _, b := range []bool{p.Port != nil, p.Range != nil, p.AllPorts != nil} {
			if b {
				set++
			}
		}
		if set != 1 {
			return nil, validation("allowedPorts[%d] must set exactly one of port, range and allPorts", i)
		}
		switch {
		case p.Port != nil:
			if !validPort(*p.Port) {
				return nil, validation("allowedPorts[%d].port must be 1 to 65535, not %d", i, *p.Port)
			}
			ports = append(ports, microvm.PortRange{Start: *p.Port, End: *p.Port})
		case p.Range != nil:
			s, e := p.Range.StartPort, p.Range.EndPort
			if !validPort(s) || !validPort(e) || s > e {
				return nil, validation("allowedPorts[%d].range must have 1 ≤ startPort ≤ endPort ≤ 65535, not %d-%d", i, s, e)
			}
			ports = append(ports, microvm.PortRange{Start: s, End: e})
		default:
			ports = append(ports, microvm.PortRange{Start: 1, End: 65535})
		}
	}
	tok, err := m.AuthToken(r.Context(), id, ports, time.Duration(*in.ExpirationInMinutes)*time.Minute)
	if err != nil {
		return nil, err
	}
	return wire.AuthTokenOutput{AuthToken: map[string]string{wire.AuthHeader: tok}}, nil
}

func validPort(p int) bool { return p >= 1 && p <= 65535 }

// wireMicroVM is a MicroVM as GetMicrovm answers.
func wireMicroVM(vm microvm.MicroVM) wire.MicroVM {
	out := wire.MicroVM{MicrovmID: vm.ID, State: string(vm.State), StateReason: vm.StateReason, Endpoint: vm.Endpoint,
		ImageARN: vm.ImageARN, ImageVersion: vm.ImageVersion, MaximumDurationInSeconds: vm.MaximumDurationInSeconds,
		StartedAt: wire.NewTimestamp(vm.StartedAt), TerminatedAt: wire.NewTimestamp(vm.TerminatedAt)}
	if p := vm.IdlePolicy; p != nil {
		out.IdlePolicy = &wire.IdlePolicy{MaxIdleDurationSeconds: p.MaxIdleDurationSeconds,
			SuspendedDurationSeconds: p.SuspendedDurationSeconds, AutoResumeEnabled: p.AutoResumeEnabled}
	}
	return out
}
