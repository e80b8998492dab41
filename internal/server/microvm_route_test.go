package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/broker/brokertest"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/microvm"
)

func TestAPIMicroVMID(t *testing.T) {
	for path, want := range map[string]string{
		"/2025-09-09/microvms/mvm-1":             "mvm-1",
		"/2025-09-09/microvms/mvm-1/suspend":     "mvm-1",
		"/2025-09-09/microvms/mvm-1/auth-token":  "mvm-1",
		"/hearth/v1/microvms/mvm-2/exec":         "mvm-2",
		"/hearth/v1/microvms/mvm-2/files/list":   "mvm-2",
		"/2025-09-09/microvms":                   "",
		"/2025-09-09/microvm-images/img":         "",
		"/2015-03-31/functions/f/invocations":    "",
		"/2025-09-09/microvms/":                  "",
		"/hearth/v1/cluster":                     "",
		"/2025-09-09/microvms/mvm-3/../../other": "mvm-3",
	} {
		r := httptest.NewRequest("GET", "http://h"+path, nil)
		if got := apiMicroVMID(r); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
}

func TestPageMicroVMs(t *testing.T) {
	t0 := time.Unix(1000, 0)
	vm := func(id string, at int) microvm.MicroVM {
		return microvm.MicroVM{ID: id, StartedAt: t0.Add(time.Duration(at) * time.Second)}
	}
	// Three hosts' lists, one MicroVM listed twice (a host answered
	// during its move of records): ordered by start then id, once each.
	all := []microvm.MicroVM{vm("c1", 3), vm("a1", 1), vm("b1", 2), vm("a2", 3), vm("b1", 2)}
	ids := func(vs []microvm.MicroVM) string {
		var s []string
		for _, v := range vs {
			s = append(s, v.ID)
		}
		return strings.Join(s, ",")
	}
	cases := []struct {
		max       int
		next      string
		want, tok string
		wantErr   bool
	}{
		{0, "", "a1,b1,a2,c1", "", false},
		{2, "", "a1,b1", "b1", false},
		{2, "b1", "a2,c1", "", false},
		{3, "a1", "b1,a2,c1", "", false},
		{2, "gone", "", "", true},
	}
	for _, c := range cases {
		got, tok, err := pageMicroVMs(append([]microvm.MicroVM(nil), all...), c.max, c.next)
		if (err != nil) != c.wantErr || ids(got) != c.want || tok != c.tok {
			t.Errorf("max %d after %q: %s next %q err %v; want %s next %q", c.max, c.next, ids(got), tok, err, c.want, c.tok)
		}
	}
}

type staticKeys map[string]string

func (k staticKeys) Secret(id string) (string, bool) { s, ok := k[id]; return s, ok }

type staticOwners map[string]string

func (o staticOwners) Owner(_ context.Context, id string) (string, bool, error) {
	n, ok := o[id]
	return n, ok, nil
}

// signedFor is a request signed with key AKIDTEST as the SDK signs it,
// for host (what the client called: the forwarding host).
func signedFor(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	creds := aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "lambda", "local", time.Now()); err != nil {
		t.Fatal(err)
	}
	return r
}

// A request about a MicroVM host a runs, made to host b, reaches a as it
// was signed and is checked there: a valid signature passes, an altered
// one is refused, and b's hop header grants nothing (forged on a request
// to a or to b, it is not trusted; at b it only keeps the request local).
func TestMicroVMForwarding(t *testing.T) {
	verifier := api.NewVerifier(staticKeys{"AKIDTEST": "secret"}).InRegion("local")
	// Host a: the owner, as its API would check requests.
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := verifier.Verify(r); err != nil {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, "refused: ", err)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "a served %s %s %s hop=%s", r.Method, r.URL.Path, body, r.Header.Get(HeaderForwarded))
	}))
	defer owner.Close()
	hosts := map[string]cluster.HostStatus{
		"a": {Host: cluster.Host{Node: "a", API: owner.Listener.Addr().String()}, State: cluster.StateUp},
		"c": {Host: cluster.Host{Node: "c", API: "127.0.0.1:1"}, State: cluster.StateDown},
		"d": {Host: cluster.Host{Node: "d", API: "127.0.0.1:1"}, State: cluster.StateStopping},
		"e": {Host: cluster.Host{Node: "e", API: "127.0.0.1:1"}, State: cluster.StateUp},
	}
	owners := staticOwners{"mvm-a": "a", "mvm-c": "c", "mvm-d": "d", "mvm-e": "e", "mvm-b": "b", "mvm-x": "x"}
	f := newMicroVMForwarder("b", owners, func(n string) (cluster.HostStatus, bool) { h, ok := hosts[n]; return h, ok },
		func(_ context.Context, id string) bool { return id == "mvm-b" })
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "b served hop=%q", r.Header.Get(HeaderForwarded))
	})
	b := httptest.NewServer(f.apiHandler(local))
	defer b.Close()
	bURL := "http://" + b.Listener.Addr().String()

	do := func(r *http.Request) (int, string, http.Header) {
		t.Helper()
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	type check struct {
		name     string
		req      func() *http.Request
		status   int
		contains string
	}
	checks := []check{
		{"signed for b, verified on a", func() *http.Request {
			return signedFor(t, "POST", bURL+"/2025-09-09/microvms/mvm-a/suspend", `{"x":1}`)
		}, 200, `a served POST /2025-09-09/microvms/mvm-a/suspend {"x":1} hop=b`},
		{"altered signature refused by a", func() *http.Request {
			r := signedFor(t, "POST", bURL+"/2025-09-09/microvms/mvm-a/suspend", `{}`)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "Signature=", "Signature=0", 1))
			return r
		}, 403, "refused"},
		{"altered body refused by a", func() *http.Request {
			r := signedFor(t, "POST", bURL+"/2025-09-09/microvms/mvm-a/suspend", `{}`)
			r.Body = io.NopCloser(strings.NewReader(`{"evil":1}`))
			r.ContentLength = 10
			return r
		}, 403, "refused"},
		{"unsigned with a forged hop header: served at b, not forwarded, the header dropped", func() *http.Request {
			r, _ := http.NewRequest("GET", bURL+"/2025-09-09/microvms/mvm-a", nil)
			r.Header.Set(HeaderForwarded, "a")
			return r
		}, 404, `b served hop=""`},
		{"unsigned with a forged hop header sent to the owner: refused", func() *http.Request {
			r, _ := http.NewRequest("GET", owner.URL+"/2025-09-09/microvms/mvm-a", nil)
			r.Header.Set(HeaderForwarded, "b")
			return r
		}, 403, "refused"},
		{"this host's own MicroVM served here", func() *http.Request {
			return signedFor(t, "GET", bURL+"/2025-09-09/microvms/mvm-b", "")
		}, 404, "b served"},
		{"owner down: a clear error, to retry", func() *http.Request {
			return signedFor(t, "GET", bURL+"/hearth/v1/microvms/mvm-c/files/list", "")
		}, 503, "runs on host c, which is down"},
		{"owner stopping (a restart, an upgrade): to retry", func() *http.Request {
			return signedFor(t, "GET", bURL+"/2025-09-09/microvms/mvm-d", "")
		}, 503, "runs on host d, which is stopping"},
		{"owner up but not answering", func() *http.Request {
			return signedFor(t, "GET", bURL+"/2025-09-09/microvms/mvm-e", "")
		}, 502, "runs on host e, which did not answer"},
		{"owner unknown to the membership", func() *http.Request {
			return signedFor(t, "GET", bURL+"/2025-09-09/microvms/mvm-x", "")
		}, 502, "not in the cluster"},
		{"no owner recorded: served here", func() *http.Request {
			return signedFor(t, "GET", bURL+"/2025-09-09/microvms/mvm-none", "")
		}, 404, "b served"},
		{"not a MicroVM route: served here", func() *http.Request {
			return signedFor(t, "GET", bURL+"/2015-03-31/functions", "")
		}, 404, "b served"},
	}
	for _, c := range checks {
		status, body, hdr := do(c.req())
		if status != c.status || !strings.Contains(body, c.contains) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, status, body, c.status, c.contains)
		}
		if (status == 502 || status == 503) && hdr.Get("X-Amzn-ErrorType") != "ServiceException" {
			t.Errorf("%s: error type %q", c.name, hdr.Get("X-Amzn-ErrorType"))
		}
		if (status == 503) != (hdr.Get("Retry-After") != "") {
			t.Errorf("%s: %d with Retry-After %q: only a 503 (host away) says when to retry", c.name, status, hdr.Get("Retry-After"))
		}
	}
}

// An upgraded connection (exec's WebSocket, the endpoint's) passes the
// hop both ways.
func TestMicroVMForwardingUpgrade(t *testing.T) {
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want an upgrade", 400)
			return
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = rw.Flush()
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = rw.WriteString("a: " + line)
			_ = rw.Flush()
		}
	}))
	defer owner.Close()
	f := newMicroVMForwarder("b", staticOwners{"mvm-a": "a"}, func(string) (cluster.HostStatus, bool) {
		return cluster.HostStatus{Host: cluster.Host{Node: "a", API: owner.Listener.Addr().String()}, State: cluster.StateUp}, true
	}, func(context.Context, string) bool { return false })
	b := httptest.NewServer(f.apiHandler(http.NotFoundHandler()))
	defer b.Close()

	conn, err := net.Dial("tcp", b.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /hearth/v1/microvms/mvm-a/exec HTTP/1.1\r\nHost: b\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, msg := range []string{"one", "two"} {
		fmt.Fprintf(conn, "%s\n", msg)
		line, err := br.ReadString('\n')
		if err != nil || line != "a: "+msg+"\n" {
			t.Fatalf("%q %v", line, err)
		}
	}
}

// A host forgets only the owner records that still name it: a MicroVM
// moved to another host meanwhile keeps its record.
func TestMicroVMOwnersForget(t *testing.T) {
	ctx := context.Background()
	bs := brokertest.Cluster(t, ctx, 3)
	o, err := openMicroVMOwners(ctx, bs[0].JetStream(), bs[0].Replicas())
	if err != nil {
		t.Fatal(err)
	}
	for id, node := range map[string]string{"mvm-mine": "a", "mvm-moved": "b"} {
		if err := o.Set(ctx, id, node); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		id       string
		want     string // the owner after a forgets it; "" none
		wantSeen bool
	}{
		{"mvm-mine", "", false},
		{"mvm-moved", "b", true},
		{"mvm-never-recorded", "", false},
	}
	for _, c := range cases {
		if err := o.Forget(ctx, c.id, "a"); err != nil {
			t.Fatalf("forget %s: %v", c.id, err)
		}
		got, ok, err := o.Owner(ctx, c.id)
		if err != nil || got != c.want || ok != c.wantSeen {
			t.Errorf("%s after a forgot it: owner %q %v (%v), want %q %v", c.id, got, ok, err, c.want, c.wantSeen)
		}
	}
}
