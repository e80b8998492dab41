package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// Runtimes Hearth runs: the OS-only runtimes, whose bootstrap is the
// function's own, and the managed ones (internal/runtimes), whose root
// brings the runtime that loads the function's Handler.
var (
	runtimes        = map[string]bool{"provided.al2023": true, "provided.al2": true, "provided": true, "python3.11": true, "nodejs18.x": true}
	managedRuntimes = map[string]bool{"python3.11": true, "nodejs18.x": true}
)

// functionRef reads the {name} path value and the Qualifier query
// parameter.
func functionRef(r *http.Request) (name, qualifier string, err error) {
	return parseFunctionRef(r.PathValue("name"), r.URL.Query().Get("Qualifier"))
}

// parseFunctionRef reads a function as Lambda's FunctionName takes it: a
// name, "name:qualifier", a partial ARN ("123456789012:function:name") or
// a function ARN, each optionally qualified; query is the Qualifier query
// parameter, which must agree with a qualifier in the name.
func parseFunctionRef(ref, query string) (name, qualifier string, err error) {
	name = ref
	if strings.HasPrefix(name, "arn:") || strings.Contains(name, ":function:") {
		_, after, found := strings.Cut(name, ":function:")
		if !found || (strings.HasPrefix(name, "arn:") && !strings.HasPrefix(name, "arn:aws:lambda:")) {
			return "", "", lambdaerr.InvalidParameter("%s is not a function ARN", ref)
		}
		name = after
	}
	if n, q, ok := strings.Cut(name, ":"); ok {
		name, qualifier = n, q
		if qualifier == "" || strings.Contains(qualifier, ":") {
			return "", "", lambdaerr.InvalidParameter("%q is not a function name, a qualified name or a function ARN", ref)
		}
	}
	if query != "" {
		if qualifier != "" && qualifier != query {
			return "", "", lambdaerr.InvalidParameter("The derived qualifier from the function name does not match the specified qualifier.")
		}
		qualifier = query
	}
	if !nameRE.MatchString(name) {
		return "", "", lambdaerr.InvalidParameter("function name %q must be 1 to 64 letters, digits, hyphens or underscores", name)
	}
	return name, qualifier, nil
}

type functionCode struct {
	ZipFile  []byte `json:"ZipFile"`
	ImageURI string `json:"ImageUri"`
	S3Bucket string `json:"S3Bucket"`
}

type createRequest struct {
	FunctionName     string                  `json:"FunctionName"`
	Runtime          string                  `json:"Runtime"`
	Role             string                  `json:"Role"`
	Handler          string                  `json:"Handler"`
	Description      string                  `json:"Description"`
	MemorySize       *int                    `json:"MemorySize"`
	Timeout          *int                    `json:"Timeout"`
	Environment      *store.Environment      `json:"Environment"`
	Code             functionCode            `json:"Code"`
	Publish          bool                    `json:"Publish"`
	PackageType      string                  `json:"PackageType"`
	Tags             map[string]string       `json:"Tags"`
	Architectures    []string                `json:"Architectures"`
	EphemeralStorage *store.EphemeralStorage `json:"EphemeralStorage"`
	LoggingConfig    *store.LoggingConfig    `json:"LoggingConfig"`
	SnapStart        *store.SnapStart        `json:"SnapStart"`
	Layers           []string                `json:"Layers"`
	ImageConfig      *store.ImageConfig      `json:"ImageConfig"`
	DeadLetterConfig *store.DeadLetterConfig `json:"DeadLetterConfig"`
}

// check checks what CreateFunction sends beyond the name and the code, and
// returns the logging configuration to store.
func (req *createRequest) check() (*store.LoggingConfig, *store.SnapStart, error) {
	if err := checkSettings(req.Runtime, req.MemorySize, req.Timeout, req.Environment); err != nil {
		return nil, nil, err
	}
	if err := checkArchitectures(req.Architectures); err != nil {
		return nil, nil, err
	}
	if err := checkEphemeralStorage(req.EphemeralStorage); err != nil {
		return nil, nil, err
	}
	if err := checkTags(req.Tags); err != nil {
		return nil, nil, err
	}
	if len(req.Tags) > maxTags {
		return nil, nil, tooManyTags(len(req.Tags))
	}
	logging, err := mergeLogging(req.FunctionName, nil, req.LoggingConfig)
	if err != nil {
		return nil, nil, err
	}
	snap, err := checkSnapStart(req.SnapStart)
	return logging, snap, err
}

func checkSettings(runtime string, memory, timeout *int, env *store.Environment) error {
	if runtime != "" && !runtimes[runtime] {
		return lambdaerr.InvalidParameter("Runtime %q is not supported: Hearth runs python3.11 and nodejs18.x (a Handler in the zip), and provided.al2023, provided.al2 and provided (a bootstrap executable in the zip)", runtime)
	}
	if memory != nil && (*memory < 128 || *memory > 10240) {
		return lambdaerr.InvalidParameter("MemorySize must be between 128 and 10240 MB (got %d)", *memory)
	}
	if timeout != nil && (*timeout < 1 || *timeout > 900) {
		return lambdaerr.InvalidParameter("Timeout must be between 1 and 900 seconds (got %d)", *timeout)
	}
	if env != nil {
		size := 0
		for k, v := range env.Variables {
			size += len(k) + len(v)
		}
		if size > 4096 {
			return lambdaerr.InvalidParameter("Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit (%d bytes)", size)
		}
	}
	return nil
}

// checkManaged checks what a function on a managed runtime needs beyond
// its settings: a Handler, as Lambda asks, and the runtime's root on this
// host, which is refused here rather than at the first invocation.
func (a *API) checkManaged(runtime, handler string) error {
	if !managedRuntimes[runtime] {
		return nil
	}
	if handler == "" {
		return lambdaerr.InvalidParameter("The Handler is required for the runtime %s (module.function for Python, file.export for Node.js)", runtime)
	}
	if a.cfg.RuntimeRoot == nil {
		return nil
	}
	if err := a.cfg.RuntimeRoot(runtime); err != nil {
		return lambdaerr.InvalidParameter("Runtime %s cannot run on this host: %v", runtime, err)
	}
	return nil
}

// putCode validates and stores a zip, returning its digest and size. The
// code of a managed runtime has no bootstrap: its root brings one.
func (a *API) putCode(code functionCode, runtime string) (string, int64, error) {
	if code.ImageURI != "" || code.S3Bucket != "" {
		return "", 0, lambdaerr.InvalidParameter("a function of PackageType Zip takes Code.ZipFile (Code.ImageUri needs PackageType Image; S3 is not supported)")
	}
	if len(code.ZipFile) == 0 {
		return "", 0, lambdaerr.InvalidParameter("Code.ZipFile is required")
	}
	if validate := a.cfg.ValidateCode; validate != nil {
		if managedRuntimes[runtime] {
			validate = guestimage.ValidatePackageZip
		}
		if err := validate(code.ZipFile); err != nil {
			return "", 0, err
		}
	}
	b64, _, err := a.cfg.Store.PutCode(code.ZipFile)
	return b64, int64(len(code.ZipFile)), err
}

func lastModified() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000-0700") }

func (a *API) arn(name string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:000000000000:function:%s", a.cfg.Region, name)
}

func (a *API) createFunction(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, err)
		return
	}
	if !nameRE.MatchString(req.FunctionName) {
		a.writeError(w, lambdaerr.InvalidParameter("FunctionName %q must be 1 to 64 letters, digits, hyphens or underscores", req.FunctionName))
		return
	}
	image := req.PackageType == store.PackageImage
	switch {
	case req.PackageType != "" && req.PackageType != store.PackageZip && !image:
		a.writeError(w, lambdaerr.InvalidParameter("Value '%s' at 'packageType' failed to satisfy constraint: Member must satisfy enum value set: [Zip, Image]", req.PackageType))
		return
	case image:
		// An image brings its own runtime; Handler is for zips.
		req.Runtime = ""
	case req.Runtime == "":
		req.Runtime = "provided.al2023"
	}
	logging, snap, err := req.check()
	if err == nil {
		err = a.checkManaged(req.Runtime, req.Handler)
	}
	if err == nil {
		err = a.checkDeadLetter(req.DeadLetterConfig)
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	if image && len(req.Layers) > 0 {
		// As Lambda: an image carries its dependencies itself.
		err = lambdaerr.InvalidParameter("Layers are not supported for functions with a container image.")
	} else if image {
		err = a.checkImageCode(req.Code, req.ImageConfig)
	} else if req.ImageConfig != nil {
		err = lambdaerr.InvalidParameter("ImageConfig is for functions of PackageType Image")
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	if _, err := a.cfg.Store.GetFunction(r.Context(), req.FunctionName); err == nil {
		a.writeError(w, lambdaerr.ResourceConflict("Function already exist: %s", req.FunctionName))
		return
	}
	var sum string
	var size int64
	if !image {
		if sum, size, err = a.putCode(req.Code, req.Runtime); err != nil {
			a.writeError(w, err)
			return
		}
	}
	var layers []store.Layer
	if len(req.Layers) > 0 {
		codeSize, err := guestimage.UnzippedSize(req.Code.ZipFile)
		if err == nil {
			layers, err = a.functionLayers(r.Context(), req.Layers, codeSize)
		}
		if err == nil {
			err = a.checkLayersTogether(r.Context(), req.FunctionName, layers, codeSize)
		}
		if err != nil {
			a.writeError(w, err)
			return
		}
	}
	f := store.Function{
		FunctionName: req.FunctionName, FunctionArn: a.arn(req.FunctionName), Runtime: req.Runtime, Role: req.Role,
		Handler: req.Handler, Description: req.Description, MemorySize: 128, Timeout: 3,
		CodeSize: size, CodeSha256: sum, Version: "$LATEST", LastModified: lastModified(), RevisionID: uuid.NewString(),
		State: "Active", LastUpdateStatus: "Successful", PackageType: "Zip", Architectures: []string{hostArchitecture},
		Environment: req.Environment, IdlePolicy: a.cfg.IdlePolicy, NetworkPolicy: a.cfg.NetworkPolicy,
		EphemeralStorage: req.EphemeralStorage, LoggingConfig: logging, SnapStart: snap, Layers: layers,
		DeadLetterConfig: deadLetterOf(req.DeadLetterConfig),
	}
	if req.MemorySize != nil {
		f.MemorySize = *req.MemorySize
	}
	if req.Timeout != nil {
		f.Timeout = *req.Timeout
	}
	if image {
		// Pending until its root is built, as Lambda's "optimization".
		f.PackageType, f.State, f.StateReason, f.StateReasonCode = store.PackageImage, pendingState, creatingReason, creatingReasonCode
		f.LastUpdateStatus = updateInProgress
		f.ImageConfigResponse = imageConfigOf(req.ImageConfig)
		f.Image = &store.FunctionImage{ImageURI: req.Code.ImageURI, Update: &store.ImageUpdate{
			ID: uuid.NewString(), ImageURI: req.Code.ImageURI, ImageConfig: req.ImageConfig, Publish: req.Publish}}
		req.Publish = false // once built
	}
	if err := a.cfg.Store.CreateFunction(r.Context(), f); err != nil {
		a.writeError(w, err)
		return
	}
	if len(req.Tags) > 0 {
		err := a.cfg.Store.UpdateTags(r.Context(), f.FunctionName, func(t map[string]string) error {
			for k, v := range req.Tags {
				t[k] = v
			}
			return nil
		})
		if err != nil {
			a.writeError(w, err)
			return
		}
	}
	if f, err = a.cfg.Store.GetFunction(r.Context(), f.FunctionName); err != nil {
		a.writeError(w, err)
		return
	}
	if req.Publish {
		if f, err = a.cfg.Store.PublishVersion(r.Context(), f.FunctionName, ""); err != nil {
			a.writeError(w, err)
			return
		}
	}
	if image {
		a.startImageBuild(f)
	}
	writeJSON(w, http.StatusCreated, f)
}

func (a *API) listFunctions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	max := 50
	if s := q.Get("MaxItems"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			a.writeError(w, lambdaerr.InvalidParameter("MaxItems must be between 1 and 10000"))
			return
		}
		max = n
	}
	fs, next, err := a.cfg.Store.ListFunctions(r.Context(), q.Get("Marker"), max)
	if err != nil {
		a.writeError(w, err)
		return
	}
	out := map[string]any{"Functions": fs}
	if fs == nil {
		out["Functions"] = []store.Function{}
	}
	if next != "" {
		out["NextMarker"] = next
	}
	writeJSON(w, http.StatusOK, out)
}

// resolve finds the function a request names, at its qualifier (a version
// or an alias).
func (a *API) resolve(r *http.Request) (store.Function, error) {
	name, qualifier, err := functionRef(r)
	if err != nil {
		return store.Function{}, err
	}
	f, err := a.cfg.Store.Resolve(r.Context(), name, qualifier)
	if errors.Is(err, store.ErrNotFound) && a.cfg.Sync != nil {
		// Read through this host right after a write through another:
		// once caught up with the shared configuration, a miss is a miss.
		if cerr := a.cfg.Sync.CatchUp(r.Context()); cerr != nil {
			a.cfg.Log.Warn("catching up with the shared configuration", "function", name, "err", cerr)
		}
		f, err = a.cfg.Store.Resolve(r.Context(), name, qualifier)
	}
	switch {
	case errors.Is(err, store.ErrNotFound) && qualifier != "":
		return f, lambdaerr.ResourceNotFound("Function not found: %s:%s", a.arn(name), qualifier)
	case errors.Is(err, store.ErrNotFound):
		return f, lambdaerr.ResourceNotFound("Function not found: %s", a.arn(name))
	}
	return f, err
}

func (a *API) getFunction(w http.ResponseWriter, r *http.Request) {
	f, err := a.resolve(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	code := map[string]string{"RepositoryType": "Hearth", "Location": ""}
	if f.PackageType == store.PackageImage && f.Image != nil {
		code = map[string]string{"RepositoryType": imageRepositoryType, "ImageUri": f.Image.ImageURI}
		if f.Image.ResolvedImageURI != "" {
			code["ResolvedImageUri"] = f.Image.ResolvedImageURI
		}
	}
	out := map[string]any{"Configuration": f, "Code": code}
	tags, err := a.cfg.Store.Tags(r.Context(), f.FunctionName)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if len(tags) > 0 {
		out["Tags"] = tags
	}
	if n, err := a.cfg.Store.Concurrency(r.Context(), f.FunctionName); err == nil && n != nil {
		out["Concurrency"] = map[string]int{"ReservedConcurrentExecutions": *n}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getFunctionConfiguration(w http.ResponseWriter, r *http.Request) {
	f, err := a.resolve(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

type updateConfigRequest struct {
	Runtime          string                  `json:"Runtime"`
	Handler          *string                 `json:"Handler"`
	Description      *string                 `json:"Description"`
	MemorySize       *int                    `json:"MemorySize"`
	Timeout          *int                    `json:"Timeout"`
	Environment      *store.Environment      `json:"Environment"`
	Role             *string                 `json:"Role"`
	RevisionID       string                  `json:"RevisionId"`
	EphemeralStorage *store.EphemeralStorage `json:"EphemeralStorage"`
	LoggingConfig    *store.LoggingConfig    `json:"LoggingConfig"`
	SnapStart        *store.SnapStart        `json:"SnapStart"`
	// Layers replaces the function's layers when sent ([] removes them).
	Layers      *[]string          `json:"Layers"`
	ImageConfig *store.ImageConfig `json:"ImageConfig"`
	// DeadLetterConfig replaces the function's when sent (an empty
	// TargetArn removes it).
	DeadLetterConfig *store.DeadLetterConfig `json:"DeadLetterConfig"`
}

// check checks what UpdateFunctionConfiguration sends.
func (req *updateConfigRequest) check() error {
	if err := checkSettings(req.Runtime, req.MemorySize, req.Timeout, req.Environment); err != nil {
		return err
	}
	if err := checkEphemeralStorage(req.EphemeralStorage); err != nil {
		return err
	}
	if err := checkImageConfig(req.ImageConfig); err != nil {
		return err
	}
	_, err := checkSnapStart(req.SnapStart)
	return err
}

func (a *API) updateFunctionConfiguration(w http.ResponseWriter, r *http.Request) {
	var req updateConfigRequest
	name, _, err := refWithBody(r, &req)
	if err != nil {
		a.writeError(w, err)
		return
	}
	err = req.check()
	if err == nil {
		err = a.checkDeadLetter(req.DeadLetterConfig)
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	var layers []store.Layer
	if req.Layers != nil && len(*req.Layers) > 0 {
		cur, err := a.cfg.Store.GetFunction(r.Context(), name)
		if err != nil {
			a.writeError(w, notFound(err, a.arn(name)))
			return
		}
		codeSize, err := a.storedCodeSize(r.Context(), cur)
		if err == nil {
			layers, err = a.functionLayers(r.Context(), *req.Layers, codeSize)
		}
		if err == nil {
			err = a.checkLayersTogether(r.Context(), name, layers, codeSize)
		}
		if err != nil {
			a.writeError(w, err)
			return
		}
	}
	rebuild := false
	f, err := a.cfg.Store.UpdateFunction(r.Context(), name, func(f *store.Function) error {
		if req.RevisionID != "" && req.RevisionID != f.RevisionID {
			return lambdaerr.PreconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
		}
		logging, err := mergeLogging(f.FunctionName, f.LoggingConfig, req.LoggingConfig)
		if err != nil {
			return err
		}
		f.LoggingConfig = logging
		if req.EphemeralStorage != nil {
			f.EphemeralStorage = req.EphemeralStorage
		}
		if req.SnapStart != nil {
			f.SnapStart, _ = checkSnapStart(req.SnapStart)
		}
		if req.Runtime != "" {
			f.Runtime = req.Runtime
		}
		if req.Handler != nil {
			f.Handler = *req.Handler
		}
		if req.Runtime != "" || req.Handler != nil {
			if err := a.checkManaged(f.Runtime, f.Handler); err != nil {
				return err
			}
		}
		if req.Description != nil {
			f.Description = *req.Description
		}
		if req.MemorySize != nil {
			f.MemorySize = *req.MemorySize
		}
		if req.Timeout != nil {
			f.Timeout = *req.Timeout
		}
		if req.Environment != nil {
			f.Environment = req.Environment
		}
		if req.Role != nil {
			f.Role = *req.Role
		}
		if req.Layers != nil {
			f.Layers = layers
		}
		if req.DeadLetterConfig != nil {
			f.DeadLetterConfig = deadLetterOf(req.DeadLetterConfig)
		}
		if req.ImageConfig != nil {
			if rebuild, err = a.setImageConfig(f, req.ImageConfig); err != nil {
				return err
			}
		}
		f.LastModified, f.RevisionID = lastModified(), uuid.NewString()
		return nil
	})
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	if req.Layers != nil {
		a.pruneLayers(r.Context())
	}
	if rebuild {
		a.startImageBuild(f)
	}
	a.cfg.Invoker.Retire(r.Context(), name)
	writeJSON(w, http.StatusOK, f)
}

type updateCodeRequest struct {
	ZipFile       []byte   `json:"ZipFile"`
	ImageURI      string   `json:"ImageUri"`
	S3Bucket      string   `json:"S3Bucket"`
	Publish       bool     `json:"Publish"`
	Architectures []string `json:"Architectures"`
	RevisionID    string   `json:"RevisionId"`
}

func (a *API) updateFunctionCode(w http.ResponseWriter, r *http.Request) {
	var req updateCodeRequest
	name, _, err := refWithBody(r, &req)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := checkArchitectures(req.Architectures); err != nil {
		a.writeError(w, err)
		return
	}
	cur, err := a.cfg.Store.GetFunction(r.Context(), name)
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	switch {
	case cur.PackageType == store.PackageImage && req.ImageURI == "":
		a.writeError(w, lambdaerr.InvalidParameter(zipOnImageMessage))
		return
	case cur.PackageType != store.PackageImage && req.ImageURI != "":
		a.writeError(w, lambdaerr.InvalidParameter(imageOnZipMessage))
		return
	case cur.PackageType == store.PackageImage:
		a.updateImageCode(w, r, name, req)
		return
	}
	sum, size, err := a.putCode(functionCode{ZipFile: req.ZipFile, ImageURI: req.ImageURI, S3Bucket: req.S3Bucket}, cur.Runtime)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := a.checkCodeWithLayers(r.Context(), cur, req.ZipFile); err != nil {
		a.writeError(w, err)
		return
	}
	f, err := a.cfg.Store.UpdateFunction(r.Context(), name, func(f *store.Function) error {
		if req.RevisionID != "" && req.RevisionID != f.RevisionID {
			return lambdaerr.PreconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
		}
		f.CodeSha256, f.CodeSize = sum, size
		f.LastModified, f.RevisionID = lastModified(), uuid.NewString()
		return nil
	})
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	a.cfg.Invoker.Retire(r.Context(), name)
	if req.Publish {
		if f, err = a.cfg.Store.PublishVersion(r.Context(), name, ""); err != nil {
			a.writeError(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, f)
}

// updateImageCode starts building the new image of an image function: the
// function keeps running its current image, with LastUpdateStatus
// InProgress, until the new one is ready.
func (a *API) updateImageCode(w http.ResponseWriter, r *http.Request, name string, req updateCodeRequest) {
	if err := a.checkImageCode(functionCode{ImageURI: req.ImageURI, ZipFile: req.ZipFile, S3Bucket: req.S3Bucket}, nil); err != nil {
		a.writeError(w, err)
		return
	}
	f, err := a.cfg.Store.UpdateFunction(r.Context(), name, func(f *store.Function) error {
		if req.RevisionID != "" && req.RevisionID != f.RevisionID {
			return lambdaerr.PreconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
		}
		if f.State == pendingState {
			return lambdaerr.ResourceConflict("The operation cannot be performed at this time. An update is in progress for resource: %s", f.FunctionArn)
		}
		var ic *store.ImageConfig
		if f.ImageConfigResponse != nil {
			ic = f.ImageConfigResponse.ImageConfig
		}
		if f.Image == nil {
			f.Image = &store.FunctionImage{}
		}
		f.Image.Update = &store.ImageUpdate{ID: uuid.NewString(), ImageURI: req.ImageURI, ImageConfig: ic, Publish: req.Publish}
		f.LastUpdateStatus, f.LastUpdateStatusReason, f.LastUpdateStatusReasonCode = updateInProgress, updatingReason, updatingReasonCode
		return nil
	})
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	a.startImageBuild(f)
	writeJSON(w, http.StatusOK, f)
}

// checkImageCode checks an image function's Code and ImageConfig.
func (a *API) checkImageCode(code functionCode, ic *store.ImageConfig) error {
	if a.cfg.Images == nil {
		return lambdaerr.InvalidParameter(noImagesMessage)
	}
	if len(code.ZipFile) > 0 || code.S3Bucket != "" {
		return lambdaerr.InvalidParameter("Please provide ImageUri only for a function of PackageType Image")
	}
	if code.ImageURI == "" {
		return lambdaerr.InvalidParameter("Code.ImageUri is required for a function of PackageType Image")
	}
	if err := checkImageURI(code.ImageURI); err != nil {
		return err
	}
	return checkImageConfig(ic)
}

func (a *API) deleteFunction(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := a.cfg.Store.DeleteFunction(r.Context(), name); err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	a.pruneLayers(r.Context())
	if err := a.cfg.Store.DeleteEventInvokeConfig(r.Context(), name, "*"); err != nil {
		a.cfg.Log.Warn("deleting a function's event invoke configs", "function", name, "err", err)
	}
	a.cfg.Invoker.Retire(r.Context(), name)
	w.WriteHeader(http.StatusNoContent)
}

// notFound words a store miss as Lambda does.
func notFound(err error, arn string) error {
	if _, ok := lambdaerr.As(err); ok {
		return err
	}
	if strings.Contains(err.Error(), "not found") {
		return lambdaerr.ResourceNotFound("Function not found: %s", arn)
	}
	return err
}

// checkLayersTogether refuses layers that are each sound but cannot be
// unpacked together into /opt (an entry of a later layer under a symlink
// or a file of an earlier one), with the answer the function's first
// invocation would otherwise get: its image could never be built. One
// layer was checked when it was published.
func (a *API) checkLayersTogether(ctx context.Context, fn string, layers []store.Layer, codeSize int64) error {
	if len(layers) < 2 {
		return nil
	}
	lvs, err := a.cfg.Store.FunctionLayers(ctx, store.Function{FunctionName: fn, Layers: layers})
	if err != nil {
		return err
	}
	codes := make([]*guestimage.Code, len(lvs))
	for i, lv := range lvs {
		// Fetched from the hosts' store when another host published it.
		path, err := a.cfg.Store.FetchLayer(ctx, lv.Digest)
		if err != nil {
			return fmt.Errorf("layer %s: %w", lv.LayerVersionArn, err)
		}
		if codes[i], err = guestimage.ReadLayerZipFile(path); err != nil {
			return fmt.Errorf("layer %s: %w", lv.LayerVersionArn, err)
		}
	}
	return guestimage.CheckLayers(codeSize, codes)
}
