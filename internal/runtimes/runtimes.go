package runtimes

import (
	"fmt"
	"sort"
	"strings"
)

// RuntimeDir is where a runtime's RIC lives in its root, as in Lambda
// ($LAMBDA_RUNTIME_DIR), and BootstrapPath the program the agent starts.
const (
	RuntimeDir    = "/var/runtime"
	BootstrapPath = RuntimeDir + "/bootstrap"
)

// Runtime is one managed runtime.
type Runtime struct {
	// Name is Lambda's identifier, as in CreateFunction's Runtime.
	Name string
	// Packages are the Debian packages its root holds beyond the essential
	// set (which brings a shell for the bootstrap script).
	Packages []string
	// dir is the RIC's folder in the embedded files.
	dir string
}

var all = []Runtime{
	{Name: "python3.11", Packages: []string{"python3"}, dir: "python"},
	{Name: "nodejs18.x", Packages: []string{"nodejs"}, dir: "nodejs"},
}

// Names lists the managed runtimes, sorted.
func Names() []string {
	names := make([]string, len(all))
	for i, r := range all {
		names[i] = r.Name
	}
	sort.Strings(names)
	return names
}

// Lookup returns the managed runtime called name.
func Lookup(name string) (Runtime, error) {
	for _, r := range all {
		if r.Name == name {
			return r, nil
		}
	}
	return Runtime{}, &UnknownError{Name: name}
}

// UnknownError says a runtime is not one of the managed ones.
type UnknownError struct{ Name string }

func (e *UnknownError) Error() string {
	return fmt.Sprintf("runtime %q is not a managed runtime (supported: %s)", e.Name, strings.Join(Names(), ", "))
}
