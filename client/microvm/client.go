// Package microvm is a Go client for Hearth's Lambda MicroVMs: the AWS
// Lambda MicroVMs API (2025-09-09) a Hearth daemon serves, its sandbox
// interface (exec with streamed stdin/stdout/stderr, a terminal, files),
// and each MicroVM's endpoint (requests that carry an auth token).
//
// Requests to the daemon are signed with AWS Signature Version 4 for the
// service "lambda", as the AWS SDKs sign Lambda MicroVMs requests. The
// package imports none of Hearth's internal packages and few others, so
// that programs can use it without pulling in the daemon.
package microvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// SigningService is the SigV4 service name Lambda MicroVMs requests are
// signed for (as AWS's SDKs sign them).
const SigningService = "lambda"

// DefaultRegion is a Hearth daemon's region unless it was given one.
const DefaultRegion = "local"

// Credentials are the access key requests are signed with, and the region
// the daemon serves (DefaultRegion when empty).
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Region          string
}

// Client talks to a Hearth daemon. It is safe for concurrent use.
type Client struct {
	base   *url.URL
	creds  aws.Credentials
	region string
	http   *http.Client
	signer *v4.Signer
}

// Option changes a Client.
type Option func(*Client)

// WithHTTPClient sends requests with hc (by default a client that dials
// names under .localhost on loopback).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// New is a client of the daemon at endpoint (such as
// http://127.0.0.1:9000), signing with creds.
func New(endpoint string, creds Credentials, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(endpoint, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q is not an http or https URL", endpoint)
	}
	if creds.AccessKeyID == "" || creds.SecretAccessKey == "" {
		return nil, errors.New("an access key id and secret are required")
	}
	region := creds.Region
	if region == "" {
		region = DefaultRegion
	}
	c := &Client{base: u, region: region, http: &http.Client{Transport: localhostTransport()}, signer: v4.NewSigner(),
		creds: aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Errors an *APIError matches with errors.Is, by its type.
var (
	ErrNotFound   = errors.New("not found")         // ResourceNotFoundException
	ErrConflict   = errors.New("conflict")          // ConflictException
	ErrValidation = errors.New("validation failed") // ValidationException
)

// APIError is an error answer of the daemon, in Lambda's shape.
type APIError struct {
	StatusCode int
	Type       string // the exception's name, from X-Amzn-ErrorType
	Message    string
	RequestID  string
}

func (e *APIError) Error() string { return e.Type + ": " + e.Message }

// Is matches ErrNotFound, ErrConflict and ErrValidation by type.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Type == "ResourceNotFoundException"
	case ErrConflict:
		return e.Type == "ConflictException"
	case ErrValidation:
		return e.Type == "ValidationException"
	}
	return false
}

// url is the daemon's URL of p with query q.
func (c *Client) url(p string, q url.Values) *url.URL {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	u.RawPath = ""
	// Path segments are escaped as the SDKs escape them.
	u.RawPath = escapePath(u.Path)
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return &u
}

// escapePath escapes each segment of p.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// sign signs req with the payload's hash (or UNSIGNED-PAYLOAD).
func (c *Client) sign(ctx context.Context, req *http.Request, payloadHash string) error {
	return c.signer.SignHTTP(ctx, c.creds, req, payloadHash, SigningService, c.region, time.Now())
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// do sends a signed request with a JSON body (in may be nil) and decodes
// the answer into out (may be nil).
func (c *Client) do(ctx context.Context, method, p string, q url.Values, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(p, q).String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(ctx, req, hashOf(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, p, err)
	}
	return nil
}

// send signs and sends req; an error answer is an *APIError.
func (c *Client) send(ctx context.Context, req *http.Request, payloadHash string) (*http.Response, error) {
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	if err := c.sign(ctx, req, payloadHash); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	return resp, nil
}

func readAPIError(resp *http.Response) error {
	e := &APIError{StatusCode: resp.StatusCode, Type: resp.Header.Get("X-Amzn-ErrorType"), RequestID: resp.Header.Get("X-Amzn-RequestId")}
	// AWS may append ":" and a URL to the type.
	e.Type, _, _ = strings.Cut(e.Type, ":")
	var body struct {
		Message  string `json:"message"`
		Message2 string `json:"Message"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) == nil {
		e.Message = body.Message
		if e.Message == "" {
			e.Message = body.Message2
		}
	}
	if e.Type == "" {
		e.Type = "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
	}
	return e
}

func mvPath(id string, rest ...string) string {
	return "/" + APIVersion + "/microvms/" + id + strings.Join(rest, "")
}

func imagePath(image string, rest ...string) string {
	return "/" + APIVersion + "/microvm-images/" + image + strings.Join(rest, "")
}

// Run is RunMicrovm: it starts a MicroVM from an image.
func (c *Client) Run(ctx context.Context, in RunInput) (*MicroVM, error) {
	var out MicroVM
	if err := c.do(ctx, http.MethodPost, "/"+APIVersion+"/microvms", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Get is GetMicrovm.
func (c *Client) Get(ctx context.Context, id string) (*MicroVM, error) {
	var out MicroVM
	if err := c.do(ctx, http.MethodGet, mvPath(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List is ListMicrovms: one page.
func (c *Client) List(ctx context.Context, in ListInput) (*ListOutput, error) {
	q := url.Values{}
	setQuery(q, "imageIdentifier", in.ImageIdentifier)
	setQuery(q, "imageVersion", in.ImageVersion)
	setQuery(q, "nextToken", in.NextToken)
	if in.MaxResults > 0 {
		q.Set("maxResults", strconv.Itoa(in.MaxResults))
	}
	var out ListOutput
	if err := c.do(ctx, http.MethodGet, "/"+APIVersion+"/microvms", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAll is every MicroVM ListMicrovms pages through.
func (c *Client) ListAll(ctx context.Context, in ListInput) ([]MicroVMItem, error) {
	var all []MicroVMItem
	for {
		page, err := c.List(ctx, in)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextToken == "" {
			return all, nil
		}
		in.NextToken = page.NextToken
	}
}

func setQuery(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

// Suspend is SuspendMicrovm.
func (c *Client) Suspend(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, mvPath(id, "/suspend"), nil, nil, nil)
}

// Resume is ResumeMicrovm.
func (c *Client) Resume(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, mvPath(id, "/resume"), nil, nil, nil)
}

// Terminate is TerminateMicrovm; terminating a terminated MicroVM
// succeeds.
func (c *Client) Terminate(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, mvPath(id), nil, nil, nil)
}

// AuthToken is CreateMicrovmAuthToken: a token for the MicroVM's endpoint,
// valid for expires (whole minutes, 1 to 60) on the given ports (all, when
// none are given).
func (c *Client) AuthToken(ctx context.Context, id string, expires time.Duration, ports ...PortSpecification) (string, error) {
	if len(ports) == 0 {
		ports = []PortSpecification{AllPorts()}
	}
	in := AuthTokenInput{ExpirationInMinutes: int(expires / time.Minute), AllowedPorts: ports}
	var out AuthTokenOutput
	if err := c.do(ctx, http.MethodPost, mvPath(id, "/auth-token"), nil, in, &out); err != nil {
		return "", err
	}
	tok, ok := out.AuthToken[AuthHeader]
	if !ok {
		return "", fmt.Errorf("the daemon's answer holds no %s", AuthHeader)
	}
	return tok, nil
}

// CreateImage is CreateMicrovmImage: the build runs in the background
// (WaitImage waits for it).
func (c *Client) CreateImage(ctx context.Context, in ImageInput) (*Image, error) {
	var out Image
	if err := c.do(ctx, http.MethodPost, "/"+APIVersion+"/microvm-images", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateImage is UpdateMicrovmImage: a new version of image.
func (c *Client) UpdateImage(ctx context.Context, image string, in ImageInput) (*Image, error) {
	in.Name = ""
	var out Image
	if err := c.do(ctx, http.MethodPut, imagePath(image), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetImage is GetMicrovmImage.
func (c *Client) GetImage(ctx context.Context, image string) (*Image, error) {
	var out Image
	if err := c.do(ctx, http.MethodGet, imagePath(image), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListImages is ListMicrovmImages: one page.
func (c *Client) ListImages(ctx context.Context, maxResults int, nextToken string) (*ListImagesOutput, error) {
	q := url.Values{}
	setQuery(q, "nextToken", nextToken)
	if maxResults > 0 {
		q.Set("maxResults", strconv.Itoa(maxResults))
	}
	var out ListImagesOutput
	if err := c.do(ctx, http.MethodGet, "/"+APIVersion+"/microvm-images", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteImage is DeleteMicrovmImage.
func (c *Client) DeleteImage(ctx context.Context, image string) error {
	return c.do(ctx, http.MethodDelete, imagePath(image), nil, nil, nil)
}

// GetImageVersion is GetMicrovmImageVersion.
func (c *Client) GetImageVersion(ctx context.Context, image, version string) (*ImageVersion, error) {
	var out ImageVersion
	if err := c.do(ctx, http.MethodGet, imagePath(image, "/versions/", version), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListImageVersions is ListMicrovmImageVersions: one page.
func (c *Client) ListImageVersions(ctx context.Context, image string, maxResults int, nextToken string) (*ListImageVersionsOutput, error) {
	q := url.Values{}
	setQuery(q, "nextToken", nextToken)
	if maxResults > 0 {
		q.Set("maxResults", strconv.Itoa(maxResults))
	}
	var out ListImageVersionsOutput
	if err := c.do(ctx, http.MethodGet, imagePath(image, "/versions"), q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteImageVersion is DeleteMicrovmImageVersion.
func (c *Client) DeleteImageVersion(ctx context.Context, image, version string) error {
	return c.do(ctx, http.MethodDelete, imagePath(image, "/versions/", version), nil, nil, nil)
}

// pollEvery is how often the Wait methods ask.
const pollEvery = 250 * time.Millisecond

// WaitRunning polls GetMicrovm until the MicroVM is RUNNING (a suspended
// one is not resumed: call Resume); a TERMINATED one is an error.
func (c *Client) WaitRunning(ctx context.Context, id string) (*MicroVM, error) {
	for {
		vm, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		switch vm.State {
		case StateRunning:
			return vm, nil
		case StateTerminating, StateTerminated:
			return vm, fmt.Errorf("MicroVM %s is %s: %s", id, vm.State, vm.StateReason)
		}
		select {
		case <-ctx.Done():
			return vm, fmt.Errorf("waiting for MicroVM %s to run (it is %s): %w", id, vm.State, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// WaitImage polls GetMicrovmImageVersion until the version's build ends;
// a failed build is an error with its reason.
func (c *Client) WaitImage(ctx context.Context, image, version string) (*ImageVersion, error) {
	for {
		v, err := c.GetImageVersion(ctx, image, version)
		if err != nil {
			return nil, err
		}
		switch v.State {
		case VersionSuccessful:
			return v, nil
		case VersionFailed:
			return v, fmt.Errorf("image %s version %s failed to build: %s", image, version, v.StateReason)
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("waiting for image %s version %s: %w", image, version, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}
