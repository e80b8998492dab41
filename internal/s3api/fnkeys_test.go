package s3api

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestFunctionKeysClusterMaster(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenFunctionKeys(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenFunctionKeys(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Master(), b.Master()) {
		t.Fatal("two data folders made the same master")
	}
	oldA := a.For("fn") // minted by a alone, before joining (a snapshot keeps it)
	oldB := b.For("fn")
	if strings.HasPrefix(oldA.AccessKeyID, fnKeyPrefix+tagMark) {
		t.Fatalf("a standalone key is tagged: %s", oldA.AccessKeyID)
	}
	// The cluster takes a's master (a was first); b takes it too.
	if err := a.UseCluster(a.Master()); err != nil {
		t.Fatal(err)
	}
	if err := b.UseCluster(a.Master()); err != nil {
		t.Fatal(err)
	}
	if err := b.UseCluster([]byte("short")); err == nil {
		t.Fatal("a short cluster master was taken")
	}
	newA, newB := a.For("fn"), b.For("fn")
	if newA != newB {
		t.Fatalf("the hosts mint different keys for one function in a cluster: %+v %+v", newA, newB)
	}
	forged := newB
	forged.AccessKeyID = fnKeyPrefix + tagMark + "ZZZZ" + strings.TrimPrefix(newB.AccessKeyID, fnKeyPrefix+tagOf(a.Master()))
	other := b.For("other")
	for _, tc := range []struct {
		name  string
		keys  *FunctionKeys
		creds Credentials
		want  bool
	}{
		{"cluster key minted on b, checked on a", a, newB, true},
		{"cluster key minted on a, checked on b", b, newA, true},
		{"a's key from before joining, on a", a, oldA, true},
		{"b's key from before joining, on b", b, oldB, true},
		{"b's key from before joining, on a", a, oldB, false},
		{"a's key from before joining, on b", b, oldA, false},
		{"an unknown master's tag", a, forged, false},
		{"another function's token", a, Credentials{AccessKeyID: newB.AccessKeyID, SessionToken: other.SessionToken}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn, ok := tc.keys.Function(tc.creds.AccessKeyID, tc.creds.SessionToken)
			secret, sok := tc.keys.Secret(tc.creds.AccessKeyID)
			got := ok && sok && fn == "fn" && secret == tc.creds.SecretAccessKey
			if got != tc.want {
				t.Fatalf("accepted %v (function %q, secret matches %v), want %v", got, fn, secret == tc.creds.SecretAccessKey, tc.want)
			}
		})
	}
}
