package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/hearthdev/hearth/internal/cluster"
)

// fakeCluster knows hosts a and b and records drains.
type fakeCluster struct{ drains map[string]bool }

func (f *fakeCluster) Status() cluster.Status {
	st := cluster.Status{Cluster: "prod", Node: "a", Protocol: 1, Replicas: 3}
	for _, n := range []string{"a", "b"} {
		st.Hosts = append(st.Hosts, cluster.HostStatus{Host: cluster.Host{Node: n}, State: cluster.StateUp, DrainRequested: f.drains[n]})
	}
	return st
}

func (f *fakeCluster) Drain(_ context.Context, node string, on bool) error {
	if node != "a" && node != "b" {
		return fmt.Errorf("x: %w: %s", cluster.ErrUnknownHost, node)
	}
	f.drains[node] = on
	return nil
}

func TestClusterRoutes(t *testing.T) {
	standalone := newTestAPI(t)
	clustered := newTestAPI(t)
	fc := &fakeCluster{drains: map[string]bool{}}
	clustered.cfg.Cluster = fc
	tests := []struct {
		name         string
		a            *API
		method, path string
		body         any
		wantCode     int
		wantType     string
		check        func(t *testing.T, st ClusterStatus)
	}{
		{"standalone status", standalone, "GET", "/hearth/v1/cluster", nil, 200, "", func(t *testing.T, st ClusterStatus) {
			if !st.Standalone || len(st.Hosts) != 0 {
				t.Errorf("standalone status: %+v", st)
			}
		}},
		{"standalone drain", standalone, "POST", "/hearth/v1/cluster/hosts/b/drain", nil, 400, "InvalidParameterValueException", nil},
		{"status", clustered, "GET", "/hearth/v1/cluster", nil, 200, "", func(t *testing.T, st ClusterStatus) {
			if st.Standalone || st.Cluster != "prod" || len(st.Hosts) != 2 {
				t.Errorf("status: %+v", st)
			}
		}},
		{"drain", clustered, "POST", "/hearth/v1/cluster/hosts/b/drain", nil, 200, "", func(t *testing.T, st ClusterStatus) {
			if !fc.drains["b"] || !st.Hosts[1].DrainRequested {
				t.Errorf("b not drained: %v %+v", fc.drains, st.Hosts)
			}
		}},
		{"undrain", clustered, "POST", "/hearth/v1/cluster/hosts/b/drain", map[string]bool{"draining": false}, 200, "", func(t *testing.T, st ClusterStatus) {
			if d, ok := fc.drains["b"]; !ok || d {
				t.Errorf("b still drained: %v", fc.drains)
			}
		}},
		{"unknown host", clustered, "POST", "/hearth/v1/cluster/hosts/zz/drain", nil, 404, "ResourceNotFoundException", nil},
		{"bad host name", clustered, "POST", "/hearth/v1/cluster/hosts/a.b/drain", nil, 400, "InvalidParameterValueException", nil},
		{"bad body", clustered, "POST", "/hearth/v1/cluster/hosts/a/drain", "yes", 400, "InvalidParameterValueException", nil},
		{"wrong method", clustered, "DELETE", "/hearth/v1/cluster", nil, 405, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, b := call(t, tt.a, tt.method, tt.path, tt.body)
			if code != tt.wantCode {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, code, b, tt.wantCode)
			}
			if tt.wantType != "" {
				if typ := h.Get("X-Amzn-ErrorType"); typ != tt.wantType {
					t.Fatalf("error type %q, want %q (%s)", typ, tt.wantType, b)
				}
			}
			if tt.check != nil && code == http.StatusOK {
				var st ClusterStatus
				if err := json.Unmarshal(b, &st); err != nil {
					t.Fatal(err)
				}
				tt.check(t, st)
			}
		})
	}
}
