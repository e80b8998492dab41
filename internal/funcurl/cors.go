package funcurl

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// allowedOrigin is the Access-Control-Allow-Origin value for origin, or ""
// when the configuration does not allow it, and whether credentials may be
// allowed with it. An origin listed by name is echoed; "*" is answered
// with "*" and never with credentials: echoing any origin with
// credentials would let every site read the answer with the user's
// cookies (browsers forbid "*" with credentials for that reason, and the
// API refuses such a configuration; one stored before is served so).
func allowedOrigin(c *store.Cors, origin string) (string, bool) {
	if origin == "" {
		return "", false
	}
	if i := slices.IndexFunc(c.AllowOrigins, func(o string) bool { return o != "*" && strings.EqualFold(o, origin) }); i >= 0 {
		return origin, c.AllowCredentials
	}
	if slices.Contains(c.AllowOrigins, "*") {
		return "*", false
	}
	return "", false
}

// corsHeaders adds the CORS headers of an actual (not preflight) request.
func corsHeaders(w http.ResponseWriter, r *http.Request, c *store.Cors) {
	origin, credentials := allowedOrigin(c, r.Header.Get("Origin"))
	if origin == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if len(c.ExposeHeaders) > 0 {
		h.Set("Access-Control-Expose-Headers", strings.Join(c.ExposeHeaders, ","))
	}
}

// preflight answers an OPTIONS preflight from the configuration, without
// invoking the function.
func preflight(w http.ResponseWriter, r *http.Request, c *store.Cors) {
	h := w.Header()
	h.Add("Vary", "Origin")
	origin, credentials := allowedOrigin(c, r.Header.Get("Origin"))
	method := strings.ToUpper(r.Header.Get("Access-Control-Request-Method"))
	methodOK := slices.ContainsFunc(c.AllowMethods, func(m string) bool { return m == "*" || strings.EqualFold(m, method) })
	if origin == "" || !methodOK {
		w.WriteHeader(http.StatusOK) // no CORS headers: the browser refuses
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", strings.Join(c.AllowMethods, ","))
	if slices.Contains(c.AllowHeaders, "*") {
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", req)
		}
	} else if len(c.AllowHeaders) > 0 {
		h.Set("Access-Control-Allow-Headers", strings.Join(c.AllowHeaders, ","))
	}
	if credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.MaxAge > 0 {
		h.Set("Access-Control-Max-Age", strconv.Itoa(c.MaxAge))
	}
	if len(c.ExposeHeaders) > 0 {
		h.Set("Access-Control-Expose-Headers", strings.Join(c.ExposeHeaders, ","))
	}
	w.WriteHeader(http.StatusOK)
}

func asThrottled(err error, th **lambdaerr.Throttled) bool { return errors.As(err, th) }
