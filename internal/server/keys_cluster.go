package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/atomicfile"
	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/s3api"
	"github.com/hearthdev/hearth/internal/vmproxy"
)

// In a cluster the access keys are the cluster's, not a host's: they live
// in the replicated bucket KeysBucket, one entry per access key id, and
// every host accepts every key the bucket holds as current or previous. A
// host joining publishes the keys of its credentials file (create if
// absent: its clients keep working); its file is from then on a mirror of
// the bucket (default: the newest current key), and a change made to the
// file (`hearth keys rotate`, an edit) is carried to the bucket by the
// running daemon, from where every host's watch takes it. A revoked key
// stays in the bucket as a tombstone, so that a host coming back with an
// old file does not bring it back.
//
// The bucket holds the MicroVMs' endpoint-token key too (tokenKeyEntry):
// the first host's, so a token minted by any host verifies on all.

// KeysBucket is the replicated bucket of the cluster's keys.
const KeysBucket = "hearth_keys"

// Entry names in KeysBucket: access keys by id, and the token key.
const (
	accessKeyPrefix = "access."
	tokenKeyEntry   = "microvm-token"
	fnKeysEntry     = "function-keys-master"
)

// A key's states.
const (
	keyCurrent  = "current"
	keyPrevious = "previous"
	keyRevoked  = "revoked"
)

// keyRank orders the states: a change only ever moves a key down
// (current → previous → revoked), except a new key.
func keyRank(state string) int {
	switch state {
	case keyCurrent:
		return 2
	case keyPrevious:
		return 1
	}
	return 0
}

// keyEntry is an access key in KeysBucket.
type keyEntry struct {
	Secret string    `json:"secret,omitempty"` // none once revoked
	State  string    `json:"state"`
	Node   string    `json:"node"` // the host that wrote it
	Time   time.Time `json:"time"` // when it was made current (or changed)
}

// keysPoll is how often the daemon looks at its credentials file for a
// change made by hand or by `hearth keys rotate`.
const keysPoll = 250 * time.Millisecond

// profileState is a profile's key's state by its name: previous,
// previous-2, … are previous; default and any other are current.
func profileState(name string) string {
	if name == "previous" || strings.HasPrefix(name, "previous-") {
		return keyPrevious
	}
	return keyCurrent
}

// fileStates are the keys of a credentials file with their states.
func fileStates(ps []Profile) map[string]keyEntry {
	out := map[string]keyEntry{}
	for _, p := range ps {
		if p.AccessKeyID == "" {
			continue
		}
		e := keyEntry{Secret: p.SecretAccessKey, State: profileState(p.Name)}
		if old, ok := out[p.AccessKeyID]; ok && keyRank(old.State) > keyRank(e.State) {
			continue // listed twice: the higher state holds
		}
		out[p.AccessKeyID] = e
	}
	return out
}

// fileChanges are the bucket writes that carry a change of the file
// (from last, as last read or written, to now) to the cluster: a new key
// is published, a key whose state went down is demoted, a key gone from
// the file is revoked. A key the cluster revoked is never brought back;
// a key the file raised (previous → current) is left as the cluster has
// it (only a new key is current by a file's word).
func fileChanges(last, now, bucket map[string]keyEntry) map[string]keyEntry {
	out := map[string]keyEntry{}
	for id, e := range now {
		b, known := bucket[id]
		if known && b.State == keyRevoked {
			continue
		}
		l, inLast := last[id]
		switch {
		case !known:
			out[id] = e
		case inLast && keyRank(e.State) < keyRank(l.State) && keyRank(e.State) < keyRank(b.State):
			out[id] = keyEntry{Secret: b.Secret, State: e.State}
		}
	}
	for id := range last {
		if _, ok := now[id]; ok {
			continue
		}
		if b, ok := bucket[id]; ok && b.State != keyRevoked {
			out[id] = keyEntry{State: keyRevoked}
		}
	}
	return out
}

// mirrorProfiles is the credentials file that mirrors the bucket: the
// newest current key as default, the other current ones as current-2, …,
// the previous ones as previous, previous-2, … (newest first).
func mirrorProfiles(keys map[string]keyEntry) []Profile {
	type kv struct {
		id string
		e  keyEntry
	}
	var cur, prev []kv
	for id, e := range keys {
		switch e.State {
		case keyCurrent:
			cur = append(cur, kv{id, e})
		case keyPrevious:
			prev = append(prev, kv{id, e})
		}
	}
	newest := func(a, b kv) int {
		if c := b.e.Time.Compare(a.e.Time); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	}
	slices.SortFunc(cur, newest)
	slices.SortFunc(prev, newest)
	var out []Profile
	for i, k := range cur {
		name := "default"
		if i > 0 {
			name = fmt.Sprintf("current-%d", i+1)
		}
		out = append(out, Profile{Name: name, AccessKeyID: k.id, SecretAccessKey: k.e.Secret})
	}
	for i, k := range prev {
		out = append(out, Profile{Name: previousName(i + 1), AccessKeyID: k.id, SecretAccessKey: k.e.Secret})
	}
	return out
}

// renderProfiles is a credentials file's text.
func renderProfiles(ps []Profile) []byte {
	var b bytes.Buffer
	for _, p := range ps {
		fmt.Fprintf(&b, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n\n", p.Name, p.AccessKeyID, p.SecretAccessKey)
	}
	return b.Bytes()
}

// clusterKeys are the keys this host accepts in a cluster: the bucket's,
// as its watch delivers them.
type clusterKeys struct {
	kv   jetstream.KeyValue
	node string
	path string // the credentials file
	log  *slog.Logger

	mu   sync.Mutex
	keys map[string]keyEntry // access key id → entry, the bucket's

	// Owned by run: the file as last read or written.
	last        map[string]keyEntry
	lastContent []byte

	cancel context.CancelFunc
	done   chan struct{}
}

// Secret is an access key's secret when the cluster accepts it.
func (k *clusterKeys) Secret(id string) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.keys[id]
	if !ok || e.State == keyRevoked || e.Secret == "" {
		return "", false
	}
	return e.Secret, true
}

func (k *clusterKeys) snapshot() map[string]keyEntry {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]keyEntry, len(k.keys))
	for id, e := range k.keys {
		out[id] = e
	}
	return out
}

// openKeysBucket makes (or opens) the replicated keys bucket.
func openKeysBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := broker.Retry(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: KeysBucket,
			Description: "Hearth's access keys and MicroVM token key", History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("keys bucket: %w", err)
	}
	return kv, nil
}

// joinKeys publishes this host's keys (those the cluster does not know
// yet; a key this file demoted since is demoted), loads the cluster's,
// mirrors them into the file, and keeps following both until stop.
func joinKeys(ctx context.Context, kv jetstream.KeyValue, node, path string, log *slog.Logger) (*clusterKeys, error) {
	k := &clusterKeys{kv: kv, node: node, path: path, log: log, keys: map[string]keyEntry{}}
	ps, err := ReadCredentials(path)
	if err != nil {
		return nil, err
	}
	for id, e := range fileStates(ps) {
		if err := broker.Retry(ctx, func(ctx context.Context) error { return k.publish(ctx, id, e) }); err != nil {
			return nil, fmt.Errorf("publishing access key %s: %w", id, err)
		}
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w, err := kv.Watch(wctx, accessKeyPrefix+">")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watching the keys: %w", err)
	}
	// The bucket's keys as they are now, before the daemon serves.
	for u := range w.Updates() {
		if u == nil {
			break
		}
		k.apply(u)
	}
	k.cancel, k.done = cancel, make(chan struct{})
	k.mirror()
	go k.run(wctx, w)
	return k, nil
}

// publish adds a file's key to the bucket if it is not there, or demotes
// the bucket's to the file's lower state (a rotation made while the
// daemon was down); a key revoked stays revoked.
func (k *clusterKeys) publish(ctx context.Context, id string, e keyEntry) error {
	e.Node, e.Time = k.node, time.Now().UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = k.kv.Create(ctx, accessKeyPrefix+id, b)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	cur, err := k.kv.Get(ctx, accessKeyPrefix+id)
	if err != nil {
		return err
	}
	var have keyEntry
	if err := json.Unmarshal(cur.Value(), &have); err != nil {
		return fmt.Errorf("access key %s in the bucket: %w", id, err)
	}
	if keyRank(e.State) >= keyRank(have.State) {
		return nil
	}
	e.Secret = have.Secret
	b, _ = json.Marshal(e)
	_, err = k.kv.Update(ctx, accessKeyPrefix+id, b, cur.Revision())
	return err
}

// apply takes one bucket update into the keys this host accepts.
func (k *clusterKeys) apply(u jetstream.KeyValueEntry) {
	id := strings.TrimPrefix(u.Key(), accessKeyPrefix)
	k.mu.Lock()
	defer k.mu.Unlock()
	if u.Operation() != jetstream.KeyValuePut {
		delete(k.keys, id)
		return
	}
	var e keyEntry
	if err := json.Unmarshal(u.Value(), &e); err != nil {
		k.log.Warn("keys bucket: an entry that is not a key", "key", u.Key(), "err", err)
		return
	}
	k.keys[id] = e
}

// run follows the bucket (every host's changes) and the file (this
// host's), one at a time, so that a mirror never overwrites a change to
// the file not yet carried to the bucket.
func (k *clusterKeys) run(ctx context.Context, w jetstream.KeyWatcher) {
	defer close(k.done)
	defer func() { _ = w.Stop() }()
	tick := time.NewTicker(keysPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-w.Updates():
			if !ok {
				return
			}
			if u != nil {
				k.apply(u)
			}
			// Take what else came before writing the file once.
			for more := true; more; {
				select {
				case u, ok := <-w.Updates():
					if !ok {
						return
					}
					if u != nil {
						k.apply(u)
					}
				default:
					more = false
				}
			}
			k.syncFile(ctx)
			k.mirror()
		case <-tick.C:
			k.syncFile(ctx)
		}
	}
}

// syncFile carries a change of the file, if any, to the bucket.
func (k *clusterKeys) syncFile(ctx context.Context) {
	content, err := os.ReadFile(k.path)
	if err != nil || bytes.Equal(content, k.lastContent) {
		return
	}
	ps, err := ReadCredentials(k.path)
	if err != nil {
		return
	}
	now := fileStates(ps)
	bucket := k.snapshot()
	changes := fileChanges(k.last, now, bucket)
	if !anyValid(bucket, changes) {
		// A file that would leave no valid key (emptied, or an old copy
		// put back whose keys were all revoked) would lock every client
		// out of every host: the cluster's keys are written back over it.
		k.log.Warn("the credentials file would leave the cluster no valid key: ignored, and written back from the cluster", "file", k.path)
		k.last, k.lastContent = now, content
		k.mirror()
		return
	}
	for id, e := range changes {
		e.Node, e.Time = k.node, time.Now().UTC()
		b, _ := json.Marshal(e)
		wctx, cancel := context.WithTimeout(ctx, broker.LeaderWait)
		_, err := k.kv.Put(wctx, accessKeyPrefix+id, b)
		cancel()
		if err != nil {
			// Tried again at the next poll: the file is not marked seen.
			k.log.Warn("carrying a key change to the cluster", "key", id, "state", e.State, "err", err)
			return
		}
		k.mu.Lock()
		k.keys[id] = e
		k.mu.Unlock()
		k.log.Info("access key changed in the cluster", "key", id, "state", e.State)
	}
	k.last, k.lastContent = now, content
	// A mirror skipped while this change was not carried yet is done now
	// (a no-op when the file already is the cluster's keys).
	k.mirror()
}

// anyValid reports whether some key is current or previous once changes
// are made to bucket.
func anyValid(bucket, changes map[string]keyEntry) bool {
	for id, e := range bucket {
		if c, ok := changes[id]; ok {
			e = c
		}
		if e.State != keyRevoked {
			return true
		}
	}
	for _, e := range changes {
		if e.State != keyRevoked {
			return true
		}
	}
	return false
}

// mirror writes the bucket's keys into the file, when they differ, unless
// the file changed since syncFile last read it (a rotation just made):
// that change goes to the bucket first, at the next poll, and the mirror
// after it. The credentials lock keeps a rotation from landing between
// the check and the write.
func (k *clusterKeys) mirror() {
	ps := mirrorProfiles(k.snapshot())
	if len(ps) == 0 {
		return // never an empty file: nothing could sign
	}
	content := renderProfiles(ps)
	unlock, err := lockCredentials(k.path)
	if err != nil {
		k.log.Warn("mirroring the cluster's keys into the credentials file", "err", err)
		return
	}
	defer unlock()
	cur, err := os.ReadFile(k.path)
	if err == nil && bytes.Equal(cur, content) {
		k.last, k.lastContent = fileStates(ps), content
		return
	}
	if err == nil && k.lastContent != nil && !bytes.Equal(cur, k.lastContent) {
		return // changed meanwhile: carried first
	}
	if err := atomicfile.Write(k.path, content, 0o600); err != nil {
		k.log.Warn("mirroring the cluster's keys into the credentials file", "err", err)
		return
	}
	k.last, k.lastContent = fileStates(ps), content
}

// stop ends the following.
func (k *clusterKeys) stop() {
	if k == nil || k.cancel == nil {
		return
	}
	k.cancel()
	<-k.done
}

// clusterTokenKey is the cluster's MicroVM token key: the bucket's, or
// this host's (local, KeySize bytes) when it is the first to offer one.
func clusterTokenKey(ctx context.Context, kv jetstream.KeyValue, local []byte) ([]byte, error) {
	key, err := clusterSecret(ctx, kv, tokenKeyEntry, local)
	if err != nil {
		return nil, fmt.Errorf("the cluster's MicroVM token key: %w", err)
	}
	if len(key) != vmproxy.KeySize {
		return nil, fmt.Errorf("the cluster's MicroVM token key: %d bytes, want %d", len(key), vmproxy.KeySize)
	}
	return key, nil
}

// clusterSecret is the bucket's secret at entry, or local when this host
// is the first to offer one (create-if-absent decides a race).
func clusterSecret(ctx context.Context, kv jetstream.KeyValue, entry string, local []byte) ([]byte, error) {
	var key []byte
	err := broker.Retry(ctx, func(ctx context.Context) error {
		_, err := kv.Create(ctx, entry, []byte(base64.StdEncoding.EncodeToString(local)))
		if err == nil {
			key = local
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		e, err := kv.Get(ctx, entry)
		if err != nil {
			return err
		}
		key, err = base64.StdEncoding.DecodeString(string(e.Value()))
		return err
	})
	return key, err
}

// openClusterKeys makes the daemon's keys the cluster's; standalone it
// does nothing.
func (s *Server) openClusterKeys(ctx context.Context, creds *credentials) error {
	if s.member == nil {
		return nil
	}
	kv, err := openKeysBucket(ctx, s.broker.JetStream(), s.broker.Replicas())
	if err != nil {
		return err
	}
	s.keysKV = kv
	k, err := joinKeys(ctx, kv, s.cfg.Cluster.Node, creds.path, s.log)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	creds.cluster.Store(k)
	s.clusterKeys = k
	return nil
}

// syncTokenKey makes the token key file hold the cluster's key before
// the MicroVMs' manager reads it (tokens minted by this host alone before
// it joined no longer verify, unless it was the first).
func (s *Server) syncTokenKey(ctx context.Context, path string) error {
	if s.keysKV == nil {
		return nil
	}
	if _, err := vmproxy.LoadTokens(path); err != nil { // makes one if none
		return err
	}
	local, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	key, err := clusterTokenKey(ctx, s.keysKV, local)
	if err != nil {
		return err
	}
	if bytes.Equal(key, local) {
		return nil
	}
	s.log.Info("MicroVM endpoint tokens: taking the cluster's key")
	return atomicfile.Write(path, key, 0o600)
}

// syncFunctionKeys makes the buckets' function keys minted under the
// cluster's master (this host's own when it is the first to offer one),
// so that a bucket's owner accepts the keys a function got on any host;
// keys of this host's own master (environments and snapshots made
// before it joined) stay accepted here.
func (s *Server) syncFunctionKeys(ctx context.Context, fk *s3api.FunctionKeys) error {
	if s.keysKV == nil {
		return nil
	}
	key, err := clusterSecret(ctx, s.keysKV, fnKeysEntry, fk.Master())
	if err != nil {
		return fmt.Errorf("the cluster's function keys' master: %w", err)
	}
	return fk.UseCluster(key)
}
