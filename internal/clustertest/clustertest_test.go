package clustertest_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/clustertest"
	"github.com/hearthdev/hearth/internal/testvm"
)

// The harness makes three hosts, each on its own address in its own
// namespace, that form one cluster: every host sees the three up with the
// API address the harness gave it; a partitioned host is unreachable from
// the test until healed.
func TestHarness(t *testing.T) {
	testvm.Driver(t)
	c := clustertest.Start(t, clustertest.Options{})
	ctx := context.Background()
	for _, h := range c.Hosts {
		st, err := h.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, other := range c.Hosts {
			found := false
			for _, hs := range st.Hosts {
				if hs.Node == other.Node && hs.API == fmt.Sprintf("%s:%d", other.Addr, clustertest.APIPort) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s does not see %s at %s: %+v", h.Node, other.Node, other.Addr, st.Hosts)
			}
		}
	}
	b := c.Host("b")
	if err := c.Partition(b); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", b.Addr, clustertest.APIPort), time.Second); err == nil {
		conn.Close()
		t.Error("a partitioned host still answers")
	}
	if err := c.Heal(b); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.WaitServing(wctx); err != nil {
		t.Fatal(err)
	}
}
