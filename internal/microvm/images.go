package microvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// Limits of an image's input.
const (
	minMemoryMiB     = 128
	maxMemoryMiB     = 10240
	defaultMemoryMiB = 512
	maxDescription   = 256
	maxHookTimeout   = 3600
	maxListResults   = 50
)

var imageNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

func validation(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrValidation, fmt.Sprintf(format, a...))
}

func conflict(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConflict, fmt.Sprintf(format, a...))
}

func notFound(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, a...))
}

// checkImageInput checks in and fills its defaults.
func checkImageInput(in *ImageInput) error {
	if !imageNameRE.MatchString(in.Name) {
		return validation("name %q must be 1 to 64 letters, digits, '-' or '_', starting with a letter or digit", in.Name)
	}
	if in.ImageURI == "" {
		return validation("imageUri is required: an OCI image reference such as 127.0.0.1:5000/agent:v1")
	}
	if _, err := name.ParseReference(in.ImageURI); err != nil {
		return validation("imageUri %q is not an OCI image reference: %v", in.ImageURI, err)
	}
	if in.MemoryMiB == 0 {
		in.MemoryMiB = defaultMemoryMiB
	}
	if in.MemoryMiB < minMemoryMiB || in.MemoryMiB > maxMemoryMiB {
		return validation("memoryMiB must be between %d and %d, not %d", minMemoryMiB, maxMemoryMiB, in.MemoryMiB)
	}
	if len(in.Description) > maxDescription {
		return validation("description is at most %d characters", maxDescription)
	}
	for k := range in.EnvironmentVariables {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return validation("environment variable name %q is not valid", k)
		}
	}
	if h := in.Hooks; h != nil {
		any := h.Ready || h.Validate || h.Run || h.Resume || h.Suspend || h.Terminate
		if any && (h.Port < 1 || h.Port > 65535) {
			return validation("hooks.port must be between 1 and 65535, not %d", h.Port)
		}
		for _, t := range []int{h.ReadyTimeoutInSeconds, h.ValidateTimeoutInSeconds, h.RunTimeoutInSeconds,
			h.ResumeTimeoutInSeconds, h.SuspendTimeoutInSeconds, h.TerminateTimeoutInSeconds} {
			if t < 0 || t > maxHookTimeout {
				return validation("hook timeouts must be between 0 (the default) and %d seconds, not %d", maxHookTimeout, t)
			}
		}
	}
	return nil
}

// CreateImage records a new image and starts building its version "1"; a
// name taken is ErrConflict.
func (m *Manager) CreateImage(ctx context.Context, in ImageInput) (ImageVersion, error) {
	if err := checkImageInput(&in); err != nil {
		return ImageVersion{}, err
	}
	now := m.cfg.Now().UTC()
	rec, err := newVersionRecord(in, now)
	if err != nil {
		return ImageVersion{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.images[in.Name]; ok {
		return ImageVersion{}, conflict("an image named %s exists already: update it for a new version", in.Name)
	}
	img := store.MicroVMImage{Name: in.Name, Description: in.Description, LatestVersion: 1, Created: now, Updated: now}
	rec, err = m.cfg.Store.CreateMicroVMImage(ctx, img, rec)
	if errors.Is(err, store.ErrExists) {
		return ImageVersion{}, conflict("an image named %s exists already", in.Name)
	}
	if err != nil {
		return ImageVersion{}, fmt.Errorf("recording image %s: %w", in.Name, err)
	}
	iv := &imageVersion{rec: rec, input: in}
	m.images[in.Name] = &image{rec: img, versions: map[int]*imageVersion{1: iv}}
	m.startBuild(iv)
	return m.versionView(m.images[in.Name], iv), nil
}

// UpdateImage starts building the next version of in.Name.
func (m *Manager) UpdateImage(ctx context.Context, in ImageInput) (ImageVersion, error) {
	in.Name = imageName(in.Name)
	if err := checkImageInput(&in); err != nil {
		return ImageVersion{}, err
	}
	now := m.cfg.Now().UTC()
	rec, err := newVersionRecord(in, now)
	if err != nil {
		return ImageVersion{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	img, ok := m.images[in.Name]
	if !ok {
		return ImageVersion{}, notFound("no image named %s", in.Name)
	}
	rec, err = m.cfg.Store.AddMicroVMImageVersion(ctx, in.Name, in.Description, rec)
	if err != nil {
		return ImageVersion{}, fmt.Errorf("recording image %s: %w", in.Name, err)
	}
	img.rec.LatestVersion, img.rec.Updated = rec.Version, now
	if in.Description != "" {
		img.rec.Description = in.Description
	}
	iv := &imageVersion{rec: rec, input: in}
	img.versions[rec.Version] = iv
	m.startBuild(iv)
	return m.versionView(img, iv), nil
}

func newVersionRecord(in ImageInput, now time.Time) (store.MicroVMImageVersion, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return store.MicroVMImageVersion{}, err
	}
	return store.MicroVMImageVersion{Input: string(b), State: string(ImageCreating), Created: now}, nil
}

// imageName is the name in an image's name or ARN
// (arn:aws:lambda:<region>:<account>:microvm-image:<name>[:<version>]).
func imageName(id string) string {
	if rest, ok := strings.CutPrefix(id, "arn:"); ok {
		if _, after, ok := strings.Cut(rest, ":microvm-image:"); ok {
			n, _, _ := strings.Cut(after, ":")
			return n
		}
	}
	return id
}

func (m *Manager) imageARN(name string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:000000000000:microvm-image:%s", m.cfg.Region, name)
}

// imageView is img as the API shows it; m.mu is held.
func (m *Manager) imageView(img *image) Image {
	out := Image{Name: img.rec.Name, ARN: m.imageARN(img.rec.Name), Description: img.rec.Description,
		CreatedAt: img.rec.Created, UpdatedAt: img.rec.Updated}
	if n := latest(img); n > 0 {
		out.LatestVersion, out.State = strconv.Itoa(n), ImageState(img.versions[n].rec.State)
	}
	failed := 0
	for n, v := range img.versions {
		if ImageState(v.rec.State) == ImageCreateFailed {
			failed = max(failed, n)
		}
	}
	if active := active(img); active > 0 {
		out.LatestActiveVersion = strconv.Itoa(active)
	}
	if failed > 0 {
		out.LatestFailedVersion = strconv.Itoa(failed)
	}
	return out
}

func latest(img *image) int {
	n := 0
	for v := range img.versions {
		n = max(n, v)
	}
	return n
}

// active is the newest CREATED version of img, 0 if none; m.mu is held.
func active(img *image) int {
	n := 0
	for v, iv := range img.versions {
		if ImageState(iv.rec.State) == ImageCreated {
			n = max(n, v)
		}
	}
	return n
}

// versionView is iv as the API shows it; m.mu is held.
func (m *Manager) versionView(img *image, iv *imageVersion) ImageVersion {
	v := strconv.Itoa(iv.rec.Version)
	return ImageVersion{Image: img.rec.Name, Version: v, ARN: m.imageARN(img.rec.Name) + ":" + v, Input: iv.input,
		Digest: iv.rec.Digest, State: ImageState(iv.rec.State), StateReason: iv.rec.Reason,
		Active: active(img) == iv.rec.Version, CreatedAt: iv.rec.Created, BuiltAt: iv.rec.Built}
}

// GetImage describes an image, by name or ARN.
func (m *Manager) GetImage(ctx context.Context, id string) (Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	img, ok := m.images[imageName(id)]
	if !ok {
		return Image{}, notFound("no image %s", id)
	}
	return m.imageView(img), nil
}

// ListImages lists the images by name, maxResults (1–50, 0 is 50) at a
// time; nextToken is the last name of the previous page.
func (m *Manager) ListImages(ctx context.Context, maxResults int, nextToken string) ([]Image, string, error) {
	n, err := pageSize(maxResults)
	if err != nil {
		return nil, "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	names := slices.Sorted(maps.Keys(m.images))
	i := sort.SearchStrings(names, nextToken)
	if nextToken != "" && i < len(names) && names[i] == nextToken {
		i++
	}
	var out []Image
	for ; i < len(names) && len(out) < n; i++ {
		out = append(out, m.imageView(m.images[names[i]]))
	}
	next := ""
	if i < len(names) {
		next = out[len(out)-1].Name
	}
	return out, next, nil
}

func pageSize(maxResults int) (int, error) {
	if maxResults == 0 {
		return maxListResults, nil
	}
	if maxResults < 1 || maxResults > maxListResults {
		return 0, validation("maxResults must be between 1 and %d, not %d", maxListResults, maxResults)
	}
	return maxResults, nil
}

// parseVersion reads a version number ("1", "2", …, or an image version
// ARN).
func parseVersion(s string) (int, error) {
	if i := strings.LastIndex(s, ":"); i >= 0 {
		s = s[i+1:]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, validation("image version %q is not a version number", s)
	}
	return n, nil
}

// GetImageVersion describes one version of an image.
func (m *Manager) GetImageVersion(ctx context.Context, id, version string) (ImageVersion, error) {
	n, err := parseVersion(version)
	if err != nil {
		return ImageVersion{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	img, ok := m.images[imageName(id)]
	if !ok {
		return ImageVersion{}, notFound("no image %s", id)
	}
	iv, ok := img.versions[n]
	if !ok {
		return ImageVersion{}, notFound("image %s has no version %s", img.rec.Name, version)
	}
	return m.versionView(img, iv), nil
}

// ListImageVersions lists an image's versions, oldest first; nextToken is
// the last version of the previous page.
func (m *Manager) ListImageVersions(ctx context.Context, id string, maxResults int, nextToken string) ([]ImageVersion, string, error) {
	n, err := pageSize(maxResults)
	if err != nil {
		return nil, "", err
	}
	after := 0
	if nextToken != "" {
		if after, err = parseVersion(nextToken); err != nil {
			return nil, "", validation("nextToken %q is not one this API gave", nextToken)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	img, ok := m.images[imageName(id)]
	if !ok {
		return nil, "", notFound("no image %s", id)
	}
	nums := slices.Sorted(maps.Keys(img.versions))
	var out []ImageVersion
	next := ""
	for _, v := range nums {
		if v <= after {
			continue
		}
		if len(out) == n {
			next = out[n-1].Version
			break
		}
		out = append(out, m.versionView(img, img.versions[v]))
	}
	return out, next, nil
}

// inUse says why a version cannot go: a MicroVM on it that is not
// terminated, or its build in progress; "" if it can. m.mu is held.
func (m *Manager) inUse(img *image, version int) string {
	if iv := img.versions[version]; iv != nil && ImageState(iv.rec.State) == ImageCreating {
		return fmt.Sprintf("version %d of image %s is being built", version, img.rec.Name)
	}
	for _, v := range m.vms {
		if v.rec.Image == img.rec.Name && v.rec.Version == version && State(v.rec.State) != StateTerminated {
			return fmt.Sprintf("MicroVM %s runs version %d of image %s: terminate it first", v.rec.ID, version, img.rec.Name)
		}
	}
	return ""
}

// DeleteImage deletes an image, its versions and their templates; a
// MicroVM still on it is ErrConflict.
func (m *Manager) DeleteImage(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	img, ok := m.images[imageName(id)]
	if !ok {
		return notFound("no image %s", id)
	}
	for v := range img.versions {
		if why := m.inUse(img, v); why != "" {
			return conflict("image %s cannot be deleted: %s", img.rec.Name, why)
		}
	}
	if err := m.cfg.Store.DeleteMicroVMImage(ctx, img.rec.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("deleting image %s: %w", img.rec.Name, err)
	}
	for _, iv := range img.versions {
		m.removeTemplate(iv)
	}
	delete(m.images, img.rec.Name)
	return nil
}

// DeleteImageVersion deletes one version and its template; a MicroVM
// still on it is ErrConflict.
func (m *Manager) DeleteImageVersion(ctx context.Context, id, version string) error {
	n, err := parseVersion(version)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	img, ok := m.images[imageName(id)]
	if !ok {
		return notFound("no image %s", id)
	}
	iv, ok := img.versions[n]
	if !ok {
		return notFound("image %s has no version %s", img.rec.Name, version)
	}
	if why := m.inUse(img, n); why != "" {
		return conflict("version %d of image %s cannot be deleted: %s", n, img.rec.Name, why)
	}
	if err := m.cfg.Store.DeleteMicroVMImageVersion(ctx, img.rec.Name, n); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("deleting version %d of image %s: %w", n, img.rec.Name, err)
	}
	m.removeTemplate(iv)
	delete(img.versions, n)
	return nil
}

func (m *Manager) removeTemplate(iv *imageVersion) {
	if d := iv.rec.TemplateDir; d != "" {
		if err := os.RemoveAll(d); err != nil {
			m.log.Warn("removing a template", "dir", d, "err", err)
		}
	}
}

// startBuild builds iv in the background; m.mu is held.
func (m *Manager) startBuild(iv *imageVersion) {
	m.builds.Add(1)
	go func() {
		defer m.builds.Done()
		ctx, cancel := context.WithTimeout(m.buildCtx, m.cfg.BuildTimeout)
		defer cancel()
		t0 := time.Now()
		tplDir, digest, err := m.build(ctx, iv.input)
		m.mu.Lock()
		iv.rec.Built, iv.rec.Digest = m.cfg.Now().UTC(), digest
		if err != nil {
			iv.rec.State, iv.rec.Reason = string(ImageCreateFailed), buildReason(ctx, err)
		} else {
			iv.rec.State, iv.rec.Reason, iv.rec.TemplateDir = string(ImageCreated), "", tplDir
		}
		rec := iv.rec
		m.mu.Unlock()
		if err := m.cfg.Store.UpdateMicroVMImageVersion(context.WithoutCancel(ctx), rec); err != nil {
			m.log.Error("recording an image build", "image", rec.Image, "version", rec.Version, "err", err)
		}
		if err != nil {
			m.log.Warn("image build failed", "image", rec.Image, "version", rec.Version, "reason", rec.Reason)
			return
		}
		m.log.Info("image built", "image", rec.Image, "version", rec.Version, "digest", digest, "took", time.Since(t0))
	}()
}

// buildReason is a failed build's stateReason, one a user can act on.
func buildReason(ctx context.Context, err error) string {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return "The build was interrupted by a daemon stop: update the image to build it again."
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "The build did not finish in time: " + err.Error()
	}
	return err.Error()
}

// build pulls in's image, boots it, calls its ready hook, snapshots it as
// a template, and checks a clone of it with the validate hook. It returns
// the template's folder and the image's digest.
func (m *Manager) build(ctx context.Context, in ImageInput) (string, string, error) {
	if m.cfg.Images == nil {
		return "", "", errors.New("this Hearth daemon builds no container images")
	}
	root, err := m.cfg.Images.Pull(ctx, in.ImageURI)
	if err != nil {
		if re, ok := rootfs.AsError(err); ok {
			return "", "", fmt.Errorf("The image %s could not be pulled: %s", in.ImageURI, re.Message)
		}
		return "", "", fmt.Errorf("The image %s could not be pulled: %w", in.ImageURI, err)
	}
	argv := append(slices.Clip(root.Config.EntryPoint), root.Config.Cmd...)
	if err := root.CheckEntryPoint(argv); err != nil {
		if re, ok := rootfs.AsError(err); ok {
			return "", root.Digest, errors.New(re.Message)
		}
		return "", root.Digest, err
	}
	wd := root.Config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	fn := sandbox.Function{Name: in.Name, Version: "1", MemoryMB: in.MemoryMiB, Timeout: time.Hour, Region: m.cfg.Region,
		Service: true, Network: m.cfg.NetworkPolicy, Env: imageEnv(root.Config.Env, in.EnvironmentVariables),
		Root: &sandbox.Root{Disk: root.Path, Digest: root.Digest, Size: root.Size, Command: argv, WorkingDir: wd}}
	tpl, err := sandbox.NewTemplateWith(ctx, m.tplCfg, fn, m.cfg.Image, func(ctx context.Context, env *sandbox.Env) error {
		return m.callHook(ctx, env, in.Hooks, hookReady, nil)
	})
	if err != nil {
		return "", root.Digest, fmt.Errorf("The image did not start: %w", err)
	}
	if on, _ := hook(in.Hooks, hookValidate); on {
		env, err := sandbox.Clone(ctx, m.tplCfg, tpl.Dir)
		if err == nil {
			err = m.callHook(ctx, env, in.Hooks, hookValidate, nil)
			if cerr := env.Close(context.WithoutCancel(ctx)); cerr != nil {
				m.log.Warn("closing a build's test MicroVM", "err", cerr)
			}
		}
		if err != nil {
			_ = os.RemoveAll(tpl.Dir)
			return "", root.Digest, fmt.Errorf("The image's validation failed: %w", err)
		}
	}
	return tpl.Dir, root.Digest, nil
}

// imageEnv is an image's ENV ("K=V" lines) under the input's variables,
// which win.
func imageEnv(image []string, vars map[string]string) map[string]string {
	env := make(map[string]string, len(image)+len(vars))
	for _, kv := range image {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	maps.Copy(env, vars)
	return env
}
