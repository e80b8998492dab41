package qemu

import (
	"slices"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/vmm"
)

// The card's TAP is the descriptor after the disks'; a card without a TAP
// (a template's) has no backend; no card, no device.
func TestNICArgs(t *testing.T) {
	disks := []vmm.Disk{{Path: "/r", ReadOnly: true, Serial: "r"}, {Path: "/t", Serial: "t"}}
	tests := []struct {
		name string
		nic  *vmm.NIC
		want []string
	}{
		{"none", nil, nil},
		{"tap", &vmm.NIC{MAC: "02:68:65:00:00:01", Netns: "/run/netns/hearth-e", Tap: "tap0"},
			[]string{"-netdev", "tap,id=net0,fd=12,vhost=off", "-device", "virtio-net-device,mac=02:68:65:00:00:01,netdev=net0"}},
		{"no cable", &vmm.NIC{MAC: "02:68:65:00:00:00"}, []string{"-device", "virtio-net-device,mac=02:68:65:00:00:00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := (&Driver{}).args(vmm.MachineSpec{ID: "t", Dir: t.TempDir(), MemoryMiB: 128, Accel: vmm.AccelTCG, Disks: disks, NIC: tt.nic})
			var got []string
			for j := 0; j+1 < len(args); j++ {
				if args[j] == "-netdev" || (args[j] == "-device" && strings.HasPrefix(args[j+1], "virtio-net")) {
					got = append(got, args[j], args[j+1])
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
