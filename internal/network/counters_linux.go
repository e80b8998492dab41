package network

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
)

// Counters reads the named counters of the environment's ruleset (table
// inet Table in its namespace), by name, in packets: what /metrics shows
// of its refusals.
func Counters(ctx context.Context, l Lease) (map[string]uint64, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.Netns, "nft", "-j", "list", "counters", "table", "inet", Table)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("network: counters of %s: %w: %s", l.Netns, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return ParseCounters(out)
}
