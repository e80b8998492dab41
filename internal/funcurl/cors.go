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
// when the configuration does not allow it.
func allowedOrigin(c *store.Cors, origin string) string {
	if origin == "" {
		return ""
	}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			if c.AllowCredentials {
				return origin // "*" cannot go with credentials: echo the origin
			}
			return "*"
		}
		if strings.EqualFold(o, origin) {
			return origin
		}
	}
	return ""
}

// corsHeaders adds the CORS headers of an actual (not preflight) request.
func corsHeaders(w http.ResponseWriter, r *http.Request, c *store.Cors) {
	origin := allowedOrigin(c, r.Header.Get("Origin"))
	if origin == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if c.AllowCredentials {
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
	origin := allowedOrigin(c, r.Header.Get("Origin"))
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
	if c.AllowCredentials {
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
