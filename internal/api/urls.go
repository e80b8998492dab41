package api

import (
	"crypto/rand"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

type urlConfigBody struct {
	AuthType   string      `json:"AuthType"`
	Cors       *store.Cors `json:"Cors"`
	InvokeMode string      `json:"InvokeMode"`
}

var corsMethods = map[string]bool{"GET": true, "PUT": true, "HEAD": true, "POST": true, "PATCH": true, "DELETE": true, "*": true}

func checkURLConfig(b urlConfigBody, create bool) error {
	if b.AuthType != "" || create {
		if b.AuthType != "NONE" && b.AuthType != "AWS_IAM" {
			return lambdaerr.InvalidParameter("AuthType must be NONE or AWS_IAM")
		}
	}
	if b.InvokeMode != "" && b.InvokeMode != "BUFFERED" && b.InvokeMode != "RESPONSE_STREAM" {
		return lambdaerr.InvalidParameter("InvokeMode must be BUFFERED or RESPONSE_STREAM")
	}
	if c := b.Cors; c != nil {
		if len(c.AllowMethods) > 6 {
			return lambdaerr.InvalidParameter("Cors.AllowMethods holds at most 6 methods")
		}
		for _, m := range c.AllowMethods {
			if !corsMethods[strings.ToUpper(m)] {
				return lambdaerr.InvalidParameter("Cors.AllowMethods: %q is not one of GET PUT HEAD POST PATCH DELETE *", m)
			}
		}
		if len(c.AllowHeaders) > 100 || len(c.ExposeHeaders) > 100 || len(c.AllowOrigins) > 100 {
			return lambdaerr.InvalidParameter("Cors lists hold at most 100 entries")
		}
		if c.MaxAge < 0 || c.MaxAge > 86400 {
			return lambdaerr.InvalidParameter("Cors.MaxAge must be between 0 and 86400")
		}
		// Browsers refuse "Access-Control-Allow-Origin: *" with
		// credentials; answering it by echoing each caller's origin would
		// let any site read the answer with the user's cookies.
		if c.AllowCredentials && slices.Contains(c.AllowOrigins, "*") {
			return lambdaerr.InvalidParameter("Cors: AllowOrigins \"*\" cannot go with AllowCredentials true: list the origins that may send credentials")
		}
	}
	return nil
}

// urlID makes a function URL's id: ten lower-case letters and digits, a
// valid DNS label.
func urlID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 10)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}

func isoTime() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000000Z") }

func (a *API) createURLConfig(w http.ResponseWriter, r *http.Request) {
	var body urlConfigBody
	name, qualifier, err := refWithBody(r, &body)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := checkURLConfig(body, true); err != nil {
		a.writeError(w, err)
		return
	}
	if _, err := a.resolve(r); err != nil {
		a.writeError(w, err)
		return
	}
	if a.cfg.URLBase == nil {
		a.writeError(w, lambdaerr.Service("this daemon serves no function URLs"))
		return
	}
	id := urlID()
	c := store.URLConfig{FunctionURL: a.cfg.URLBase(id), FunctionArn: a.arn(name), AuthType: body.AuthType, Cors: body.Cors,
		CreationTime: isoTime(), LastModifiedTime: isoTime(), InvokeMode: "BUFFERED", URLID: id, Function: name, Qualifier: qualifier}
	if body.InvokeMode != "" {
		c.InvokeMode = body.InvokeMode
	}
	if qualifier != "" {
		c.FunctionArn += ":" + qualifier
	}
	if err := a.cfg.Store.PutURLConfig(r.Context(), c, false); err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (a *API) getURLConfig(w http.ResponseWriter, r *http.Request) {
	name, qualifier, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	c, err := a.cfg.Store.URLConfig(r.Context(), name, qualifier)
	if err != nil {
		a.writeError(w, lambdaerr.ResourceNotFound("The resource you requested does not exist."))
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *API) updateURLConfig(w http.ResponseWriter, r *http.Request) {
	var body urlConfigBody
	name, qualifier, err := refWithBody(r, &body)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := checkURLConfig(body, false); err != nil {
		a.writeError(w, err)
		return
	}
	c, err := a.cfg.Store.URLConfig(r.Context(), name, qualifier)
	if err != nil {
		a.writeError(w, lambdaerr.ResourceNotFound("The resource you requested does not exist."))
		return
	}
	if body.AuthType != "" {
		c.AuthType = body.AuthType
	}
	if body.Cors != nil {
		c.Cors = body.Cors
	}
	if body.InvokeMode != "" {
		c.InvokeMode = body.InvokeMode
	}
	c.LastModifiedTime = isoTime()
	if err := a.cfg.Store.PutURLConfig(r.Context(), c, true); err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *API) deleteURLConfig(w http.ResponseWriter, r *http.Request) {
	name, qualifier, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if err := a.cfg.Store.DeleteURLConfig(r.Context(), name, qualifier); err != nil {
		a.writeError(w, lambdaerr.ResourceNotFound("The resource you requested does not exist."))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listURLConfigs(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if _, err := a.cfg.Store.GetFunction(r.Context(), name); err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	cs, err := a.cfg.Store.URLConfigs(r.Context(), name)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if cs == nil {
		cs = []store.URLConfig{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"FunctionUrlConfigs": cs})
}
