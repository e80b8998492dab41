package api

import (
	"net/http"
	"regexp"
	"strconv"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

func (a *API) publishVersion(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	var body struct {
		Description string `json:"Description"`
	}
	if r.ContentLength > 0 {
		if err := decode(r, &body); err != nil {
			a.writeError(w, err)
			return
		}
	}
	f, err := a.cfg.Store.PublishVersion(r.Context(), name, body.Description)
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	if err := a.cfg.Invoker.Published(r.Context(), name, f.Version); err != nil {
		// The version is published; only its head start is lost.
		a.cfg.Log.Warn("readying a published version", "function", name, "version", f.Version, "err", err)
	}
	writeJSON(w, http.StatusCreated, f)
}

func (a *API) listVersions(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	vs, err := a.cfg.Store.ListVersions(r.Context(), name)
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"Versions": vs})
}

var aliasRE = regexp.MustCompile(`^(?i)[a-z0-9_-]*[a-z_-][a-z0-9_-]*$`)

type aliasBody struct {
	Name            string `json:"Name"`
	FunctionVersion string `json:"FunctionVersion"`
	Description     string `json:"Description"`
}

func (a *API) aliasOut(name string, al store.Alias) store.Alias {
	al.AliasArn = a.arn(name) + ":" + al.Name
	return al
}

// checkVersion makes sure an alias points at a version that exists.
func (a *API) checkVersion(r *http.Request, name, version string) error {
	if version != "$LATEST" {
		if _, err := strconv.Atoi(version); err != nil {
			return lambdaerr.InvalidParameter("FunctionVersion must be $LATEST or a version number")
		}
	}
	if _, err := a.cfg.Store.GetVersion(r.Context(), name, version); err != nil {
		return lambdaerr.ResourceNotFound("Function not found: %s:%s", a.arn(name), version)
	}
	return nil
}

func (a *API) createAlias(w http.ResponseWriter, r *http.Request) {
	var body aliasBody
	name, _, err := refWithBody(r, &body)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if !aliasRE.MatchString(body.Name) || len(body.Name) > 128 {
		a.writeError(w, lambdaerr.InvalidParameter("alias name %q is not valid", body.Name))
		return
	}
	if err := a.checkVersion(r, name, body.FunctionVersion); err != nil {
		a.writeError(w, err)
		return
	}
	al := store.Alias{Name: body.Name, FunctionVersion: body.FunctionVersion, Description: body.Description, RevisionID: uuid.NewString()}
	if err := a.cfg.Store.PutAlias(r.Context(), name, al, false); err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, a.aliasOut(name, al))
}

func (a *API) listAliases(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	als, err := a.cfg.Store.ListAliases(r.Context(), name)
	if err != nil {
		a.writeError(w, err)
		return
	}
	out := make([]store.Alias, 0, len(als))
	for _, al := range als {
		out = append(out, a.aliasOut(name, al))
	}
	writeJSON(w, http.StatusOK, map[string]any{"Aliases": out})
}

func (a *API) getAlias(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	al, err := a.cfg.Store.GetAlias(r.Context(), name, r.PathValue("alias"))
	if err != nil {
		a.writeError(w, lambdaerr.ResourceNotFound("Alias not found: %s:%s", a.arn(name), r.PathValue("alias")))
		return
	}
	writeJSON(w, http.StatusOK, a.aliasOut(name, al))
}

func (a *API) updateAlias(w http.ResponseWriter, r *http.Request) {
	var body aliasBody
	name, _, err := refWithBody(r, &body)
	if err != nil {
		a.writeError(w, err)
		return
	}
	al, err := a.cfg.Store.GetAlias(r.Context(), name, r.PathValue("alias"))
	if err != nil {
		a.writeError(w, lambdaerr.ResourceNotFound("Alias not found: %s:%s", a.arn(name), r.PathValue("alias")))
		return
	}
	if body.FunctionVersion != "" {
		if err := a.checkVersion(r, name, body.FunctionVersion); err != nil {
			a.writeError(w, err)
			return
		}
		al.FunctionVersion = body.FunctionVersion
	}
	if body.Description != "" {
		al.Description = body.Description
	}
	al.RevisionID = uuid.NewString()
	if err := a.cfg.Store.PutAlias(r.Context(), name, al, true); err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a.aliasOut(name, al))
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := a.cfg.Store.DeleteAlias(r.Context(), name, r.PathValue("alias")); err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
