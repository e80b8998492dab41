package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// Resource-based policies (AddPermission, RemovePermission, GetPolicy) are
// stored and returned as Lambda returns them, so that deployment tools that
// manage them work; Hearth does not evaluate them. What Hearth enforces is
// the SigV4 signature with the daemon's keys (auth.go), and AWS_IAM on
// function URLs.

type addPermissionRequest struct {
	StatementID           string `json:"StatementId"`
	Action                string `json:"Action"`
	Principal             string `json:"Principal"`
	SourceArn             string `json:"SourceArn"`
	SourceAccount         string `json:"SourceAccount"`
	EventSourceToken      string `json:"EventSourceToken"`
	PrincipalOrgID        string `json:"PrincipalOrgID"`
	FunctionURLAuthType   string `json:"FunctionUrlAuthType"`
	InvokedViaFunctionURL *bool  `json:"InvokedViaFunctionUrl"`
	RevisionID            string `json:"RevisionId"`
}

var (
	statementIDRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,100}$`)
	actionRE      = regexp.MustCompile(`^(lambda:[*]|lambda:[a-zA-Z]+|[*])$`)
	accountRE     = regexp.MustCompile(`^[0-9]{12}$`)
	principalRE   = regexp.MustCompile(`^[^\s]+$`)
)

// statement makes the policy statement an AddPermission adds to resource,
// as Lambda writes it: the principal as "*", {"AWS": …} or {"Service": …},
// and one condition per restriction the request sent.
func (req addPermissionRequest) statement(resource string) (store.PolicyStatement, error) {
	if !statementIDRE.MatchString(req.StatementID) {
		return store.PolicyStatement{}, lambdaerr.InvalidParameter("StatementId %q must be 1 to 100 letters, digits, hyphens, underscores or periods", req.StatementID)
	}
	if !actionRE.MatchString(req.Action) {
		return store.PolicyStatement{}, lambdaerr.InvalidParameter("Action %q must be lambda:<Operation>, lambda:* or *", req.Action)
	}
	if !principalRE.MatchString(req.Principal) {
		return store.PolicyStatement{}, lambdaerr.InvalidParameter("Principal is required: an account id, an ARN, a service such as s3.amazonaws.com, or *")
	}
	if req.FunctionURLAuthType != "" && req.FunctionURLAuthType != "NONE" && req.FunctionURLAuthType != "AWS_IAM" {
		return store.PolicyStatement{}, lambdaerr.InvalidParameter("FunctionUrlAuthType must be NONE or AWS_IAM")
	}
	s := store.PolicyStatement{Sid: req.StatementID, Effect: "Allow", Action: req.Action, Resource: resource}
	switch p := req.Principal; {
	case p == "*":
		s.Principal = "*"
	case accountRE.MatchString(p):
		s.Principal = map[string]string{"AWS": "arn:aws:iam::" + p + ":root"}
	case len(p) > 4 && p[:4] == "arn:":
		s.Principal = map[string]string{"AWS": p}
	default:
		s.Principal = map[string]string{"Service": p}
	}
	cond := map[string]map[string]string{}
	add := func(op, key, value string) {
		if value == "" {
			return
		}
		if cond[op] == nil {
			cond[op] = map[string]string{}
		}
		cond[op][key] = value
	}
	add("ArnLike", "AWS:SourceArn", req.SourceArn)
	add("StringEquals", "AWS:SourceAccount", req.SourceAccount)
	add("StringEquals", "lambda:EventSourceToken", req.EventSourceToken)
	add("StringEquals", "aws:PrincipalOrgID", req.PrincipalOrgID)
	add("StringEquals", "lambda:FunctionUrlAuthType", req.FunctionURLAuthType)
	if req.InvokedViaFunctionURL != nil && *req.InvokedViaFunctionURL {
		add("Bool", "lambda:InvokedViaFunctionUrl", "true")
	}
	if len(cond) > 0 {
		s.Condition = cond
	}
	return s, nil
}

// policyTarget resolves the qualifier a policy operation names: "" for the
// function itself ($LATEST is the same policy), else a version or an alias
// that must exist. It returns the qualifier the policy is stored under and
// the ARN its statements name.
func (a *API) policyTarget(ctx context.Context, name, qualifier string) (string, string, error) {
	if qualifier == "$LATEST" {
		qualifier = ""
	}
	arn := a.arn(name)
	if _, err := a.cfg.Store.GetFunction(ctx, name); err != nil {
		return "", "", notFound(err, arn)
	}
	if qualifier == "" {
		return "", arn, nil
	}
	var err error
	if _, convErr := strconv.Atoi(qualifier); convErr == nil {
		_, err = a.cfg.Store.GetVersion(ctx, name, qualifier)
	} else {
		_, err = a.cfg.Store.GetAlias(ctx, name, qualifier)
	}
	if err != nil {
		return "", "", lambdaerr.ResourceNotFound("Function not found: %s:%s", arn, qualifier)
	}
	return qualifier, arn + ":" + qualifier, nil
}

// addStatement adds st to p, as AddPermission and AddLayerVersionPermission
// do: refused when revision is given and is not p's, or when st's Sid is
// taken.
func addStatement(p *store.Policy, st store.PolicyStatement, revision string) error {
	if revision != "" && p.RevisionID != "" && revision != p.RevisionID {
		return revisionMismatch()
	}
	for _, s := range p.Document.Statement {
		if s.Sid == st.Sid {
			return lambdaerr.ResourceConflict("The statement id (%s) provided already exists. Please provide a new statement id, or remove the existing statement.", st.Sid)
		}
	}
	p.Document.Statement = append(p.Document.Statement, st)
	return nil
}

// removeStatement removes the statement sid from p, as RemovePermission and
// RemoveLayerVersionPermission do.
func removeStatement(p *store.Policy, sid, revision string) error {
	if len(p.Document.Statement) == 0 {
		return lambdaerr.ResourceNotFound("No policy is associated with the given resource.")
	}
	if revision != "" && revision != p.RevisionID {
		return revisionMismatch()
	}
	for i, s := range p.Document.Statement {
		if s.Sid == sid {
			p.Document.Statement = append(p.Document.Statement[:i], p.Document.Statement[i+1:]...)
			return nil
		}
	}
	return lambdaerr.ResourceNotFound("Statement %s is not found in resource policy.", sid)
}

func revisionMismatch() error {
	return lambdaerr.PreconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetPolicy API to retrieve the latest Revision Id")
}

func (a *API) addPermission(w http.ResponseWriter, r *http.Request) {
	var req addPermissionRequest
	name, qualifier, err := refWithBody(r, &req)
	if err != nil {
		a.writeError(w, err)
		return
	}
	qualifier, resource, err := a.policyTarget(r.Context(), name, qualifier)
	if err != nil {
		a.writeError(w, err)
		return
	}
	st, err := req.statement(resource)
	if err != nil {
		a.writeError(w, err)
		return
	}
	err = a.cfg.Store.UpdatePolicy(r.Context(), name, qualifier, uuid.NewString(), func(p *store.Policy) error {
		return addStatement(p, st, req.RevisionID)
	})
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	b, err := json.Marshal(st)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"Statement": string(b)})
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request) {
	name, qualifier, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	qualifier, _, err = a.policyTarget(r.Context(), name, qualifier)
	if err != nil {
		a.writeError(w, err)
		return
	}
	p, err := a.cfg.Store.GetPolicy(r.Context(), name, qualifier)
	if errors.Is(err, store.ErrNotFound) {
		a.writeError(w, lambdaerr.ResourceNotFound("The resource you requested does not exist."))
		return
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	a.writePolicy(w, p)
}

func (a *API) removePermission(w http.ResponseWriter, r *http.Request) {
	name, qualifier, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	qualifier, _, err = a.policyTarget(r.Context(), name, qualifier)
	if err != nil {
		a.writeError(w, err)
		return
	}
	sid, revision := r.PathValue("sid"), r.URL.Query().Get("RevisionId")
	err = a.cfg.Store.UpdatePolicy(r.Context(), name, qualifier, uuid.NewString(), func(p *store.Policy) error {
		return removeStatement(p, sid, revision)
	})
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writePolicy answers GetPolicy and GetLayerVersionPolicy: the document as
// a JSON string, as Lambda returns it.
func (a *API) writePolicy(w http.ResponseWriter, p store.Policy) {
	doc, err := json.Marshal(p.Document)
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"Policy": string(doc), "RevisionId": p.RevisionID})
}
