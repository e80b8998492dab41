package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/queue"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/sqsapi"
)

// The daemon's events: the embedded JetStream broker (its store in
// data/jetstream), the queues on it, and the SQS API on the API listener.

// receiptKeyFile holds the key that signs receipt handles, so that the
// handles given before a restart stay valid after it.
func receiptKeyFile(dataDir string) string { return filepath.Join(dataDir, "queue-receipt.key") }

// openEvents starts the broker and the queues.
func (s *Server) openEvents(ctx context.Context) error {
	key, err := loadOrMakeKey(receiptKeyFile(s.cfg.DataDir))
	if err != nil {
		return fmt.Errorf("queues: %w", err)
	}
	if err := s.openBroker(ctx); err != nil {
		return err
	}
	if err := s.openConfigLog(ctx); err != nil {
		s.closeBroker(ctx)
		return err
	}
	b := s.broker
	q, err := queue.New(ctx, queue.Config{Store: s.store, JetStream: b.JetStream(), Replicas: b.Replicas(), Conn: b.Conn(), Region: s.region(), Key: key, Sync: s.configSync(), Log: s.log})
	if err != nil {
		s.closeBroker(ctx)
		return err
	}
	s.queues = q
	// SQS requests are signed for service "sqs" in the daemon's region,
	// with the same keys as the Lambda API's.
	s.sqs = sqsapi.New(sqsapi.Config{Queues: q, Verifier: s.verifier.InRegion(s.cfg.Region).ForService(sqsapi.SigningService, sqsapi.MaxRequestBytes), Log: s.log})
	s.metrics.watchQueues(q)
	return nil
}

func (s *Server) region() string {
	if s.cfg.Region == "" {
		return sandbox.DefaultRegion
	}
	return s.cfg.Region
}

func loadOrMakeKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil && len(key) >= 32 {
		return key, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return nil, err
	}
	return key, os.Rename(tmp, path)
}

// withSQS sends the SQS API's requests (X-Amz-Target: AmazonSQS.*) to
// it, and the others to next.
func (s *Server) withSQS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sqsapi.IsSQS(r) {
			s.sqs.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Queues are the daemon's queues.
func (s *Server) Queues() *queue.Service { return s.queues }

// Broker is the daemon's JetStream broker.
func (s *Server) Broker() *broker.Broker { return s.broker }
