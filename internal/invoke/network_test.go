package invoke

import (
	"reflect"
	"testing"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/store"
)

// TestSchedulerFunctionCarriesNetworkPolicy: the stored policy reaches the
// sandbox, which gives it to the network mechanism.
func TestSchedulerFunctionCarriesNetworkPolicy(t *testing.T) {
	p := network.Policy{Enabled: true, Allow: []network.Rule{{Cidr: "10.201.0.0/24", Ports: []string{"80"}}}}
	fn, err := (&Service{}).schedulerFunction(store.Function{FunctionName: "f", NetworkPolicy: &p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fn.Function.Network == nil || !reflect.DeepEqual(*fn.Function.Network, p) {
		t.Fatalf("sandbox.Function.Network = %+v, want %+v", fn.Function.Network, p)
	}
}
