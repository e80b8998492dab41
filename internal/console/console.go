// Package console is Hearth's web console: a static page, embedded in the
// binary, that the daemon serves at /console/ on the API's listener. The
// page carries no data: it asks for an access key pair once, keeps it in
// the browser's session storage, and signs every call it makes to the API
// with SigV4 in the page (WebCrypto), so the secret never crosses the wire
// and the daemon checks each call as it checks the aws CLI's.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Path is where the console is served.
const Path = "/console/"

//go:embed static
var static embed.FS

// csp lets the page load only its own files and talk only to its own
// origin: no CDN, no inline script, no frame around it.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console's files under Path, and redirects the path
// without its slash to it.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	files := http.StripPrefix(Path, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == strings.TrimSuffix(Path, "/") {
			http.Redirect(w, r, Path, http.StatusMovedPermanently)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// A new daemon may bring a new page: the browser asks each time
		// (the files are small and answered from memory).
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
