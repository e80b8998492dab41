package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/vmproxy"
)

// The Manager is what the API's MicroVM routes drive.
var _ api.MicroVMs = (*microvm.Manager)(nil)

// MicroVMTokenKeyFile is the key the MicroVMs' endpoint tokens are signed
// with, in dataDir: kept, so tokens outlive a restart.
func MicroVMTokenKeyFile(dataDir string) string { return filepath.Join(dataDir, "microvm-token.key") }

// openMicroVMs makes the MicroVM manager: its own folder (data/microvms,
// which the environments' recovery leaves alone), the agent-only image
// (a MicroVM's code is its root disk), the daemon's networks and roots.
func (s *Server) openMicroVMs(ctx context.Context, roots *rootfs.Builder) error {
	if err := s.syncTokenKey(ctx, MicroVMTokenKeyFile(s.cfg.DataDir)); err != nil {
		return fmt.Errorf("microvm tokens: %w", err)
	}
	tokens, err := vmproxy.LoadTokens(MicroVMTokenKeyFile(s.cfg.DataDir))
	if err != nil {
		return fmt.Errorf("microvm tokens: %w", err)
	}
	// The stored agent-only image (kept by the agent's digest): a
	// suspended MicroVM resumes only with the very initramfs it booted.
	img, err := s.host.CodeImage(ctx, filepath.Join(s.cfg.DataDir, "images"), "", "")
	if err != nil {
		return err
	}
	sbx := s.host.SandboxConfig(filepath.Join(s.cfg.DataDir, "microvms"), nil)
	if s.nets != nil {
		sbx.Net = s.nets
	}
	m, err := microvm.New(ctx, microvm.Config{Store: s.store, Meter: s.store, Sandbox: sbx, Image: img, Images: roots,
		Tokens: tokens, Endpoint: s.microVMEndpoint, Region: s.cfg.Region, NetworkPolicy: s.cfg.NetworkPolicy, Log: s.log,
		Forgotten: s.forgetMicroVMOwner})
	if err != nil {
		return fmt.Errorf("microvms: %w", err)
	}
	s.microvms = m
	return nil
}

// forgetMicroVMOwner drops a forgotten MicroVM's owner record in a
// cluster. The owners' record is opened before the manager starts (and
// with it the ticks that forget), so reading s.mvmOwners here is safe.
func (s *Server) forgetMicroVMOwner(ctx context.Context, id string) {
	if s.mvmOwners == nil {
		return
	}
	if err := s.mvmOwners.Forget(ctx, id, s.cfg.Cluster.Node); err != nil {
		s.log.Warn("forgetting a MicroVM's owner record", "microvm", id, "err", err)
	}
}

// microVMEndpoint is a MicroVM's address on the plain HTTP listener (or
// the TLS one when that is the only one), like a function URL's.
func (s *Server) microVMEndpoint(id string) string {
	if len(s.urlAddrs) == 0 {
		return ""
	}
	_, port, _ := net.SplitHostPort(s.urlAddrs[0])
	scheme := "http"
	if s.cfg.URLListen == "" {
		scheme = "https"
	}
	return scheme + "://" + vmproxy.EndpointHost(id, s.cfg.URLDomain) + ":" + port + "/"
}

// MicroVMs is the daemon's MicroVM manager, for tests and tools.
func (s *Server) MicroVMs() *microvm.Manager { return s.microvms }
