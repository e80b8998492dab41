package server

import (
	"context"

	"github.com/hearthdev/hearth/internal/meterlog"
)

// openMeterLog makes a host of a cluster publish its meter writes and
// keep the other hosts' (package meterlog), so that `hearth cost`, the
// usage routes and the console cover the cluster. Standalone, nothing
// changes: the meter is this host's alone, and no outbox is kept.
func (s *Server) openMeterLog(ctx context.Context) error {
	if !s.cfg.Cluster.enabled() {
		return nil
	}
	l, err := meterlog.Open(ctx, meterlog.Config{JetStream: s.broker.JetStream(), Replicas: s.broker.Replicas(), Node: s.cfg.Cluster.Node,
		Store: s.store, Log: s.log.With("part", "meterlog")})
	if err != nil {
		return err
	}
	s.meterLog = l
	return nil
}

// closeMeterLog stops publishing and following, before the broker goes
// (what was not published stays in the outbox for the next start).
func (s *Server) closeMeterLog() {
	if s.meterLog != nil {
		s.meterLog.Close()
		s.meterLog = nil
	}
}
