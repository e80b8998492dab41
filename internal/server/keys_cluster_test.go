package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/broker/brokertest"
	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/vmproxy"
)

func TestProfileState(t *testing.T) {
	for name, want := range map[string]string{"default": keyCurrent, "current-2": keyCurrent, "ci": keyCurrent,
		"previous": keyPrevious, "previous-3": keyPrevious, "previousish": keyCurrent} {
		if got := profileState(name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}

func TestFileChanges(t *testing.T) {
	cur := func(s string) keyEntry { return keyEntry{Secret: s, State: keyCurrent} }
	prev := func(s string) keyEntry { return keyEntry{Secret: s, State: keyPrevious} }
	rev := keyEntry{State: keyRevoked}
	type m = map[string]keyEntry
	cases := []struct {
		name              string
		last, now, bucket m
		want              m
	}{
		{"nothing changed", m{"A": cur("a")}, m{"A": cur("a")}, m{"A": cur("a")}, m{}},
		{"a rotation: new key, old demoted", m{"A": cur("a")}, m{"N": cur("n"), "A": prev("a")}, m{"A": cur("a")},
			m{"N": cur("n"), "A": prev("a")}},
		{"a second rotation revokes the previous", m{"N": cur("n"), "A": prev("a")}, m{"M": cur("m"), "N": prev("n")},
			m{"N": cur("n"), "A": prev("a")}, m{"M": cur("m"), "N": prev("n"), "A": rev}},
		{"a revoked key is never brought back", m{}, m{"A": cur("a")}, m{"A": rev}, m{}},
		{"a key gone from the file and already revoked", m{"A": cur("a")}, m{}, m{"A": rev}, m{}},
		{"a file does not raise a key", m{"A": prev("a")}, m{"A": cur("a")}, m{"A": prev("a")}, m{}},
		{"a demotion the cluster already made", m{"A": cur("a")}, m{"A": prev("a")}, m{"A": prev("a")}, m{}},
		{"demotion keeps the cluster's secret", m{"A": cur("a")}, m{"A": prev("x")}, m{"A": cur("a")}, m{"A": prev("a")}},
	}
	for _, c := range cases {
		got := fileChanges(c.last, c.now, c.bucket)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
			continue
		}
		for id, w := range c.want {
			if g := got[id]; g.State != w.State || g.Secret != w.Secret {
				t.Errorf("%s: %s = %+v, want %+v", c.name, id, g, w)
			}
		}
	}
}

func TestMirrorProfiles(t *testing.T) {
	t0 := time.Unix(1000, 0)
	keys := map[string]keyEntry{
		"OLD":  {Secret: "o", State: keyCurrent, Time: t0},
		"NEW":  {Secret: "n", State: keyCurrent, Time: t0.Add(time.Minute)},
		"P1":   {Secret: "p1", State: keyPrevious, Time: t0},
		"P2":   {Secret: "p2", State: keyPrevious, Time: t0.Add(time.Hour)},
		"GONE": {State: keyRevoked, Time: t0.Add(2 * time.Hour)},
	}
	got := mirrorProfiles(keys)
	want := []Profile{{"default", "NEW", "n"}, {"current-2", "OLD", "o"}, {"previous", "P2", "p2"}, {"previous-2", "P1", "p1"}}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("profile %d: %v, want %v", i, got[i], want[i])
		}
	}
	// The mirror read back gives the same states.
	for id, e := range fileStates(got) {
		if keys[id].State != e.State {
			t.Errorf("%s: %s read back, %s in the bucket", id, e.State, keys[id].State)
		}
	}
}

// keyHost is one host's keys over its own broker of a cluster.
type keyHost struct {
	dir  string
	own  Profile // its key before it joined
	keys *clusterKeys
}

func startKeyHosts(t *testing.T, ctx context.Context) []keyHost {
	t.Helper()
	bs := brokertest.Cluster(t, ctx, 3)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hosts := make([]keyHost, 3)
	for i, b := range bs {
		dir := t.TempDir()
		if _, err := loadCredentials(CredentialsFile(dir)); err != nil {
			t.Fatal(err)
		}
		ps, err := ReadCredentials(CredentialsFile(dir))
		if err != nil || len(ps) != 1 {
			t.Fatalf("%v %v", ps, err)
		}
		kv, err := openKeysBucket(ctx, b.JetStream(), b.Replicas())
		if err != nil {
			t.Fatal(err)
		}
		k, err := joinKeys(ctx, kv, string(rune('a'+i)), CredentialsFile(dir), log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.stop)
		hosts[i] = keyHost{dir: dir, own: ps[0], keys: k}
	}
	return hosts
}

// eventually waits up to 5 s for ok.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Three hosts each with their own key: every host accepts every host's
// key; a rotation on c is accepted on a (and the old key as previous), a
// revocation on c holds on a and b, and survives a's file being put back.
func TestClusterKeysReplicated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hosts := startKeyHosts(t, ctx)
	var own []Profile
	for _, h := range hosts {
		own = append(own, h.own)
	}
	for _, h := range hosts {
		for _, p := range own {
			p := p
			eventually(t, "every host accepts every host's key", func() bool {
				s, ok := h.keys.Secret(p.AccessKeyID)
				return ok && s == p.SecretAccessKey
			})
		}
	}
	if _, ok := hosts[0].keys.Secret("AKIANOSUCHKEY"); ok {
		t.Fatal("an unknown key accepted")
	}
	// The files mirror the cluster: each holds the three keys.
	eventually(t, "a's file holds the three keys", func() bool {
		ps, _ := ReadCredentials(CredentialsFile(hosts[0].dir))
		return len(ps) == 3
	})
	aFile, _ := os.ReadFile(CredentialsFile(hosts[0].dir))

	// A rotation on c: accepted on a within seconds; the old keys stay as
	// previous.
	next, err := RotateKeys(hosts[2].dir, false)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, "c's new key accepted on a", func() bool {
		s, ok := hosts[0].keys.Secret(next.AccessKeyID)
		return ok && s == next.SecretAccessKey
	})
	t.Logf("a rotation on c accepted on a after %v", time.Since(start).Round(time.Millisecond))
	for _, p := range own {
		if _, ok := hosts[1].keys.Secret(p.AccessKeyID); !ok {
			t.Errorf("old key %s refused on b after a rotation without revoke", p.AccessKeyID)
		}
	}
	eventually(t, "a's file names c's new key default", func() bool {
		ps, _ := ReadCredentials(CredentialsFile(hosts[0].dir))
		return len(ps) > 0 && ps[0].Name == "default" && ps[0].AccessKeyID == next.AccessKeyID
	})

	// A revocation on c: every older key refused on a and b.
	newest, err := RotateKeys(hosts[2].dir, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts[:2] {
		eventually(t, "the newest key accepted, the others refused", func() bool {
			if _, ok := h.keys.Secret(newest.AccessKeyID); !ok {
				return false
			}
			for _, p := range append(own, next) {
				if _, ok := h.keys.Secret(p.AccessKeyID); ok {
					return false
				}
			}
			return true
		})
	}
	// A host's old file put back (a restore, a restart with a stale
	// copy) brings no revoked key back.
	if err := os.WriteFile(CredentialsFile(hosts[0].dir), aFile, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * keysPoll)
	for _, h := range hosts {
		for _, p := range own {
			if _, ok := h.keys.Secret(p.AccessKeyID); ok {
				t.Errorf("revoked key %s accepted again after an old file came back", p.AccessKeyID)
			}
		}
		if _, ok := h.keys.Secret(newest.AccessKeyID); !ok {
			t.Errorf("the old file put back on a revoked the cluster's only key")
		}
	}
	eventually(t, "a's file mirrors the cluster again", func() bool {
		ps, _ := ReadCredentials(CredentialsFile(hosts[0].dir))
		return len(ps) == 1 && ps[0].AccessKeyID == newest.AccessKeyID
	})
}

// The MicroVM token key is the first host's on every host, so a token
// minted on one verifies on the others.
func TestClusterTokenKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	var keys [][]byte
	for i, b := range bs {
		kv, err := openKeysBucket(ctx, b.JetStream(), b.Replicas())
		if err != nil {
			t.Fatal(err)
		}
		local := make([]byte, vmproxy.KeySize)
		_, _ = rand.Read(local)
		key, err := clusterTokenKey(ctx, kv, local)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && !bytes.Equal(key, local) {
			t.Fatal("the first host's key is not the cluster's")
		}
		keys = append(keys, key)
	}
	mint, _ := vmproxy.NewTokens(keys[0])
	tok, err := mint.Mint("mvm-1", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys[1:] {
		v, _ := vmproxy.NewTokens(k)
		if err := v.Verify(tok, "mvm-1", 8080, time.Now()); err != nil {
			t.Errorf("host %d refuses host a's token: %v", i+1, err)
		}
	}
}
