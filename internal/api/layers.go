package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// Layers: PublishLayerVersion, GetLayerVersion(ByArn), ListLayers,
// ListLayerVersions, DeleteLayerVersion and the layer version policy
// operations, with Lambda's shapes; and the Layers a function is given.
// A layer's Content.Location is empty, as a function's Code.Location is:
// Hearth serves no presigned downloads.

const (
	// maxFunctionLayers is how many layers a function may use.
	maxFunctionLayers = 5
	// maxUnzippedWithLayers bounds a function's code and all its layers,
	// unpacked.
	maxUnzippedWithLayers = guestimage.MaxUnzippedBytes
	// maxLayerListItems is ListLayers' and ListLayerVersions' MaxItems
	// bound, and their default.
	maxLayerListItems = 50
	// account is the one account in Hearth's ARNs.
	account = "000000000000"
)

var (
	layerNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	// layerArnRE is a layer's ARN; layerVersionArnRE a version's.
	layerArnRE        = regexp.MustCompile(`^arn:[a-zA-Z0-9-]+:lambda:([a-zA-Z0-9-]+):(\d{12}):layer:([a-zA-Z0-9_-]+)$`)
	layerVersionArnRE = regexp.MustCompile(`^arn:[a-zA-Z0-9-]+:lambda:([a-zA-Z0-9-]+):(\d{12}):layer:([a-zA-Z0-9_-]+):([0-9]+)$`)
	layerStatementRE  = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,100}$`)
	layerPrincipalRE  = regexp.MustCompile(`^(\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root)$`)
	organizationRE    = regexp.MustCompile(`^o-[a-z0-9]{10,32}$`)
)

func (a *API) layerArn(name string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:%s:layer:%s", a.cfg.Region, account, name)
}

// layerNotFound is Lambda's answer for a layer version it does not have.
func layerNotFound() error {
	return lambdaerr.ResourceNotFound("The resource you requested does not exist.")
}

// layerName reads the {layer} path value: a name, or the layer's ARN. An
// ARN of another region or account names nothing Hearth has.
func (a *API) layerName(r *http.Request) (string, error) {
	ref := r.PathValue("layer")
	if len(ref) < 1 || len(ref) > 140 {
		return "", lambdaerr.InvalidParameter("LayerName must be 1 to 140 characters (got %d)", len(ref))
	}
	if layerNameRE.MatchString(ref) {
		return ref, nil
	}
	m := layerArnRE.FindStringSubmatch(ref)
	if m == nil {
		return "", lambdaerr.InvalidParameter("LayerName %q must be a layer name (letters, digits, hyphens, underscores) or a layer ARN", ref)
	}
	if m[1] != a.cfg.Region || m[2] != account {
		return "", layerNotFound()
	}
	return m[3], nil
}

// layerVersion reads the {layer} and {version} path values.
func (a *API) layerVersion(r *http.Request) (string, int64, error) {
	name, err := a.layerName(r)
	if err != nil {
		return "", 0, err
	}
	v, err := strconv.ParseInt(r.PathValue("version"), 10, 64)
	if err != nil || v < 1 {
		return "", 0, lambdaerr.InvalidParameter("VersionNumber %q must be a positive number", r.PathValue("version"))
	}
	return name, v, nil
}

// parseLayerVersionArn reads a layer version's ARN; found is false for one
// of another region or account.
func (a *API) parseLayerVersionArn(arn string) (name string, version int64, found bool, err error) {
	m := layerVersionArnRE.FindStringSubmatch(arn)
	if m == nil || len(arn) > 140 {
		return "", 0, false, lambdaerr.InvalidParameter("%q is not a layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION)", arn)
	}
	v, err := strconv.ParseInt(m[4], 10, 64)
	if err != nil || v < 1 {
		return "", 0, false, lambdaerr.InvalidParameter("%q is not a layer version ARN: its version must be a positive number", arn)
	}
	return m[3], v, m[1] == a.cfg.Region && m[2] == account, nil
}

// layerVersionItem is Lambda's LayerVersionsListItem; layerVersionOut what
// PublishLayerVersion and GetLayerVersion answer.
type layerVersionItem struct {
	LayerVersionArn         string   `json:"LayerVersionArn"`
	Version                 int64    `json:"Version"`
	Description             string   `json:"Description"`
	CreatedDate             string   `json:"CreatedDate"`
	CompatibleRuntimes      []string `json:"CompatibleRuntimes,omitempty"`
	CompatibleArchitectures []string `json:"CompatibleArchitectures,omitempty"`
	LicenseInfo             string   `json:"LicenseInfo,omitempty"`
}

type layerContent struct {
	Location   string `json:"Location"`
	CodeSha256 string `json:"CodeSha256"`
	CodeSize   int64  `json:"CodeSize"`
}

type layerVersionOut struct {
	Content  layerContent `json:"Content"`
	LayerArn string       `json:"LayerArn"`
	layerVersionItem
}

func listItem(lv store.LayerVersion) layerVersionItem {
	return layerVersionItem{LayerVersionArn: lv.LayerVersionArn, Version: lv.Version, Description: lv.Description,
		CreatedDate: lv.CreatedDate, CompatibleRuntimes: lv.Runtimes, CompatibleArchitectures: lv.Architectures, LicenseInfo: lv.LicenseInfo}
}

func versionOut(lv store.LayerVersion) layerVersionOut {
	return layerVersionOut{Content: layerContent{CodeSha256: lv.CodeSha256, CodeSize: lv.CodeSize}, LayerArn: lv.LayerArn, layerVersionItem: listItem(lv)}
}

type layerContentInput struct {
	ZipFile  []byte `json:"ZipFile"`
	S3Bucket string `json:"S3Bucket"`
	S3Key    string `json:"S3Key"`
}

type publishLayerRequest struct {
	Content                 *layerContentInput `json:"Content"`
	CompatibleRuntimes      []string           `json:"CompatibleRuntimes"`
	CompatibleArchitectures []string           `json:"CompatibleArchitectures"`
	Description             string             `json:"Description"`
	LicenseInfo             string             `json:"LicenseInfo"`
}

// runtimeKnown is whether r is one of Lambda's runtime identifiers, as
// aws-sdk-go-v2 lists them: a layer may declare any, Hearth runs or not.
func runtimeKnown(r string) bool {
	return slices.Contains(types.Runtime("").Values(), types.Runtime(r))
}

func architectureKnown(arch string) bool {
	return slices.Contains(types.Architecture("").Values(), types.Architecture(arch))
}

func (req *publishLayerRequest) check() error {
	if req.Content == nil || (len(req.Content.ZipFile) == 0 && req.Content.S3Bucket == "") {
		return lambdaerr.InvalidParameter("Content.ZipFile is required")
	}
	if req.Content.S3Bucket != "" || req.Content.S3Key != "" {
		return lambdaerr.InvalidParameter("only Content.ZipFile is supported (S3 comes later)")
	}
	if len(req.CompatibleRuntimes) > 15 {
		return lambdaerr.InvalidParameter("CompatibleRuntimes may hold at most 15 runtimes (got %d)", len(req.CompatibleRuntimes))
	}
	for _, r := range req.CompatibleRuntimes {
		if !runtimeKnown(r) {
			return lambdaerr.InvalidParameter("Value %q in CompatibleRuntimes is not a Lambda runtime identifier (such as python3.11, nodejs18.x or provided.al2023)", r)
		}
	}
	if len(req.CompatibleArchitectures) > 2 {
		return lambdaerr.InvalidParameter("CompatibleArchitectures may hold at most 2 architectures (got %d)", len(req.CompatibleArchitectures))
	}
	for _, arch := range req.CompatibleArchitectures {
		if !architectureKnown(arch) {
			return lambdaerr.InvalidParameter("Value %q in CompatibleArchitectures failed to satisfy constraint: Member must satisfy enum value set: [x86_64, arm64]", arch)
		}
	}
	if len(req.Description) > 256 {
		return lambdaerr.InvalidParameter("Description must be at most 256 characters (got %d)", len(req.Description))
	}
	if len(req.LicenseInfo) > 512 {
		return lambdaerr.InvalidParameter("LicenseInfo must be at most 512 characters (got %d)", len(req.LicenseInfo))
	}
	return nil
}

func (a *API) publishLayerVersion(w http.ResponseWriter, r *http.Request) {
	name, err := a.layerName(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	var req publishLayerRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, err)
		return
	}
	if err := req.check(); err != nil {
		a.writeError(w, err)
		return
	}
	unzipped, err := guestimage.ValidateLayerZip(req.Content.ZipFile)
	if err != nil {
		a.writeError(w, err)
		return
	}
	lv, err := a.cfg.Store.PublishLayerVersion(r.Context(), store.LayerVersion{
		LayerName: name, Description: req.Description, LicenseInfo: req.LicenseInfo, CreatedDate: lastModified(),
		Runtimes: req.CompatibleRuntimes, Architectures: req.CompatibleArchitectures, UnzippedSize: unzipped,
	}, a.layerArn(name), req.Content.ZipFile)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, versionOut(lv))
}

func (a *API) getLayerVersion(w http.ResponseWriter, r *http.Request) {
	name, version, err := a.layerVersion(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	a.writeLayerVersion(w, r.Context(), name, version)
}

func (a *API) writeLayerVersion(w http.ResponseWriter, ctx context.Context, name string, version int64) {
	lv, err := a.cfg.Store.GetLayerVersion(ctx, name, version)
	if errors.Is(err, store.ErrNotFound) {
		err = layerNotFound()
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, versionOut(lv))
}

// layers serves GET /2018-10-31/layers: ListLayers, or GetLayerVersionByArn
// when the query says find=LayerVersion.
func (a *API) layers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("find") != "LayerVersion" {
		a.listLayers(w, r)
		return
	}
	name, version, found, err := a.parseLayerVersionArn(q.Get("Arn"))
	if err != nil {
		a.writeError(w, err)
		return
	}
	if !found {
		a.writeError(w, layerNotFound())
		return
	}
	a.writeLayerVersion(w, r.Context(), name, version)
}

// layerFilter reads ListLayers' and ListLayerVersions' query: the runtime
// and architecture a version must declare, and the page size.
func layerFilter(r *http.Request) (func(store.LayerVersion) bool, int, error) {
	q := r.URL.Query()
	runtime, arch := q.Get("CompatibleRuntime"), q.Get("CompatibleArchitecture")
	if runtime != "" && !runtimeKnown(runtime) {
		return nil, 0, lambdaerr.InvalidParameter("CompatibleRuntime %q is not a Lambda runtime identifier", runtime)
	}
	if arch != "" && !architectureKnown(arch) {
		return nil, 0, lambdaerr.InvalidParameter("Value %q at 'compatibleArchitecture' failed to satisfy constraint: Member must satisfy enum value set: [x86_64, arm64]", arch)
	}
	max := maxLayerListItems
	if s := q.Get("MaxItems"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLayerListItems {
			return nil, 0, lambdaerr.InvalidParameter("MaxItems must be between 1 and %d", maxLayerListItems)
		}
		max = n
	}
	match := func(lv store.LayerVersion) bool {
		return (runtime == "" || slices.Contains(lv.Runtimes, runtime)) && (arch == "" || slices.Contains(lv.Architectures, arch))
	}
	return match, max, nil
}

type layersListItem struct {
	LayerName             string           `json:"LayerName"`
	LayerArn              string           `json:"LayerArn"`
	LatestMatchingVersion layerVersionItem `json:"LatestMatchingVersion"`
}

func (a *API) listLayers(w http.ResponseWriter, r *http.Request) {
	match, max, err := layerFilter(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	lvs, next, err := a.cfg.Store.ListLayers(r.Context(), r.URL.Query().Get("Marker"), max, match)
	if err != nil {
		a.writeError(w, err)
		return
	}
	items := make([]layersListItem, 0, len(lvs))
	for _, lv := range lvs {
		items = append(items, layersListItem{LayerName: lv.LayerName, LayerArn: lv.LayerArn, LatestMatchingVersion: listItem(lv)})
	}
	out := map[string]any{"Layers": items}
	if next != "" {
		out["NextMarker"] = next
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) listLayerVersions(w http.ResponseWriter, r *http.Request) {
	name, err := a.layerName(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	match, max, err := layerFilter(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	// The marker is the last version given: the list runs newest first.
	var after int64
	if m := r.URL.Query().Get("Marker"); m != "" {
		if after, err = strconv.ParseInt(m, 10, 64); err != nil || after < 1 {
			a.writeError(w, lambdaerr.InvalidParameter("Marker %q is not one ListLayerVersions gave", m))
			return
		}
	}
	lvs, err := a.cfg.Store.ListLayerVersions(r.Context(), name)
	if err != nil {
		a.writeError(w, err)
		return
	}
	items := []layerVersionItem{}
	next := ""
	for _, lv := range lvs {
		if (after > 0 && lv.Version >= after) || !match(lv) {
			continue
		}
		if len(items) == max {
			next = strconv.FormatInt(items[max-1].Version, 10)
			break
		}
		items = append(items, listItem(lv))
	}
	out := map[string]any{"LayerVersions": items}
	if next != "" {
		out["NextMarker"] = next
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteLayerVersion deletes a version; one that does not exist is no
// error, as in Lambda. A function that uses the version keeps it (see
// store.PruneLayers).
func (a *API) deleteLayerVersion(w http.ResponseWriter, r *http.Request) {
	name, version, err := a.layerVersion(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := a.cfg.Store.DeleteLayerVersion(r.Context(), name, version); err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type addLayerPermissionRequest struct {
	StatementID    string `json:"StatementId"`
	Action         string `json:"Action"`
	Principal      string `json:"Principal"`
	OrganizationID string `json:"OrganizationId"`
}

// statement is the statement AddLayerVersionPermission adds, as Lambda
// writes it.
func (req addLayerPermissionRequest) statement(resource string) (store.PolicyStatement, error) {
	if !layerStatementRE.MatchString(req.StatementID) {
		return store.PolicyStatement{}, lambdaerr.InvalidParameter("StatementId %q must be 1 to 100 letters, digits, hyphens or underscores", req.StatementID)
	}
	if req.Action != "lambda:GetLayerVersion" {
		return store.PolicyStatement{}, lambdaerr.InvalidParameter("Action %q is not allowed on a layer version: the one action is lambda:GetLayerVersion", req.Action)
	}
	if !layerPrincipalRE.MatchString(req.Principal) {
		return store.PolicyStatement{}, lambdaerr.InvalidParameter("Principal %q must be an account id, arn:aws:iam::ACCOUNT:root or *", req.Principal)
	}
	if req.OrganizationID != "" && (req.Principal != "*" || !organizationRE.MatchString(req.OrganizationID)) {
		return store.PolicyStatement{}, lambdaerr.InvalidParameter("OrganizationId must be o- and 10 to 32 lowercase letters or digits, with Principal *")
	}
	s := store.PolicyStatement{Sid: req.StatementID, Effect: "Allow", Action: req.Action, Resource: resource, Principal: "*"}
	switch p := req.Principal; {
	case accountRE.MatchString(p):
		s.Principal = map[string]string{"AWS": "arn:aws:iam::" + p + ":root"}
	case p != "*":
		s.Principal = map[string]string{"AWS": p}
	}
	if req.OrganizationID != "" {
		s.Condition = map[string]map[string]string{"StringEquals": {"aws:PrincipalOrgID": req.OrganizationID}}
	}
	return s, nil
}

func (a *API) addLayerVersionPermission(w http.ResponseWriter, r *http.Request) {
	name, version, err := a.layerVersion(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	var req addLayerPermissionRequest
	if err := decode(r, &req); err != nil {
		a.writeError(w, err)
		return
	}
	st, err := req.statement(fmt.Sprintf("%s:%d", a.layerArn(name), version))
	if err != nil {
		a.writeError(w, err)
		return
	}
	p, err := a.cfg.Store.UpdateLayerVersionPolicy(r.Context(), name, version, uuid.NewString(), func(p *store.Policy) error {
		return addStatement(p, st, r.URL.Query().Get("RevisionId"))
	})
	if errors.Is(err, store.ErrNotFound) {
		err = layerNotFound()
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	b, err := json.Marshal(st)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"Statement": string(b), "RevisionId": p.RevisionID})
}

func (a *API) getLayerVersionPolicy(w http.ResponseWriter, r *http.Request) {
	name, version, err := a.layerVersion(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	p, err := a.cfg.Store.GetLayerVersionPolicy(r.Context(), name, version)
	if errors.Is(err, store.ErrNotFound) {
		if _, getErr := a.cfg.Store.GetLayerVersion(r.Context(), name, version); getErr != nil {
			err = layerNotFound()
		} else {
			err = lambdaerr.ResourceNotFound("No policy is associated with the given resource.")
		}
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	a.writePolicy(w, p)
}

func (a *API) removeLayerVersionPermission(w http.ResponseWriter, r *http.Request) {
	name, version, err := a.layerVersion(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	sid, revision := r.PathValue("sid"), r.URL.Query().Get("RevisionId")
	_, err = a.cfg.Store.UpdateLayerVersionPolicy(r.Context(), name, version, uuid.NewString(), func(p *store.Policy) error {
		return removeStatement(p, sid, revision)
	})
	if errors.Is(err, store.ErrNotFound) {
		err = layerNotFound()
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// functionLayers checks the layer version ARNs a function is given (at
// most 5, each existing, no layer twice, and with the code unpacked no
// more than 250 MB) and returns them as the function keeps them. codeSize
// is the function's code unpacked.
func (a *API) functionLayers(ctx context.Context, arns []string, codeSize int64) ([]store.Layer, error) {
	if len(arns) > maxFunctionLayers {
		return nil, lambdaerr.InvalidParameter("Cannot reference more than %d layers (got %d).", maxFunctionLayers, len(arns))
	}
	var out []store.Layer
	seen := map[string]string{}
	total := codeSize
	for _, arn := range arns {
		name, version, found, err := a.parseLayerVersionArn(arn)
		if err != nil {
			return nil, err
		}
		if other, ok := seen[name]; ok {
			if other == arn {
				return nil, lambdaerr.InvalidParameter("Layer %s is referenced more than once.", arn)
			}
			return nil, lambdaerr.InvalidParameter("Two different versions of the same layer are not allowed to be referenced in the same function. %s and %s", other, arn)
		}
		seen[name] = arn
		var lv store.LayerVersion
		if found {
			lv, err = a.cfg.Store.GetLayerVersion(ctx, name, version)
		}
		if !found || errors.Is(err, store.ErrNotFound) {
			return nil, lambdaerr.InvalidParameter("Layer version %s does not exist.", arn)
		}
		if err != nil {
			return nil, err
		}
		total += lv.UnzippedSize
		out = append(out, store.Layer{Arn: lv.LayerVersionArn, CodeSize: lv.CodeSize})
	}
	if total > maxUnzippedWithLayers {
		return nil, tooLargeWithLayers(total)
	}
	return out, nil
}

func tooLargeWithLayers(total int64) error {
	return lambdaerr.InvalidParameter("Function code combined with layers exceeds the maximum allowed size of %d bytes. The actual size is %d bytes.", maxUnzippedWithLayers, total)
}

// storedCodeSize is the unpacked size of a function's stored zip
// (fetched from the hosts' store when another host took it).
func (a *API) storedCodeSize(ctx context.Context, f store.Function) (int64, error) {
	path, err := a.cfg.Store.FetchCode(ctx, f.CodeDigest())
	if err != nil {
		return 0, fmt.Errorf("the code of %s: %w", f.FunctionName, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("the code of %s: %w", f.FunctionName, err)
	}
	return guestimage.UnzippedSize(data)
}

// checkCodeWithLayers checks that new code for f, unpacked, fits with the
// layers f has (deleted versions included: it keeps them).
func (a *API) checkCodeWithLayers(ctx context.Context, f store.Function, zip []byte) error {
	if len(f.Layers) == 0 {
		return nil
	}
	total, err := guestimage.UnzippedSize(zip)
	if err != nil {
		return err
	}
	lvs, err := a.cfg.Store.FunctionLayers(ctx, f)
	if err != nil {
		return err
	}
	for _, lv := range lvs {
		total += lv.UnzippedSize
	}
	if total > maxUnzippedWithLayers {
		return tooLargeWithLayers(total)
	}
	return nil
}

// pruneLayers lets go of deleted layer versions that a function stopped
// using; a failure costs only disk, so it is logged, not answered.
func (a *API) pruneLayers(ctx context.Context) {
	if err := a.cfg.Store.PruneLayers(ctx); err != nil {
		a.cfg.Log.Warn("prune deleted layer versions", "err", err)
	}
}
