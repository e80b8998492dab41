package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// MaxClockSkew is how far a request's X-Amz-Date may be from now.
const MaxClockSkew = 15 * time.Minute

// Keys maps access key ids to their secrets.
type Keys interface {
	Secret(accessKeyID string) (string, bool)
}

// SigningService is the service every request must be signed for: the
// API's, and function URLs' too, as AWS signs URL calls for "lambda".
const SigningService = "lambda"

// Verifier checks AWS Signature Version 4 on requests: it checks the
// credential scope (service, region, day) and that the Host is signed,
// then signs the request again, with aws-sdk-go-v2's signer and the stored
// secret, over exactly the headers the client signed, and compares the
// signatures. Everything that needs only the headers is checked before the
// body is read: a stranger cannot make the daemon read a body.
type Verifier struct {
	keys    Keys
	region  string
	service string
	maxBody int64
	signer  *v4.Signer
	now     func() time.Time
}

// NewVerifier returns a Verifier for keys, for requests signed for the
// default region (see InRegion) with bodies of at most MaxRequestBytes.
func NewVerifier(keys Keys) *Verifier {
	return &Verifier{keys: keys, region: sandbox.DefaultRegion, service: SigningService, maxBody: MaxRequestBytes, signer: v4.NewSigner(), now: time.Now}
}

// ForService is a copy of v that accepts requests signed for service
// (the SQS API's, "sqs") and bodies of at most maxBody bytes.
func (v *Verifier) ForService(service string, maxBody int64) *Verifier {
	c := *v
	c.service, c.maxBody = service, maxBody
	return &c
}

// InRegion is a copy of v that accepts requests signed for region (the
// daemon's; empty is the default region).
func (v *Verifier) InRegion(region string) *Verifier {
	c := *v
	if region == "" {
		region = sandbox.DefaultRegion
	}
	c.region = region
	return &c
}

type authHeader struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

func parseAuth(h string) (authHeader, bool) {
	var a authHeader
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return a, false
	}
	// Only the three fields, each once, none holding "=": a header that
	// parsers could read two ways is refused, since the function URL names
	// its caller from the first "Credential=" it finds.
	seen := map[string]bool{}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if seen[k] || strings.Contains(v, "=") {
			return a, false
		}
		seen[k] = true
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "aws4_request" {
				return a, false
			}
			a.accessKey, a.date, a.region, a.service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			a.signedHeaders = strings.Split(v, ";")
		case "Signature":
			a.signature = v
		default:
			return a, false
		}
	}
	return a, a.accessKey != "" && a.signature != "" && len(a.signedHeaders) > 0
}

// checkScope refuses a signature made for another service, region or day,
// or one that does not cover the Host: such a signature, valid elsewhere
// (on AWS, or on another daemon with the same keys), must not be valid
// here.
func (v *Verifier) checkScope(a authHeader, t time.Time) error {
	if a.service != v.service {
		return lambdaerr.InvalidSignature("Credential should be scoped to correct service: '%s'.", v.service)
	}
	if a.region != v.region {
		return lambdaerr.InvalidSignature("Credential should be scoped to a valid region: '%s', not '%s'.", v.region, a.region)
	}
	if !slices.Contains(a.signedHeaders, "host") {
		return lambdaerr.InvalidSignature("'Host' must be a 'SignedHeader' in the AWS Authorization.")
	}
	if !slices.Contains(a.signedHeaders, "x-amz-date") {
		return lambdaerr.InvalidSignature("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
	}
	if day := t.Format("20060102"); a.date != day {
		return lambdaerr.InvalidSignature("Credential should be scoped to a valid date: '%s', not '%s'.", day, a.date)
	}
	return nil
}

// Verify checks r's signature. It reads the body and puts it back; a body
// over the bound (r.Body should be an http.MaxBytesReader) ends with the
// reader's *http.MaxBytesError, and a declared Content-Length over it with
// RequestTooLargeException, before any of it is read.
func (v *Verifier) Verify(r *http.Request) error { return v.verify(r, false) }

// unsignedPayload is the X-Amz-Content-Sha256 of a request whose body is
// not part of its signature.
const unsignedPayload = "UNSIGNED-PAYLOAD"

// VerifyUnsignedPayload checks the signature of a request signed with
// X-Amz-Content-Sha256: UNSIGNED-PAYLOAD without reading its body, so that
// the handler can stream it (an upload into a MicroVM). The body is then
// not covered by the signature: callers bound it themselves.
func (v *Verifier) VerifyUnsignedPayload(r *http.Request) error { return v.verify(r, true) }

func (v *Verifier) verify(r *http.Request, unsigned bool) error {
	a, ok := parseAuth(r.Header.Get("Authorization"))
	if !ok {
		return lambdaerr.UnrecognizedClient("The request is not signed: an AWS Signature Version 4 Authorization header is required (sign with the keys in the daemon's credentials file)")
	}
	t, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return lambdaerr.InvalidSignature("X-Amz-Date is missing or malformed")
	}
	if err := v.checkScope(a, t); err != nil {
		return err
	}
	secret, ok := v.keys.Secret(a.accessKey)
	if !ok {
		return lambdaerr.UnrecognizedClient("The security token included in the request is invalid.")
	}
	if d := v.now().Sub(t); d > MaxClockSkew || d < -MaxClockSkew {
		return lambdaerr.InvalidSignature("Signature expired: %s is now earlier than %s (%s - 15 min.)",
			t.Format("20060102T150405Z"), v.now().UTC().Add(-MaxClockSkew).Format("20060102T150405Z"), v.now().UTC().Format("20060102T150405Z"))
	}
	payloadHash := unsignedPayload
	if !unsigned {
		if r.ContentLength > v.maxBody {
			return lambdaerr.RequestTooLarge("Request must be smaller than %d bytes", v.maxBody)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return fmt.Errorf("reading the request: %w", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sum := sha256.Sum256(body)
		payloadHash = hex.EncodeToString(sum[:])
		if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != unsignedPayload && h != payloadHash {
			return lambdaerr.InvalidSignature("The provided X-Amz-Content-Sha256 header does not match what was computed.")
		}
	} else if r.Header.Get("X-Amz-Content-Sha256") != unsignedPayload {
		return lambdaerr.InvalidSignature("X-Amz-Content-Sha256 must be UNSIGNED-PAYLOAD for a streamed upload.")
	}

	// The request as the client signed it: its method, path, query and the
	// signed headers only. The Host is the one this request came with, so
	// a signature made for another host does not match.
	u := &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	again, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), nil)
	if err != nil {
		return err
	}
	again.Host = r.Host
	for _, h := range a.signedHeaders {
		switch h {
		case "host":
		case "content-length":
			again.ContentLength = r.ContentLength
		default:
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	creds := aws.Credentials{AccessKeyID: a.accessKey, SecretAccessKey: secret}
	if err := v.signer.SignHTTP(r.Context(), creds, again, payloadHash, v.service, v.region, t); err != nil {
		return err
	}
	// The signer adds host and x-amz-date and sorts and lowercases the
	// list, so a header may list its signed headers otherwise and still
	// match: it must list exactly what was signed.
	want, _ := parseAuth(again.Header.Get("Authorization"))
	if !hmac.Equal([]byte(want.signature), []byte(a.signature)) || !slices.Equal(want.signedHeaders, a.signedHeaders) {
		return lambdaerr.InvalidSignature("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
	}
	return nil
}
