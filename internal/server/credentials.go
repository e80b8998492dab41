package server

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hearthdev/hearth/internal/atomicfile"
)

// credentials are the daemon's access keys, kept in the AWS shared
// credentials format so that AWS_SHARED_CREDENTIALS_FILE=<data>/credentials
// makes the aws CLI and the SDKs sign for Hearth.
type credentials struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	keys    map[string]string // access key id → secret

	// cluster, in a cluster, holds the keys every host accepts
	// (keys_cluster.go); the file is then its mirror.
	cluster atomic.Pointer[clusterKeys]
}

// Secret returns the secret of an access key. The file is read again when
// it changed, so a rotation takes effect without a restart.
func (c *credentials) Secret(id string) (string, bool) {
	if ck := c.cluster.Load(); ck != nil {
		return ck.Secret(id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if fi, err := os.Stat(c.path); err == nil && !fi.ModTime().Equal(c.modTime) {
		if keys, err := readKeys(c.path); err == nil && len(keys) > 0 {
			c.keys, c.modTime = keys, fi.ModTime()
		}
	}
	s, ok := c.keys[id]
	return s, ok
}

func readKeys(path string) (map[string]string, error) {
	profiles, err := ReadCredentials(path)
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for _, p := range profiles {
		if p.AccessKeyID != "" {
			keys[p.AccessKeyID] = p.SecretAccessKey
		}
	}
	return keys, nil
}

func newKey() Profile {
	return Profile{Name: "default",
		AccessKeyID:     "AKIA" + randomString("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
		SecretAccessKey: randomString("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40)}
}

func writeProfiles(path string, ps []Profile) error {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n\n", p.Name, p.AccessKeyID, p.SecretAccessKey)
	}
	return atomicfile.Write(path, []byte(b.String()), 0o600)
}

// RotateKeys makes a new default key. The ones it replaces (profile
// default, and in a cluster the other current-* keys) stay valid as
// profiles previous, previous-2, … until the next rotation, so clients
// can move over, unless revoke is set; the previous ones go. In a cluster
// the running daemon carries the change to every host (keys_cluster.go).
func RotateKeys(dataDir string, revoke bool) (Profile, error) {
	path := CredentialsFile(dataDir)
	unlock, err := lockCredentials(path)
	if err != nil {
		return Profile{}, err
	}
	defer unlock()
	old, err := ReadCredentials(path)
	if err != nil {
		return Profile{}, fmt.Errorf("no keys to rotate in %s: %w", path, err)
	}
	next := []Profile{newKey()}
	for _, p := range old {
		if profileState(p.Name) == keyCurrent && !revoke {
			p.Name = previousName(len(next))
			next = append(next, p)
		}
	}
	return next[0], writeProfiles(path, next)
}

// previousName is the name of the n-th (from 1) previous key's profile.
func previousName(n int) string {
	if n == 1 {
		return "previous"
	}
	return fmt.Sprintf("previous-%d", n)
}

func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		x, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[x.Int64()]
	}
	return string(b)
}

// loadCredentials reads the credentials file, creating it with a new key
// (profile default, mode 0600) if there is none.
func loadCredentials(path string) (*credentials, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := writeProfiles(path, []Profile{newKey()}); err != nil {
			return nil, err
		}
	}
	c := &credentials{path: path}
	c.Secret("") // loads the file
	if len(c.keys) == 0 {
		return nil, fmt.Errorf("%s holds no access key", path)
	}
	return c, nil
}

// Profile is one profile of a shared credentials file.
type Profile struct {
	Name, AccessKeyID, SecretAccessKey string
}

// ReadCredentials parses a shared credentials file.
func ReadCredentials(path string) ([]Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Profile
	var cur *Profile
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			out = append(out, Profile{Name: strings.TrimSpace(line[1 : len(line)-1])})
			cur = &out[len(out)-1]
		case cur != nil:
			k, v, _ := strings.Cut(line, "=")
			switch strings.TrimSpace(k) {
			case "aws_access_key_id":
				cur.AccessKeyID = strings.TrimSpace(v)
			case "aws_secret_access_key":
				cur.SecretAccessKey = strings.TrimSpace(v)
			}
		}
	}
	return out, sc.Err()
}

// lockCredentials holds the lock that orders the credentials file's
// read-modify-writes across processes (`hearth keys rotate` and, in a
// cluster, the daemon's mirror of the cluster's keys), so that neither
// overwrites a change the other has just made. The lock is a file beside
// it: the credentials file itself is replaced by rename.
func lockCredentials(path string) (func(), error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("credentials lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("credentials lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
