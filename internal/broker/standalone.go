package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Standalone → cluster. A standalone JetStream's streams are not carried
// into a cluster: a server that restarts clustered on the same store
// orphans them (its meta group does not know them) and deletes them
// (nats-io/nats-server#5467). So a host whose data folder holds a
// standalone store, started in cluster mode (or with an external NATS),
// moves that store aside before its server starts, and copies its streams
// into the cluster once JetStream answers: each stream is made there
// (same configuration, the cluster's replicas) unless it exists, and its
// messages are published again in order, with their headers. Hearth's
// streams are work queues (what is acknowledged is gone), so what is left
// is exactly the work not done yet: the asynchronous events and queue
// messages the host held. Consumers are not copied: the daemon makes its
// own again. A copy cut short (the host dies during it) is done again at
// the next start: its messages may then be there twice (at least once,
// as Lambda's). The moved store is kept, marked imported, for the
// operator to delete.

// importedMark marks a moved store as copied.
const importedMark = "IMPORTED"

// standaloneSuffix names a moved store: <dir>.standalone-<time>.
const standaloneSuffix = ".standalone-"

// isStandaloneStore reports whether dir (a broker's Dir) holds a
// standalone JetStream store with streams: streams under the global
// account and no cluster meta group.
func isStandaloneStore(dir string) bool {
	js := filepath.Join(dir, "jetstream")
	if _, err := os.Stat(filepath.Join(js, "$SYS", "_js_")); err == nil {
		return false
	}
	entries, err := os.ReadDir(filepath.Join(js, server.DEFAULT_GLOBAL_ACCOUNT, "streams"))
	return err == nil && len(entries) > 0
}

// setAsideStandalone moves a standalone store out of dir's way, before a
// clustered server starts on dir.
func setAsideStandalone(dir string, log *slog.Logger) error {
	if !isStandaloneStore(dir) {
		return nil
	}
	to := dir + standaloneSuffix + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(dir, to); err != nil {
		return fmt.Errorf("broker: setting the standalone store aside: %w", err)
	}
	log.Warn("this data folder's JetStream store is a standalone one: it is set aside and its streams are copied into the cluster", "from", dir, "to", to)
	return nil
}

// pendingImports are the set-aside stores of dir not copied yet.
func pendingImports(dir string) ([]string, error) {
	matches, err := filepath.Glob(dir + standaloneSuffix + "*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		if _, err := os.Stat(filepath.Join(m, importedMark)); errors.Is(err, os.ErrNotExist) {
			out = append(out, m)
		}
	}
	return out, nil
}

// importPending copies every set-aside store of dir into js.
func importPending(ctx context.Context, dir string, js jetstream.JetStream, replicas int, log *slog.Logger) error {
	if dir == "" {
		return nil
	}
	pending, err := pendingImports(dir)
	if err != nil {
		return err
	}
	for _, p := range pending {
		rep, err := ImportStandalone(ctx, p, js, replicas, log)
		if err != nil {
			return fmt.Errorf("broker: copying the standalone store %s into the cluster: %w", p, err)
		}
		if err := os.WriteFile(filepath.Join(p, importedMark), []byte(rep.String()+"\n"), 0o600); err != nil {
			return err
		}
		log.Warn("the standalone store's streams are in the cluster; the old store is kept", "store", p, "streams", rep.Streams, "messages", rep.Messages)
	}
	return nil
}

// ImportReport counts what an import copied.
type ImportReport struct {
	Streams, Messages int
}

func (r ImportReport) String() string {
	return fmt.Sprintf("%d streams, %d messages", r.Streams, r.Messages)
}

// ImportStandalone opens the standalone store in dir (a broker's Dir) with
// a server of its own that listens nowhere, and copies its streams into
// dst with replicas copies each.
func ImportStandalone(ctx context.Context, dir string, dst jetstream.JetStream, replicas int, log *slog.Logger) (ImportReport, error) {
	var rep ImportReport
	ns, err := server.NewServer(&server.Options{ServerName: "hearth-import", JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true})
	if err != nil {
		return rep, err
	}
	ns.SetLoggerV2(logger{log.With("part", "broker-import")}, false, false, false)
	go ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(30 * time.Second) {
		return rep, errors.New("the old store's server is not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return rep, err
	}
	defer nc.Close()
	src, err := jetstream.New(nc)
	if err != nil {
		return rep, err
	}
	names := src.StreamNames(ctx)
	var list []string
	for n := range names.Name() {
		list = append(list, n)
	}
	if err := names.Err(); err != nil {
		return rep, err
	}
	for _, name := range list {
		n, err := copyStream(ctx, src, dst, name, replicas)
		if err != nil {
			return rep, fmt.Errorf("stream %s: %w", name, err)
		}
		rep.Streams++
		rep.Messages += n
	}
	return rep, nil
}

// copyStream makes stream name in dst (unless there) and publishes the
// messages src holds into it, in order.
func copyStream(ctx context.Context, src, dst jetstream.JetStream, name string, replicas int) (int, error) {
	s, err := src.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info := s.CachedInfo()
	cfg := info.Config
	cfg.Replicas = replicas
	if _, err := dst.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return 0, err
	}
	n := 0
	if info.State.Msgs == 0 {
		return 0, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // acknowledged (work queue) or deleted
		}
		if err != nil {
			return n, err
		}
		out := nats.NewMsg(m.Subject)
		out.Data = m.Data
		for k, vs := range m.Header {
			// Expectations were about the old stream's sequences.
			if strings.HasPrefix(k, "Nats-Expected-") {
				continue
			}
			for _, v := range vs {
				out.Header.Add(k, v)
			}
		}
		if _, err := dst.PublishMsg(ctx, out, jetstream.WithExpectStream(name)); err != nil {
			return n, fmt.Errorf("message %d: %w", seq, err)
		}
		n++
	}
	return n, nil
}
