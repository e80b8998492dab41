package vmproxy

import (
	"net/http"
	"strings"
)

// AWS's WebSocket subprotocols: a browser cannot set headers on a
// WebSocket, so the token and port ride in Sec-WebSocket-Protocol, next
// to the bare marker.
const (
	subprotocolMarker     = "lambda-microvms"
	subprotocolAuthPrefix = "lambda-microvms.authentication."
	subprotocolPortPrefix = "lambda-microvms.port."
)

// wsOffer is what a WebSocket handshake offered of the endpoint's
// subprotocols.
type wsOffer struct {
	marker bool   // the bare lambda-microvms
	token  string // from lambda-microvms.authentication.<token>
	port   string // from lambda-microvms.port.<N>
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// subprotocols lists the Sec-WebSocket-Protocol entries, over all the
// header's lines.
func subprotocols(h http.Header) []string {
	var out []string
	for _, line := range h.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(line, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func isEndpointSubprotocol(p string) bool {
	return p == subprotocolMarker || strings.HasPrefix(p, subprotocolAuthPrefix) || strings.HasPrefix(p, subprotocolPortPrefix)
}

func parseOffer(h http.Header) wsOffer {
	var o wsOffer
	for _, p := range subprotocols(h) {
		switch {
		case p == subprotocolMarker:
			o.marker = true
		case strings.HasPrefix(p, subprotocolAuthPrefix) && o.token == "":
			o.token = p[len(subprotocolAuthPrefix):]
		case strings.HasPrefix(p, subprotocolPortPrefix) && o.port == "":
			o.port = p[len(subprotocolPortPrefix):]
		}
	}
	return o
}

// stripOffer leaves the guest the app's own subprotocols only.
func stripOffer(h http.Header) {
	var app []string
	for _, p := range subprotocols(h) {
		if !isEndpointSubprotocol(p) {
			app = append(app, p)
		}
	}
	h.Del("Sec-Websocket-Protocol")
	if len(app) > 0 {
		h.Set("Sec-Websocket-Protocol", strings.Join(app, ", "))
	}
}

// fixSubprotocol answers lambda-microvms when the client offered it and
// the guest chose none of the app's: a browser fails a handshake that
// offered subprotocols and got none back.
func fixSubprotocol(res *http.Response) error {
	if res.StatusCode != http.StatusSwitchingProtocols || res.Request == nil {
		return nil
	}
	// res.Request is the guest's request, stripped; the client's offer is
	// in its context's target.
	tg := targetOf(res.Request.Context())
	if tg == nil || !tg.offeredMarker {
		return nil
	}
	if res.Header.Get("Sec-Websocket-Protocol") == "" {
		res.Header.Set("Sec-Websocket-Protocol", subprotocolMarker)
	}
	return nil
}
