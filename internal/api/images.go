package api

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/store"
)

// ImageBuilder turns container images into root disks; rootfs.Builder is
// one.
type ImageBuilder interface {
	// Pull resolves a registry image and builds its root.
	Pull(ctx context.Context, uri string) (*rootfs.Root, error)
	// Lookup finds a root already built, by its image's digest.
	Lookup(digest string) (*rootfs.Root, bool)
}

// LocalImagePrefix starts the URI of an image imported into this host's
// cache (`hearth image import`): "hearth-local@sha256:<hex>". It names the
// image by digest alone, with no registry to ask.
const LocalImagePrefix = "hearth-local@"

// LocalImageURI is the URI of an imported image with this digest.
func LocalImageURI(digest string) string { return LocalImagePrefix + digest }

// imageBuildTimeout bounds a root's build from a registry.
const imageBuildTimeout = 30 * time.Minute

// Lambda's limits on ImageConfig.
const (
	maxImageConfigItems = 1500
	maxWorkingDirChars  = 1000
	creatingReason      = "The function is being created."
	creatingReasonCode  = "Creating"
	updatingReason      = "The function is being updated."
	updatingReasonCode  = "Creating"
	internalReasonCode  = "InternalError"
	pendingState        = "Pending"
	failedState         = "Failed"
	activeState         = "Active"
	updateInProgress    = "InProgress"
	updateSuccessful    = "Successful"
	updateFailed        = "Failed"
	imageRepositoryType = "ECR"
	badImageURIMessage  = "Source image %s is not valid. Provide a valid source image."
	noImagesMessage     = "this Hearth daemon builds no container images"
	zipOnImageMessage   = "Please provide ImageUri when updating a function with packageType Image."
	imageOnZipMessage   = "Please don't provide ImageUri when updating a function with packageType Zip."
)

// checkImageURI checks an image URI's syntax, which is answered at once;
// whether the image exists is found out while the function is Pending.
func checkImageURI(uri string) error {
	if digest, ok := strings.CutPrefix(uri, LocalImagePrefix); ok {
		if !validDigest(digest) {
			return lambdaerr.InvalidParameter(badImageURIMessage, uri)
		}
		return nil
	}
	if uri == "" || strings.TrimSpace(uri) != uri {
		return lambdaerr.InvalidParameter(badImageURIMessage, uri)
	}
	if _, err := name.ParseReference(uri); err != nil {
		return lambdaerr.InvalidParameter(badImageURIMessage, uri)
	}
	return nil
}

func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// checkImageConfig checks ImageConfig's sizes, as Lambda does.
func checkImageConfig(ic *store.ImageConfig) error {
	if ic == nil {
		return nil
	}
	if len(ic.EntryPoint) > maxImageConfigItems || len(ic.Command) > maxImageConfigItems {
		return lambdaerr.InvalidParameter("ImageConfig.EntryPoint and ImageConfig.Command hold at most %d items", maxImageConfigItems)
	}
	if len(ic.WorkingDirectory) > maxWorkingDirChars {
		return lambdaerr.InvalidParameter("ImageConfig.WorkingDirectory is at most %d characters", maxWorkingDirChars)
	}
	return nil
}

// imageCommand is the runtime's argv and folder: each ImageConfig setting
// given overrides the image's (ENTRYPOINT, CMD, WORKDIR); with no WORKDIR
// at all the runtime starts in /.
func imageCommand(img rootfs.Config, ic *store.ImageConfig) ([]string, string) {
	ep, cmd, wd := img.EntryPoint, img.Cmd, img.WorkingDir
	if ic != nil {
		if len(ic.EntryPoint) > 0 {
			ep = ic.EntryPoint
		}
		if len(ic.Command) > 0 {
			cmd = ic.Command
		}
		if ic.WorkingDirectory != "" {
			wd = ic.WorkingDirectory
		}
	}
	if wd == "" {
		wd = "/"
	}
	return append(slices.Clip(ep), cmd...), wd
}

// imageConfigOf is what ImageConfigResponse reports of ic.
func imageConfigOf(ic *store.ImageConfig) *store.ImageConfigResponse {
	if ic == nil {
		return nil
	}
	return &store.ImageConfigResponse{ImageConfig: ic}
}

// pullImage builds (or finds) uri's root: an imported image from the cache,
// any other from its registry.
func (a *API) pullImage(ctx context.Context, uri string) (*rootfs.Root, error) {
	if digest, ok := strings.CutPrefix(uri, LocalImagePrefix); ok {
		root, found := a.cfg.Images.Lookup(digest)
		if !found {
			return nil, &rootfs.Error{Code: rootfs.NotFound, Message: fmt.Sprintf("Source image %s is not in this host's image cache: import it with `hearth image import`.", uri)}
		}
		root.ResolvedURI = uri
		return root, nil
	}
	return a.cfg.Images.Pull(ctx, uri)
}

// startImageBuild builds the root of the update f.Image.Update describes,
// in the background, and records the outcome in the function: a Pending
// function becomes Active or Failed; an Active one being updated runs the
// new image from then on, or keeps the old one with LastUpdateStatus
// Failed.
func (a *API) startImageBuild(f store.Function) {
	up := f.Image.Update
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), imageBuildTimeout)
		defer cancel()
		t0 := time.Now()
		root, err := a.pullImage(ctx, up.ImageURI)
		var argv []string
		var wd string
		if err == nil {
			argv, wd = imageCommand(root.Config, up.ImageConfig)
			err = root.CheckEntryPoint(argv)
		}
		published := false
		_, uerr := a.cfg.Store.UpdateFunction(ctx, f.FunctionName, func(cur *store.Function) error {
			if cur.Image == nil || cur.Image.Update == nil || cur.Image.Update.ID != up.ID {
				return errStaleBuild
			}
			cur.Image.Update = nil
			if err != nil {
				reason, code := err.Error(), internalReasonCode
				if re, ok := rootfs.AsError(err); ok {
					reason, code = re.Message, re.StateReasonCode()
				}
				cur.LastUpdateStatus, cur.LastUpdateStatusReason, cur.LastUpdateStatusReasonCode = updateFailed, reason, code
				if cur.State == pendingState {
					cur.State, cur.StateReason, cur.StateReasonCode = failedState, reason, code
				}
				return nil
			}
			cur.State, cur.StateReason, cur.StateReasonCode = activeState, "", ""
			cur.LastUpdateStatus, cur.LastUpdateStatusReason, cur.LastUpdateStatusReasonCode = updateSuccessful, "", ""
			cur.Image = &store.FunctionImage{ImageURI: up.ImageURI, ResolvedImageURI: root.ResolvedURI, Digest: root.Digest,
				RootDisk: root.Path, RootSize: root.Size, Command: argv, WorkingDir: wd, Env: root.Config.Env}
			if cur.Image.ResolvedImageURI == "" {
				cur.Image.ResolvedImageURI = up.ImageURI
			}
			// Lambda's CodeSha256 of an image function is its digest.
			cur.CodeSha256, cur.CodeSize = strings.TrimPrefix(root.Digest, "sha256:"), 0
			cur.ImageConfigResponse = imageConfigOf(up.ImageConfig)
			cur.LastModified, cur.RevisionID = lastModified(), uuid.NewString()
			published = up.Publish
			return nil
		})
		switch {
		case errors.Is(uerr, errStaleBuild), errors.Is(uerr, store.ErrNotFound):
			return // deleted, or updated again since
		case uerr != nil:
			a.cfg.Log.Error("recording an image build", "function", f.FunctionName, "err", uerr)
			return
		}
		if err != nil {
			a.cfg.Log.Warn("image function failed", "function", f.FunctionName, "image", up.ImageURI, "err", err)
			return
		}
		a.cfg.Log.Info("image function ready", "function", f.FunctionName, "image", up.ImageURI, "digest", root.Digest, "build", time.Since(t0))
		a.cfg.Invoker.Retire(ctx, f.FunctionName)
		if published {
			if _, err := a.cfg.Store.PublishVersion(ctx, f.FunctionName, ""); err != nil {
				a.cfg.Log.Error("publishing an image function", "function", f.FunctionName, "err", err)
			}
		}
	}()
}

// setImageConfig changes an image function's ImageConfig: checked against
// its built root now, or kept for the build in progress. A Failed function
// is built again with it (rebuild: the caller starts that build once the
// change is stored).
func (a *API) setImageConfig(f *store.Function, ic *store.ImageConfig) (rebuild bool, err error) {
	if f.PackageType != store.PackageImage || f.Image == nil {
		return false, lambdaerr.InvalidParameter("ImageConfig is for functions of PackageType Image")
	}
	if up := f.Image.Update; up != nil {
		up.ImageConfig = ic
		if f.State == pendingState {
			f.ImageConfigResponse = imageConfigOf(ic)
			return false, nil
		}
	}
	if f.State == failedState {
		f.State, f.StateReason, f.StateReasonCode = pendingState, creatingReason, creatingReasonCode
		f.LastUpdateStatus = updateInProgress
		f.ImageConfigResponse = imageConfigOf(ic)
		f.Image.Update = &store.ImageUpdate{ID: uuid.NewString(), ImageURI: f.Image.ImageURI, ImageConfig: ic}
		return true, nil
	}
	if a.cfg.Images == nil {
		return false, lambdaerr.InvalidParameter(noImagesMessage)
	}
	root, ok := a.cfg.Images.Lookup(f.Image.Digest)
	if !ok {
		return false, lambdaerr.ResourceConflict("The image %s of this function is no longer in this host's cache: update its code", f.Image.ResolvedImageURI)
	}
	argv, wd := imageCommand(root.Config, ic)
	if err := root.CheckEntryPoint(argv); err != nil {
		if re, ok := rootfs.AsError(err); ok {
			return false, lambdaerr.InvalidParameter("%s", re.Message)
		}
		return false, err
	}
	f.Image.Command, f.Image.WorkingDir = argv, wd
	f.ImageConfigResponse = imageConfigOf(ic)
	return false, nil
}

var errStaleBuild = errors.New("the function changed since its image build started")

// ResumeImageBuilds restarts the image builds a previous daemon left
// unfinished: its Pending functions, and its code updates in progress.
func (a *API) ResumeImageBuilds(ctx context.Context) error {
	if a.cfg.Images == nil {
		return nil
	}
	marker := ""
	for {
		fs, next, err := a.cfg.Store.ListFunctions(ctx, marker, 100)
		if err != nil {
			return err
		}
		for _, f := range fs {
			if f.Image != nil && f.Image.Update != nil {
				a.startImageBuild(f)
			}
		}
		if next == "" {
			return nil
		}
		marker = next
	}
}
