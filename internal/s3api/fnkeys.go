package s3api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/hearthdev/hearth/internal/atomicfile"
)

// FunctionKeys mints the keys functions get for the S3 endpoint, as Lambda
// gives a function its role's credentials: an access key id that names the
// function ("ASIA" + its name in base32), a secret and a session token
// that are HMACs of that id under a key only the daemon holds (kept in a
// file of the data folder). Nothing is stored per function: the keys are
// the same in every environment and after a restart (so snapshots stay
// good), a function's key is no other's, and a new master key (delete the
// file) revokes them all. The keys are valid for the S3 endpoint only.
//
// In a cluster every host mints under the cluster's master (UseCluster),
// so that a bucket's owner accepts the keys a function got on any host;
// those key ids carry a tag of their master ("ASIA9xxxx" + the name: 9 is
// no base32 letter). A host keeps accepting the untagged ids of its own
// file's master, which environments and snapshots made before it joined
// carry — on its own buckets only: the other hosts do not know that
// master.
type FunctionKeys struct {
	master  []byte                 // the file's: untagged ids
	cluster atomic.Pointer[master] // the cluster's, once joined: mints
}

// master is a master key with the tag its key ids carry.
type master struct {
	key []byte
	tag string
}

// tagLen is a tag's length: tagMark and four base32 characters of a
// hash of the master.
const (
	tagMark = "9"
	tagLen  = 5
)

func tagOf(key []byte) string {
	h := sha256.Sum256(append([]byte("hearth function keys tag\x00"), key...))
	return tagMark + fnKeyEncoding.EncodeToString(h[:])[:tagLen-1]
}

// Master is the file's master key (offered to the cluster when it has
// none yet).
func (k *FunctionKeys) Master() []byte { return slices.Clone(k.master) }

// UseCluster makes key (32 bytes or more) the master new keys are minted
// under; keys of the file's master stay accepted.
func (k *FunctionKeys) UseCluster(key []byte) error {
	if len(key) < 32 {
		return fmt.Errorf("the cluster's function keys' master key is too short (%d bytes)", len(key))
	}
	k.cluster.Store(&master{key: slices.Clone(key), tag: tagOf(key)})
	return nil
}

// Credentials are a function's keys.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

const fnKeyPrefix = "ASIA"

var fnKeyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// OpenFunctionKeys reads the master key at path, making it if missing.
func OpenFunctionKeys(path string) (*FunctionKeys, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(path, b, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("%s: the function keys' master key is too short", path)
	}
	return &FunctionKeys{master: b}, nil
}

func mac(key []byte, kind, id string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(kind + "\x00" + id))
	return h.Sum(nil)
}

// keysFor are function's keys under key, their ids tagged with tag.
func keysFor(key []byte, tag, function string) Credentials {
	id := fnKeyPrefix + tag + fnKeyEncoding.EncodeToString([]byte(function))
	return Credentials{AccessKeyID: id,
		SecretAccessKey: base64.RawStdEncoding.EncodeToString(mac(key, "secret", id))[:40],
		SessionToken:    base64.RawURLEncoding.EncodeToString(mac(key, "token", id))}
}

// For returns function's keys: the cluster's once joined, else the
// file's.
func (k *FunctionKeys) For(function string) Credentials {
	if c := k.cluster.Load(); c != nil {
		return keysFor(c.key, c.tag, function)
	}
	return keysFor(k.master, "", function)
}

// keysOf are the keys of access key id, and whether this host knows its
// master: an untagged id is the file's master's, a tagged one the
// cluster's when the tags match.
func (k *FunctionKeys) keysOf(id string) (function string, c Credentials, ok bool) {
	rest, ok := strings.CutPrefix(id, fnKeyPrefix)
	if !ok || rest == "" {
		return "", Credentials{}, false
	}
	key, tag := k.master, ""
	if strings.HasPrefix(rest, tagMark) {
		cl := k.cluster.Load()
		if cl == nil || !strings.HasPrefix(rest, cl.tag) {
			return "", Credentials{}, false
		}
		key, tag, rest = cl.key, cl.tag, rest[len(cl.tag):]
	}
	b, err := fnKeyEncoding.DecodeString(rest)
	if err != nil || len(b) == 0 || fnKeyEncoding.EncodeToString(b) != rest {
		return "", Credentials{}, false
	}
	return string(b), keysFor(key, tag, string(b)), true
}

// Secret is the secret of a function's access key id (api.Keys).
func (k *FunctionKeys) Secret(id string) (string, bool) {
	_, c, ok := k.keysOf(id)
	if !ok {
		return "", false
	}
	return c.SecretAccessKey, true
}

// Function is the function whose key id is, if token is its session
// token.
func (k *FunctionKeys) Function(id, token string) (string, bool) {
	fn, c, ok := k.keysOf(id)
	if !ok || !hmac.Equal([]byte(c.SessionToken), []byte(token)) {
		return "", false
	}
	return fn, true
}
