package testvm

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The ports internal/testmicrovm serves on by default (its env changes them):
// the app (HTTP/1.1, h2c, WebSocket, SSE), gRPC health, and the hooks.
const (
	MicroVMAppPort  = 8080
	MicroVMGRPCPort = 8081
	MicroVMHookPort = 9000
)

// MicroVMImage is the test MicroVM image: internal/testmicrovm built
// statically at /app/testmicrovm, its ENTRYPOINT, with the env given (its
// knobs, e.g. "READY_503=2") and port 8080 exposed, as a user's image
// would declare its app. It is FunctionImage's image: nothing in it is
// Lambda's but the empty /var/task, which a MicroVM does not mind.
func MicroVMImage(t testing.TB, env ...string) v1.Image {
	t.Helper()
	img := FunctionImage(t, "./internal/testmicrovm", env...)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
