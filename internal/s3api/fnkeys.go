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
	"strings"

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
type FunctionKeys struct {
	master []byte
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

func (k *FunctionKeys) mac(kind, id string) []byte {
	h := hmac.New(sha256.New, k.master)
	h.Write([]byte(kind + "\x00" + id))
	return h.Sum(nil)
}

// For returns function's keys.
func (k *FunctionKeys) For(function string) Credentials {
	id := fnKeyPrefix + fnKeyEncoding.EncodeToString([]byte(function))
	return Credentials{AccessKeyID: id,
		SecretAccessKey: base64.RawStdEncoding.EncodeToString(k.mac("secret", id))[:40],
		SessionToken:    base64.RawURLEncoding.EncodeToString(k.mac("token", id))}
}

// functionOf is the function an access key id names.
func functionOf(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, fnKeyPrefix)
	if !ok || rest == "" {
		return "", false
	}
	b, err := fnKeyEncoding.DecodeString(rest)
	if err != nil || fnKeyPrefix+fnKeyEncoding.EncodeToString(b) != id {
		return "", false
	}
	return string(b), true
}

// Secret is the secret of a function's access key id (api.Keys).
func (k *FunctionKeys) Secret(id string) (string, bool) {
	fn, ok := functionOf(id)
	if !ok {
		return "", false
	}
	return k.For(fn).SecretAccessKey, true
}

// Function is the function whose key id is, if token is its session
// token.
func (k *FunctionKeys) Function(id, token string) (string, bool) {
	fn, ok := functionOf(id)
	if !ok || !hmac.Equal([]byte(k.For(fn).SessionToken), []byte(token)) {
		return "", false
	}
	return fn, true
}
