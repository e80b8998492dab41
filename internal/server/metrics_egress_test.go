package server

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/network"
)

func TestEgressDeniedMetric(t *testing.T) {
	m := newMetrics()
	var c network.DeniedCounter = m
	c.EgressDenied("f", network.ReasonHost, 3)
	c.EgressDenied("f", network.ReasonHost, 2)
	c.EgressDenied("g", network.ReasonLinkLocal, 1)
	c.EgressDenied("g", network.ReasonPolicy, 0)
	w := httptest.NewRecorder()
	m.handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(w.Body)
	for _, want := range []string{`hearth_egress_denied_total{function="f",reason="host"} 5`, `hearth_egress_denied_total{function="g",reason="link_local"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), `reason="policy"`) {
		t.Errorf("a zero count made a series:\n%s", b)
	}
}
