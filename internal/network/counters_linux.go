package network

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
)

// Counters reads the named counters of the environment's ruleset (table
// inet hearth in its namespace), by name, in packets: what /metrics shows
// of its refusals.
func Counters(ctx context.Context, l Lease) (map[string]uint64, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.Netns, "nft", "-j", "list", "counters", "table", "inet", "hearth")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("network: counters of %s: %w: %s", l.Netns, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return parseCounters(out)
}

func parseCounters(b []byte) (map[string]uint64, error) {
	var v struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("network: nft counters: %w", err)
	}
	out := map[string]uint64{}
	for _, o := range v.Nftables {
		if o.Counter != nil {
			out[o.Counter.Name] += o.Counter.Packets
		}
	}
	return out, nil
}
