package api

import (
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	wire "github.com/hearthdev/hearth/client/microvm"
	"github.com/hearthdev/hearth/internal/microvm"
)

// imageNamePattern is AWS's for a MicroVM image's name.
var imageNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// imageRequest is CreateMicrovmImage's and UpdateMicrovmImage's body, with
// AWS's members Hearth refuses (it builds from an OCI reference).
type imageRequest struct {
	wire.ImageInput
	CodeArtifact any `json:"codeArtifact"`
}

// imageInput checks a create or update request and makes the Manager's
// input of it.
func imageInput(r *http.Request, create bool) (microvm.ImageInput, error) {
	var in imageRequest
	if err := decodeMVM(r, &in); err != nil {
		return microvm.ImageInput{}, err
	}
	if in.CodeArtifact != nil {
		return microvm.ImageInput{}, validation("Hearth builds MicroVM images from an OCI image: give imageUri (a registry reference) instead of codeArtifact")
	}
	if create {
		if in.Name == "" || len(in.Name) > maxImageNameLen || !imageNamePattern.MatchString(in.Name) {
			return microvm.ImageInput{}, validation("name is required: 1 to %d letters, digits, '-' or '_'", maxImageNameLen)
		}
	}
	if in.ImageURI == "" {
		return microvm.ImageInput{}, validation("imageUri is required: an OCI image reference such as 127.0.0.1:5000/agent:v1")
	}
	if !strings.HasPrefix(in.ImageURI, LocalImagePrefix) {
		if _, err := name.ParseReference(in.ImageURI); err != nil {
			return microvm.ImageInput{}, validation("imageUri %q is not an OCI image reference: %v", in.ImageURI, err)
		}
	}
	out := microvm.ImageInput{Name: in.Name, ImageURI: in.ImageURI, EnvironmentVariables: in.EnvironmentVariables,
		Description: in.Description, ClientToken: in.ClientToken}
	switch len(in.Resources) {
	case 0:
	case 1:
		if m := in.Resources[0].MinimumMemoryInMiB; m < 128 || m > 32768 {
			return microvm.ImageInput{}, validation("resources[0].minimumMemoryInMiB must be 128 to 32768, not %d", m)
		}
		out.MemoryMiB = in.Resources[0].MinimumMemoryInMiB
	default:
		return microvm.ImageInput{}, validation("resources takes one entry, not %d", len(in.Resources))
	}
	if len(in.Description) > maxDescriptionLen {
		return microvm.ImageInput{}, validation("description must be at most %d characters", maxDescriptionLen)
	}
	if len(in.ClientToken) > maxClientTokenLen {
		return microvm.ImageInput{}, validation("clientToken must be at most %d characters", maxClientTokenLen)
	}
	if len(in.EnvironmentVariables) > maxEnvVars {
		return microvm.ImageInput{}, validation("environmentVariables holds at most %d variables", maxEnvVars)
	}
	for k := range in.EnvironmentVariables {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return microvm.ImageInput{}, validation("environment variable name %q is not valid", k)
		}
	}
	if in.Hooks != nil {
		h, err := hooksInput(in.Hooks)
		if err != nil {
			return microvm.ImageInput{}, err
		}
		out.Hooks = h
	}
	return out, nil
}

// hookState reads a hook's ENABLED or DISABLED.
func hookState(member, v string) (bool, error) {
	switch v {
	case "", wire.HookDisabled:
		return false, nil
	case wire.HookEnabled:
		return true, nil
	}
	return false, validation("hooks %s must be ENABLED or DISABLED, not %q", member, v)
}

func hookTimeout(member string, v, max int) (int, error) {
	if v < 0 || v > max {
		return 0, validation("hooks %s must be 1 to %d seconds, not %d", member, max, v)
	}
	return v, nil
}

// hooksInput checks the hook configuration: a port, each hook ENABLED or
// DISABLED with its timeout in AWS's bounds, and /ready when any MicroVM
// hook is (AWS requires it).
func hooksInput(in *wire.Hooks) (*microvm.Hooks, error) {
	h := &microvm.Hooks{Port: in.Port}
	if !validPort(in.Port) {
		return nil, validation("hooks.port must be 1 to 65535, not %d", in.Port)
	}
	var err error
	type check struct {
		member  string
		state   string
		timeout int
		max     int
		on      *bool
		secs    *int
	}
	var checks []check
	if ih := in.MicrovmImageHooks; ih != nil {
		checks = append(checks,
			check{"microvmImageHooks.ready", ih.Ready, ih.ReadyTimeoutInSeconds, maxImageHookTimeout, &h.Ready, &h.ReadyTimeoutInSeconds},
			check{"microvmImageHooks.validate", ih.Validate, ih.ValidateTimeoutInSeconds, maxImageHookTimeout, &h.Validate, &h.ValidateTimeoutInSeconds})
	}
	if mh := in.MicrovmHooks; mh != nil {
		checks = append(checks,
			check{"microvmHooks.run", mh.Run, mh.RunTimeoutInSeconds, maxMicroVMHookTimeout, &h.Run, &h.RunTimeoutInSeconds},
			check{"microvmHooks.resume", mh.Resume, mh.ResumeTimeoutInSeconds, maxMicroVMHookTimeout, &h.Resume, &h.ResumeTimeoutInSeconds},
			check{"microvmHooks.suspend", mh.Suspend, mh.SuspendTimeoutInSeconds, maxMicroVMHookTimeout, &h.Suspend, &h.SuspendTimeoutInSeconds},
			check{"microvmHooks.terminate", mh.Terminate, mh.TerminateTimeoutInSeconds, maxMicroVMHookTimeout, &h.Terminate, &h.TerminateTimeoutInSeconds})
	}
	for _, c := range checks {
		if *c.on, err = hookState(c.member, c.state); err != nil {
			return nil, err
		}
		if *c.secs, err = hookTimeout(c.member+"TimeoutInSeconds", c.timeout, c.max); err != nil {
			return nil, err
		}
	}
	if (h.Run || h.Resume || h.Suspend || h.Terminate) && !h.Ready {
		return nil, validation("MicroVM hooks (run, resume, suspend, terminate) need the ready hook: set microvmImageHooks.ready to ENABLED")
	}
	return h, nil
}

// createMicrovmImage is CreateMicrovmImage: POST /2025-09-09/microvm-images.
func (a *API) createMicrovmImage(r *http.Request, m MicroVMs) (any, error) {
	in, err := imageInput(r, true)
	if err != nil {
		return nil, err
	}
	v, err := m.CreateImage(r.Context(), in)
	if err != nil {
		return nil, err
	}
	return imageOfVersion(v), nil
}

// updateMicrovmImage is UpdateMicrovmImage: PUT
// /2025-09-09/microvm-images/{image}: the image's next version.
func (a *API) updateMicrovmImage(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "image", "imageIdentifier")
	if err != nil {
		return nil, err
	}
	in, err := imageInput(r, false)
	if err != nil {
		return nil, err
	}
	if in.Name != "" && in.Name != id {
		return nil, validation("name %q does not match the image in the path, %q", in.Name, id)
	}
	in.Name = id
	v, err := m.UpdateImage(r.Context(), in)
	if err != nil {
		return nil, err
	}
	return imageOfVersion(v), nil
}

// getMicrovmImage is GetMicrovmImage: GET /2025-09-09/microvm-images/{image}.
func (a *API) getMicrovmImage(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "image", "imageIdentifier")
	if err != nil {
		return nil, err
	}
	img, err := m.GetImage(r.Context(), id)
	if err != nil {
		return nil, err
	}
	s := imageSummary(img)
	return wire.Image{ImageARN: s.ImageARN, Name: s.Name, State: s.State, LatestActiveImageVersion: s.LatestActiveImageVersion,
		LatestFailedImageVersion: s.LatestFailedImageVersion, Description: img.Description,
		CreatedAt: s.CreatedAt, UpdatedAt: wire.NewTimestamp(img.UpdatedAt)}, nil
}

// listMicrovmImages is ListMicrovmImages: GET /2025-09-09/microvm-images
// (nameFilter keeps the images whose name holds it).
func (a *API) listMicrovmImages(r *http.Request, m MicroVMs) (any, error) {
	max, next, err := pageQuery(r)
	if err != nil {
		return nil, err
	}
	filter := r.URL.Query().Get("nameFilter")
	imgs, next, err := m.ListImages(r.Context(), max, next)
	if err != nil {
		return nil, err
	}
	out := wire.ListImagesOutput{Items: make([]wire.ImageSummary, 0, len(imgs)), NextToken: next}
	for _, img := range imgs {
		if strings.Contains(img.Name, filter) {
			out.Items = append(out.Items, imageSummary(img))
		}
	}
	return out, nil
}

// deleteMicrovmImage is DeleteMicrovmImage: DELETE
// /2025-09-09/microvm-images/{image}; deleting a deleted image succeeds.
func (a *API) deleteMicrovmImage(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "image", "imageIdentifier")
	if err != nil {
		return nil, err
	}
	if err := m.DeleteImage(r.Context(), id); err != nil && !isNotFound(err) {
		return nil, err
	}
	return wire.DeleteImageOutput{ImageIdentifier: id, State: "DELETED"}, nil
}

// getMicrovmImageVersion is GetMicrovmImageVersion: GET
// /2025-09-09/microvm-images/{image}/versions/{version}.
func (a *API) getMicrovmImageVersion(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "image", "imageIdentifier")
	if err != nil {
		return nil, err
	}
	ver, err := identifier(r, "version", "imageVersion")
	if err != nil {
		return nil, err
	}
	v, err := m.GetImageVersion(r.Context(), id, ver)
	if err != nil {
		return nil, err
	}
	return wireVersion(v), nil
}

// listMicrovmImageVersions is ListMicrovmImageVersions: GET
// /2025-09-09/microvm-images/{image}/versions.
func (a *API) listMicrovmImageVersions(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "image", "imageIdentifier")
	if err != nil {
		return nil, err
	}
	max, next, err := pageQuery(r)
	if err != nil {
		return nil, err
	}
	vs, next, err := m.ListImageVersions(r.Context(), id, max, next)
	if err != nil {
		return nil, err
	}
	out := wire.ListImageVersionsOutput{Items: make([]wire.ImageVersion, 0, len(vs)), NextToken: next}
	for _, v := range vs {
		out.Items = append(out.Items, wireVersion(v))
	}
	return out, nil
}

// deleteMicrovmImageVersion is DeleteMicrovmImageVersion: DELETE
// /2025-09-09/microvm-images/{image}/versions/{version}.
func (a *API) deleteMicrovmImageVersion(r *http.Request, m MicroVMs) (any, error) {
	id, err := identifier(r, "image", "imageIdentifier")
	if err != nil {
		return nil, err
	}
	ver, err := identifier(r, "version", "imageVersion")
	if err != nil {
		return nil, err
	}
	return nil, m.DeleteImageVersion(r.Context(), id, ver)
}

func isNotFound(err error) bool { return errors.Is(err, microvm.ErrNotFound) }

// imageState is an image's state as AWS names it: a build of a version
// after the first is an update.
func imageState(s microvm.ImageState, version string) string {
	if version == "" || version == "1" {
		return string(s)
	}
	switch s {
	case microvm.ImageCreating:
		return "UPDATING"
	case microvm.ImageCreated:
		return "UPDATED"
	case microvm.ImageCreateFailed:
		return "UPDATE_FAILED"
	}
	return string(s)
}

// versionState is a version's build state as AWS names it.
func versionState(s microvm.ImageState) string {
	switch s {
	case microvm.ImageCreating:
		return wire.VersionInProgress
	case microvm.ImageCreated:
		return wire.VersionSuccessful
	case microvm.ImageCreateFailed:
		return wire.VersionFailed
	}
	return string(s)
}

// imageSummary is an image as ListMicrovmImages lists it: its state is
// the latest version's; its latest active and failed versions each the
// newest of its kind.
func imageSummary(img microvm.Image) wire.ImageSummary {
	return wire.ImageSummary{ImageARN: img.ARN, Name: img.Name, State: imageState(img.State, img.LatestVersion), CreatedAt: wire.NewTimestamp(img.CreatedAt),
		LatestActiveImageVersion: img.LatestActiveVersion, LatestFailedImageVersion: img.LatestFailedVersion}
}

// imageOfVersion is CreateMicrovmImage's (and Update's) answer: the image
// as the version just started leaves it.
func imageOfVersion(v microvm.ImageVersion) wire.Image {
	w := wireVersion(v)
	name := v.Image
	if name == "" {
		name = v.Input.Name
	}
	out := wire.Image{ImageARN: imageARNOf(v), Name: name, State: imageState(v.State, v.Version), ImageVersion: v.Version,
		Description: w.Description, ImageURI: w.ImageURI, EnvironmentVariables: w.EnvironmentVariables, Hooks: w.Hooks,
		Resources: w.Resources, CreatedAt: w.CreatedAt, UpdatedAt: w.CreatedAt}
	switch {
	case v.State == microvm.ImageCreated && v.Active:
		out.LatestActiveImageVersion = v.Version
	case v.State == microvm.ImageCreateFailed:
		out.LatestFailedImageVersion = v.Version
	}
	return out
}

// imageARNOf is the image's ARN from a version's ARN
// ("…:microvm-image:NAME:VERSION" → "…:microvm-image:NAME").
func imageARNOf(v microvm.ImageVersion) string {
	if s, ok := strings.CutSuffix(v.ARN, ":"+v.Version); ok && v.Version != "" {
		return s
	}
	return v.ARN
}

// wireVersion is an image version as GetMicrovmImageVersion answers.
func wireVersion(v microvm.ImageVersion) wire.ImageVersion {
	status := wire.VersionInactive
	if v.Active {
		status = wire.VersionActive
	}
	out := wire.ImageVersion{ImageARN: imageARNOf(v), ImageVersion: v.Version, State: versionState(v.State), Status: status,
		StateReason: v.StateReason, Description: v.Input.Description, ImageURI: v.Input.ImageURI, ImageDigest: v.Digest,
		EnvironmentVariables: v.Input.EnvironmentVariables, CreatedAt: wire.NewTimestamp(v.CreatedAt),
		UpdatedAt: wire.NewTimestamp(v.BuiltAt)}
	if v.Input.MemoryMiB > 0 {
		out.Resources = []wire.Resources{{MinimumMemoryInMiB: v.Input.MemoryMiB}}
	}
	if h := v.Input.Hooks; h != nil {
		out.Hooks = wireHooks(h)
	}
	return out
}

func wireHooks(h *microvm.Hooks) *wire.Hooks {
	st := func(on bool) string {
		if on {
			return wire.HookEnabled
		}
		return wire.HookDisabled
	}
	return &wire.Hooks{Port: h.Port,
		MicrovmImageHooks: &wire.ImageHooks{Ready: st(h.Ready), ReadyTimeoutInSeconds: h.ReadyTimeoutInSeconds,
			Validate: st(h.Validate), ValidateTimeoutInSeconds: h.ValidateTimeoutInSeconds},
		MicrovmHooks: &wire.MicroVMHooks{Run: st(h.Run), RunTimeoutInSeconds: h.RunTimeoutInSeconds,
			Resume: st(h.Resume), ResumeTimeoutInSeconds: h.ResumeTimeoutInSeconds,
			Suspend: st(h.Suspend), SuspendTimeoutInSeconds: h.SuspendTimeoutInSeconds,
			Terminate: st(h.Terminate), TerminateTimeoutInSeconds: h.TerminateTimeoutInSeconds}}
}
