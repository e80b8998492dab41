package qemu

// For the VM tests in package qemu_test (which import testvm, and testvm
// imports this package).
var (
	CgroupKnobs = cgroupKnobs
	LimitsFor   = limitsFor
	PidsMax     = pidsMax
)

// MemoryLimit is the memory a machine's cgroup allows it.
func MemoryLimit(l limits) int64 { return l.memoryBytes }
