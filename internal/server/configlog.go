package server

import (
	"context"
	"fmt"
	"github.com/hearthdev/hearth/internal/cluster"

	"github.com/hearthdev/hearth/internal/configlog"
	"github.com/hearthdev/hearth/internal/store"
)

// ConfigLog is whether and how this host's configuration (functions,
// versions, aliases, URLs, layers, queues, mappings, MicroVM images)
// follows the log the hosts of a cluster share, on the broker's
// JetStream. Off, the default, the configuration is this host's SQLite's
// alone, as it always was; a host of a cluster (ClusterOptions) always
// follows it, named by its node, with the broker's replica count.
type ConfigLog struct {
	Enabled bool
	// Host names this host in the entries it writes (for the logs).
	Host string
	// Replicas is how many servers keep the log and the zips: 1 on a
	// standalone broker, the cluster's replica count in a cluster.
	Replicas int
	// CheckpointEvery is how many entries since the last checkpoint make
	// a host write one and purge the log below it: 0 is
	// store.DefaultCheckpointEvery, negative never.
	CheckpointEvery int
}

// openConfigLog makes the store follow the configuration log, once the
// broker runs and before anything reads the configuration (the queues,
// the invocation path, the API). It returns once this host has the
// entries the log had.
func (s *Server) openConfigLog(ctx context.Context) error {
	c := s.cfg.ConfigLog
	if o := s.cfg.Cluster; o.enabled() {
		// A host of a cluster shares the cluster's configuration.
		c.Enabled = true
		if c.Host == "" {
			c.Host = o.Node
		}
	}
	if !c.Enabled {
		return nil
	}
	if c.Replicas <= 0 {
		c.Replicas = s.broker.Replicas()
	}
	l, err := configlog.Open(ctx, configlog.Config{JetStream: s.broker.JetStream(), Replicas: c.Replicas})
	if err != nil {
		return err
	}
	if err := s.store.Replicate(ctx, store.Replication{Log: l, Blobs: l, Host: c.Host,
		CheckpointEvery: c.CheckpointEvery, MayCheckpoint: s.mayCheckpoint, Logger: s.log.With("part", "configlog")}); err != nil {
		return fmt.Errorf("configuration log: %w", err)
	}
	s.configLog = l
	s.log.Info("configuration follows the log", "host", c.Host, "replicas", c.Replicas, "applied", s.store.AppliedSequence())
	return nil
}

// mayCheckpoint lets the configuration log be checkpointed (and purged)
// only once every host the cluster knows applies checkpoints.
func (s *Server) mayCheckpoint() bool {
	return s.member == nil || s.member.AllSpeak(cluster.CheckpointProtocol)
}
