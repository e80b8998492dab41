package api

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/store"
)

// retireInvoker records the functions whose environments were retired.
type retireInvoker struct {
	noInvoker
	retired *[]string
}

func (r retireInvoker) Retire(_ context.Context, function string) {
	*r.retired = append(*r.retired, function)
}

func TestNetworkPolicy(t *testing.T) {
	a := newTestAPI(t)
	var retired []string
	a.cfg.Invoker = retireInvoker{retired: &retired}
	created := createFn(t, a, "f", nil)
	if got := created["HearthNetworkPolicy"]; !reflect.DeepEqual(got, map[string]any{"Enabled": true, "AllowPrivate": false}) {
		t.Fatalf("a new function's HearthNetworkPolicy = %v, want the default", got)
	}
	call(t, a, "POST", "/2015-03-31/functions/f/versions", map[string]any{}) // version 1 keeps the default

	lan := network.Policy{Enabled: true, Allow: []network.Rule{{Cidr: "10.201.0.0/24", Ports: []string{"80", "8000-8100"}}},
		Deny: []network.Rule{{Cidr: "10.201.0.9", Protocol: "tcp"}}}
	code, _, b := call(t, a, "PUT", "/hearth/v1/functions/f/network-policy", lan)
	if code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, b)
	}
	if got := decodeJSON[network.Policy](t, b); !reflect.DeepEqual(got, lan) {
		t.Fatalf("PUT answered %+v, want %+v", got, lan)
	}
	code, _, b = call(t, a, "GET", "/hearth/v1/functions/f/network-policy", nil)
	if got := decodeJSON[network.Policy](t, b); code != http.StatusOK || !reflect.DeepEqual(got, lan) {
		t.Fatalf("GET: %d %s", code, b)
	}
	if !strings.Contains(string(b), `"Allow":[{"Cidr":"10.201.0.0/24","Ports":["80","8000-8100"]}]`) {
		t.Fatalf("wire shape: %s", b)
	}
	code, _, b = call(t, a, "GET", "/2015-03-31/functions/f/configuration", nil)
	cfg := decodeJSON[store.Function](t, b)
	if code != http.StatusOK || !reflect.DeepEqual(*cfg.NetworkPolicy, lan) {
		t.Fatalf("configuration: %d %s", code, b)
	}
	if cfg.RevisionID == created["RevisionId"] {
		t.Fatal("a new network policy kept the revision: the old environments would stay")
	}
	if !reflect.DeepEqual(retired, []string{"f"}) {
		t.Fatalf("retired %v, want f's environments", retired)
	}
	code, _, b = call(t, a, "GET", "/hearth/v1/functions/f/network-policy?Qualifier=1", nil)
	if got := decodeJSON[network.Policy](t, b); code != http.StatusOK || !reflect.DeepEqual(got, network.DefaultPolicy()) {
		t.Fatalf("version 1 keeps its policy: %d %s", code, b)
	}
}

func TestNetworkPolicyRefused(t *testing.T) {
	a := newTestAPI(t)
	createFn(t, a, "f", nil)
	for _, tc := range []struct {
		name, target, body string
		status             int
		typ, msg           string
	}{
		{"bad cidr", "/hearth/v1/functions/f/network-policy", `{"Enabled":true,"Allow":[{"Cidr":"10.0.0.0/33"}]}`, 400,
			"InvalidParameterValueException", `Allow[0]: Cidr "10.0.0.0/33" is not a CIDR`},
		{"bad port", "/hearth/v1/functions/f/network-policy", `{"Enabled":true,"Deny":[{"Cidr":"0.0.0.0/0","Ports":["99999"]}]}`, 400,
			"InvalidParameterValueException", `Deny[0]: port "99999"`},
		{"bad protocol", "/hearth/v1/functions/f/network-policy", `{"Enabled":true,"Deny":[{"Cidr":"0.0.0.0/0","Protocol":"sctp"}]}`, 400,
			"InvalidParameterValueException", `Protocol "sctp"`},
		{"not an object", "/hearth/v1/functions/f/network-policy", `"on"`, 400, "InvalidParameterValueException", "not valid JSON"},
		{"version", "/hearth/v1/functions/f/network-policy?Qualifier=1", `{"Enabled":true}`, 400, "InvalidParameterValueException", "$LATEST"},
		{"no function", "/hearth/v1/functions/nope/network-policy", `{"Enabled":true}`, 404, "ResourceNotFoundException", "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, b := call(t, a, "PUT", tc.target, json.RawMessage(tc.body))
			typ, _, msg := lambdaError(t, h, b)
			if code != tc.status || typ != tc.typ || !strings.Contains(msg, tc.msg) {
				t.Fatalf("%d %s %q; want %d %s %q", code, typ, msg, tc.status, tc.typ, tc.msg)
			}
		})
	}
	// Nothing refused was stored.
	code, _, b := call(t, a, "GET", "/hearth/v1/functions/f/network-policy", nil)
	if got := decodeJSON[network.Policy](t, b); code != http.StatusOK || !reflect.DeepEqual(got, network.DefaultPolicy()) {
		t.Fatalf("GET after refusals: %d %s", code, b)
	}
	if code, _, _ := call(t, a, "GET", "/hearth/v1/functions/nope/network-policy", nil); code != http.StatusNotFound {
		t.Fatalf("GET of no function: %d", code)
	}
}

// TestNetworkPolicyDaemonDefault: the daemon's default policy (its config
// file's networkPolicy) is given to new functions, and functions stored
// before policies existed read as network.DefaultPolicy.
func TestNetworkPolicyDaemonDefault(t *testing.T) {
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	off := network.Policy{Enabled: false}
	a := New(Config{Store: st, Invoker: noInvoker{}, Keys: testKeys{"AKIDTEST": "secret"}, Region: "local",
		ValidateCode: func([]byte) error { return nil }, NetworkPolicy: &off})
	createFn(t, a, "f", nil)
	_, _, b := call(t, a, "GET", "/hearth/v1/functions/f/network-policy", nil)
	if got := decodeJSON[network.Policy](t, b); !reflect.DeepEqual(got, off) {
		t.Fatalf("new function's policy %s, want the daemon's %+v", b, off)
	}

	if err := st.CreateFunction(context.Background(), store.Function{FunctionName: "old", Version: "$LATEST"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateFunction(context.Background(), "old", func(f *store.Function) error { f.NetworkPolicy = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	_, _, b = call(t, a, "GET", "/hearth/v1/functions/old/network-policy", nil)
	if got := decodeJSON[network.Policy](t, b); !reflect.DeepEqual(got, network.DefaultPolicy()) {
		t.Fatalf("a function stored without a policy reads %s", b)
	}
}
