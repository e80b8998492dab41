package funcurl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// urlEvent is payload format 2.0: aws-lambda-go's LambdaFunctionURLRequest
// plus the fields Lambda sends that the struct lacks.
type urlEvent struct {
	events.LambdaFunctionURLRequest
	RouteKey       string          `json:"routeKey"`
	RequestContext urlEventContext `json:"requestContext"`
}

type urlEventContext struct {
	events.LambdaFunctionURLRequestContext
	RouteKey string `json:"routeKey"`
	Stage    string `json:"stage"`
}

// iamCaller is who signed an AWS_IAM request.
type iamCaller struct{ accessKey string }

func callerOf(r *http.Request) *iamCaller {
	auth := r.Header.Get("Authorization")
	_, cred, _ := strings.Cut(auth, "Credential=")
	key, _, _ := strings.Cut(cred, "/")
	return &iamCaller{accessKey: key}
}

// isText says whether a body of this content type goes as text; any other
// goes base64-encoded, as Lambda does.
func isText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"), strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	switch mt {
	case "application/json", "application/javascript", "application/xml", "application/x-www-form-urlencoded", "application/graphql":
		return true
	}
	return false
}

// buildEvent turns a request into Lambda's payload format 2.0.
func buildEvent(r *http.Request, id, domain, path string, iam *iamCaller) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("read the request body: %w", err)
	}
	if len(body) > MaxPayload {
		return nil, tooLarge()
	}
	now := time.Now().UTC()
	sourceIP, _, _ := net.SplitHostPort(r.RemoteAddr)
	proto, hostPort := "http", "80"
	if r.TLS != nil {
		proto, hostPort = "https", "443"
	}
	if _, p, err := net.SplitHostPort(r.Host); err == nil && p != "" {
		hostPort = p
	}
	headers := map[string]string{}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		lk := strings.ToLower(k)
		if lk == "cookie" {
			continue // cookies travel in their own field
		}
		headers[lk] = strings.Join(r.Header.Values(k), ",")
	}
	headers["host"] = r.Host
	headers["x-forwarded-for"] = sourceIP
	headers["x-forwarded-proto"] = proto
	// Lambda always names the port the client connected to.
	headers["x-forwarded-port"] = hostPort
	var cookies []string
	for _, c := range r.Header.Values("Cookie") {
		for _, part := range strings.Split(c, ";") {
			if p := strings.TrimSpace(part); p != "" {
				cookies = append(cookies, p)
			}
		}
	}
	var query map[string]string
	if q := r.URL.Query(); len(q) > 0 {
		query = map[string]string{}
		for k, vs := range q {
			query[k] = strings.Join(vs, ",")
		}
	}
	ev := urlEvent{RouteKey: "$default"}
	ev.Version = "2.0"
	ev.RawPath = path
	ev.RawQueryString = r.URL.RawQuery
	ev.Cookies = cookies
	ev.Headers = headers
	ev.QueryStringParameters = query
	if len(body) > 0 {
		if isText(r.Header.Get("Content-Type")) {
			ev.Body = string(body)
		} else {
			ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
		}
	}
	ctx := events.LambdaFunctionURLRequestContext{
		AccountID: "000000000000", RequestID: uuid.NewString(), APIID: id, DomainName: domain, DomainPrefix: id,
		Time: now.Format("02/Jan/2006:15:04:05 -0700"), TimeEpoch: now.UnixMilli(),
		HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{
			Method: r.Method, Path: path, Protocol: r.Proto, SourceIP: sourceIP, UserAgent: r.UserAgent(),
		},
	}
	if iam != nil {
		ctx.Authorizer = &events.LambdaFunctionURLRequestContextAuthorizerDescription{
			IAM: &events.LambdaFunctionURLRequestContextAuthorizerIAMDescription{
				AccessKey: iam.accessKey, AccountID: "000000000000", CallerID: iam.accessKey,
				UserARN: "arn:aws:iam::000000000000:user/hearth", UserID: iam.accessKey,
			},
		}
	}
	ev.RequestContext = urlEventContext{LambdaFunctionURLRequestContext: ctx, RouteKey: "$default", Stage: "$default"}
	// No HTML escaping: Lambda sends "<" as it is, and "\u003c" would
	// count six bytes against the limit.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, fmt.Errorf("encode the event: %w", err)
	}
	event := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	// Lambda's limit is on the whole event: a body under 6 MB can still
	// make one over it (base64 grows it by a third). The invoker would
	// refuse it too, but only here does it become the client's 413.
	if len(event) > MaxPayload {
		return nil, tooLarge()
	}
	return event, nil
}

func tooLarge() error {
	return lambdaerr.RequestTooLarge("Request must be smaller than %d bytes for the InvokeFunction operation", MaxPayload)
}

// writeResponse maps the function's answer as Lambda does: an object with
// a statusCode is a response (headers, cookies, body, perhaps base64); any
// other JSON is a 200 with that JSON as the body.
func writeResponse(w http.ResponseWriter, payload []byte) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(payload, &probe) == nil {
		if _, ok := probe["statusCode"]; ok {
			var resp events.LambdaFunctionURLResponse
			if err := json.Unmarshal(payload, &resp); err != nil {
				message(w, http.StatusBadGateway, "Internal Server Error")
				return
			}
			body := []byte(resp.Body)
			if resp.IsBase64Encoded {
				b, err := base64.StdEncoding.DecodeString(resp.Body)
				if err != nil {
					message(w, http.StatusBadGateway, "Internal Server Error")
					return
				}
				body = b
			}
			status := resp.StatusCode
			if len(body) > MaxPayload || status < 100 || status > 599 {
				// Nothing of a response Lambda cannot send reaches the
				// client: not its headers, not its cookies.
				message(w, http.StatusBadGateway, "Internal Server Error")
				return
			}
			for k, v := range resp.Headers {
				w.Header().Set(k, v)
			}
			for _, c := range resp.Cookies {
				w.Header().Add("Set-Cookie", c)
			}
			if w.Header().Get("Content-Type") == "" {
				w.Header().Set("Content-Type", "application/json")
			}
			w.WriteHeader(status)
			_, _ = w.Write(body)
			return
		}
	}
	if !json.Valid(payload) {
		message(w, http.StatusBadGateway, "Internal Server Error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(payload)
}
