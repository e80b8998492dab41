package api

import (
	"net/http"
	"strings"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// taggedFunction reads the {resource} of a tags route: an unqualified
// function ARN, the only taggable resource Hearth has.
func taggedFunction(resource string) (string, error) {
	if !strings.HasPrefix(resource, "arn:") {
		return "", lambdaerr.InvalidParameter("%q is not an ARN: tags take a resource ARN, such as a function's", resource)
	}
	if !strings.Contains(resource, ":function:") {
		return "", lambdaerr.ResourceNotFound("The resource you requested does not exist: %s (Hearth tags functions only)", resource)
	}
	name, qualifier, err := parseFunctionRef(resource, "")
	if err != nil {
		return "", err
	}
	if qualifier != "" {
		return "", lambdaerr.InvalidParameter("Tags are not supported on a qualified function ARN (%s): tag the function itself", resource)
	}
	return name, nil
}

func (a *API) tagResource(w http.ResponseWriter, r *http.Request) {
	name, err := taggedFunction(r.PathValue("resource"))
	if err != nil {
		a.writeError(w, err)
		return
	}
	var body struct {
		Tags map[string]string `json:"Tags"`
	}
	if err := decode(r, &body); err != nil {
		a.writeError(w, err)
		return
	}
	if len(body.Tags) == 0 {
		a.writeError(w, lambdaerr.InvalidParameter("Tags must hold at least one tag"))
		return
	}
	if err := checkTags(body.Tags); err != nil {
		a.writeError(w, err)
		return
	}
	err = a.cfg.Store.UpdateTags(r.Context(), name, func(t map[string]string) error {
		for k, v := range body.Tags {
			t[k] = v
		}
		if len(t) > maxTags {
			return tooManyTags(len(t))
		}
		return nil
	})
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) untagResource(w http.ResponseWriter, r *http.Request) {
	name, err := taggedFunction(r.PathValue("resource"))
	if err != nil {
		a.writeError(w, err)
		return
	}
	keys := r.URL.Query()["tagKeys"]
	if len(keys) == 0 {
		a.writeError(w, lambdaerr.InvalidParameter("tagKeys must name at least one tag"))
		return
	}
	err = a.cfg.Store.UpdateTags(r.Context(), name, func(t map[string]string) error {
		for _, k := range keys {
			delete(t, k)
		}
		return nil
	})
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listTags(w http.ResponseWriter, r *http.Request) {
	name, err := taggedFunction(r.PathValue("resource"))
	if err != nil {
		a.writeError(w, err)
		return
	}
	tags, err := a.cfg.Store.Tags(r.Context(), name)
	if err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"Tags": tags})
}
