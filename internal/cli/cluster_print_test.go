package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/cluster"
)

// The status table says each host's CPU and what it has ready for a cold
// start, or a dash when its CPU is not measured yet.
func TestPrintClusterLoad(t *testing.T) {
	host := func(node string, load cluster.Load) cluster.HostStatus {
		return cluster.HostStatus{Host: cluster.Host{Node: node, Load: load}, State: cluster.StateUp, Compatible: true}
	}
	st := api.ClusterStatus{Status: cluster.Status{Cluster: "prod", Node: "a", Hosts: []cluster.HostStatus{
		host("a", cluster.Load{CPU: 0.374, Ready: &cluster.Ready{Code: []string{"k1", "k2"}, Roots: []string{"r1"}}}),
		host("b", cluster.Load{}),
	}}}
	cases := []struct {
		node       string
		cpu, ready string
	}{
		{"a", "37%", "2/1"},
		{"b", "-", "0/0"},
	}
	var out bytes.Buffer
	(&CLI{Stdout: &out}).printCluster(st)
	lines := strings.Split(out.String(), "\n")
	header := strings.Fields(strings.ReplaceAll(lines[1], "MEMORY MB", "MEMORY_MB"))
	col := func(name string) int {
		for i, h := range header {
			if h == name {
				return i
			}
		}
		t.Fatalf("no %s column in %q", name, lines[1])
		return -1
	}
	for _, c := range cases {
		var fields []string
		for _, l := range lines[2:] {
			if f := strings.Fields(l); len(f) > 0 && f[0] == c.node {
				fields = f
			}
		}
		if len(fields) <= col("CODE/ROOTS") || fields[col("CPU")] != c.cpu || fields[col("CODE/ROOTS")] != c.ready {
			t.Errorf("%s's line %q: want CPU %s, CODE/ROOTS %s\n%s", c.node, fields, c.cpu, c.ready, out.String())
		}
	}
}
