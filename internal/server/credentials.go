package server

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
)

// credentials are the daemon's access keys, kept in the AWS shared
// credentials format so that AWS_SHARED_CREDENTIALS_FILE=<data>/credentials
// makes the aws CLI and the SDKs sign for Hearth.
type credentials struct {
	keys map[string]string // access key id → secret
}

func (c *credentials) Secret(id string) (string, bool) {
	s, ok := c.keys[id]
	return s, ok
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
		id := "AKIA" + randomString("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
		secret := randomString("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40)
		body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", id, secret)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			return nil, err
		}
	}
	profiles, err := ReadCredentials(path)
	if err != nil {
		return nil, err
	}
	c := &credentials{keys: map[string]string{}}
	for _, p := range profiles {
		c.keys[p.AccessKeyID] = p.SecretAccessKey
	}
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
