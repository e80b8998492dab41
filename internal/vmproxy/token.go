package vmproxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/atomicfile"
	"github.com/hearthdev/hearth/internal/microvm"
)

// An endpoint token (CreateMicrovmAuthToken's X-aws-proxy-auth) is
//
//	base64url(payload) "." base64url(HMAC-SHA256(key, tokenDomain || payload))
//
// with payload = version byte, expiry (uvarint Unix seconds), number of
// port ranges (uvarint), each range as two big-endian uint16, then the
// MicroVM's id. It is stateless: the daemon keeps only the key, so a token
// needs no table, and survives a restart as long as the key file does.
// Both parts use base64url without padding, whose characters are HTTP
// token characters: a token fits in a header and in a WebSocket
// subprotocol (lambda-microvms.authentication.<token>).

// Token errors: Verify's errors match one of them.
var (
	ErrMalformed      = errors.New("malformed token")
	ErrBadSignature   = errors.New("token not valid: not minted by this Hearth, or altered")
	ErrExpired        = errors.New("token expired")
	ErrWrongMicroVM   = errors.New("token is for another MicroVM")
	ErrPortNotAllowed = errors.New("port not allowed by the token")
)

const (
	tokenVersion = 1
	// tokenDomain separates these MACs from any other use of the key.
	tokenDomain = "hearth microvm endpoint token\x00"
	// KeySize is the secret key's size.
	KeySize = 32
	// MaxPortRanges bounds a token's port ranges (AWS gives no bound; the
	// token must fit in a header).
	MaxPortRanges = 64
	// MaxIDLen bounds a MicroVM id (AWS's identifiers are ≤ 256).
	MaxIDLen = 256
	// maxPayload is the longest payload Mint makes: version, expiry (≤ 10
	// bytes as uvarint), count (1), ranges, id.
	maxPayload = 1 + binary.MaxVarintLen64 + 1 + 4*MaxPortRanges + MaxIDLen
	// MaxTokenLen bounds a token's length; Verify refuses longer input
	// before decoding anything.
	MaxTokenLen = (maxPayload*4+2)/3 + 1 + (sha256.Size*4+2)/3
)

var b64 = base64.RawURLEncoding.Strict()

// Tokens mints and verifies endpoint tokens with one secret key.
type Tokens struct {
	key []byte
}

// NewTokens returns Tokens with key, which must be KeySize bytes of
// secret randomness.
func NewTokens(key []byte) (*Tokens, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("token key: %d bytes, want %d", len(key), KeySize)
	}
	return &Tokens{key: append([]byte(nil), key...)}, nil
}

// LoadTokens reads the key at path, or makes it (KeySize random bytes,
// mode 0600, written atomically) when there is none, so that the tokens
// minted before a daemon restart still hold after it.
func LoadTokens(path string) (*Tokens, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		if err := atomicfile.Write(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		return NewTokens(key)
	}
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	// A key of another size is a damaged file: refuse it rather than
	// replace it, which would void every token out there silently.
	t, err := NewTokens(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Mint makes a token for MicroVM id's ports, valid until expires.
func (t *Tokens) Mint(id string, ports []microvm.PortRange, expires time.Time) (string, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("token: invalid MicroVM id %q", id)
	}
	if len(ports) == 0 || len(ports) > MaxPortRanges {
		return "", fmt.Errorf("token: %d port ranges, want 1 to %d", len(ports), MaxPortRanges)
	}
	if expires.Unix() <= 0 {
		return "", fmt.Errorf("token: expiry %s before 1970", expires)
	}
	p := make([]byte, 0, maxPayload)
	p = append(p, tokenVersion)
	p = binary.AppendUvarint(p, uint64(expires.Unix()))
	p = binary.AppendUvarint(p, uint64(len(ports)))
	for _, r := range ports {
		if r.Start < 1 || r.End > 65535 || r.Start > r.End {
			return "", fmt.Errorf("token: invalid port range %d-%d (ports are 1 to 65535)", r.Start, r.End)
		}
		p = binary.BigEndian.AppendUint16(p, uint16(r.Start))
		p = binary.BigEndian.AppendUint16(p, uint16(r.End))
	}
	p = append(p, id...)
	return b64.EncodeToString(p) + "." + b64.EncodeToString(t.mac(p)), nil
}

func (t *Tokens) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(tokenDomain))
	m.Write(payload)
	return m.Sum(nil)
}

// Verify checks that token was minted by t for MicroVM id, that it allows
// port, and that it has not expired at now. The error says which check
// failed (it matches one of the Err* token errors) and never repeats the
// token.
func (t *Tokens) Verify(token, id string, port int, now time.Time) error {
	if len(token) > MaxTokenLen {
		return fmt.Errorf("%w: longer than %d characters", ErrMalformed, MaxTokenLen)
	}
	// encoding/base64 skips '\r' and '\n' wherever they are: a token of
	// other characters than Mint's would decode, and be accepted, as
	// another string.
	for i := 0; i < len(token); i++ {
		if c := token[i]; !isBase64URL(c) && c != '.' {
			return fmt.Errorf("%w: character %q at %d", ErrMalformed, c, i)
		}
	}
	enc, encMAC, ok := strings.Cut(token, ".")
	if !ok || enc == "" {
		return fmt.Errorf("%w: want <payload>.<signature>", ErrMalformed)
	}
	sig, err := b64.DecodeString(encMAC)
	if err != nil || len(sig) != sha256.Size {
		return fmt.Errorf("%w: bad signature encoding", ErrMalformed)
	}
	payload, err := b64.DecodeString(enc)
	if err != nil {
		return fmt.Errorf("%w: bad payload encoding", ErrMalformed)
	}
	// The signature first: nothing of an unsigned payload is trusted.
	if !hmac.Equal(sig, t.mac(payload)) {
		return ErrBadSignature
	}
	c, err := parsePayload(payload)
	if err != nil {
		return err
	}
	if c.id != id {
		return ErrWrongMicroVM
	}
	if !now.Before(c.expires) {
		return fmt.Errorf("%w at %s", ErrExpired, c.expires.UTC().Format(time.RFC3339))
	}
	for _, r := range c.ports {
		if r.Start <= port && port <= r.End {
			return nil
		}
	}
	return fmt.Errorf("%w: port %d", ErrPortNotAllowed, port)
}

// claims are a token's payload.
type claims struct {
	id      string
	expires time.Time
	ports   []microvm.PortRange
}

// parsePayload reads a signed payload. Only Mint makes those, so an error
// here means a key reused for something else or a change of format.
func parsePayload(p []byte) (claims, error) {
	bad := func(why string) (claims, error) {
		return claims{}, fmt.Errorf("%w: %s", ErrMalformed, why)
	}
	if len(p) == 0 || p[0] != tokenVersion {
		return bad("unknown version")
	}
	p = p[1:]
	exp, n := binary.Uvarint(p)
	if n <= 0 || exp > 1<<62 {
		return bad("bad expiry")
	}
	p = p[n:]
	count, n := binary.Uvarint(p)
	if n <= 0 || count == 0 || count > MaxPortRanges || uint64(len(p[n:])) < 4*count {
		return bad("bad port ranges")
	}
	p = p[n:]
	c := claims{expires: time.Unix(int64(exp), 0), ports: make([]microvm.PortRange, count)}
	for i := range c.ports {
		c.ports[i] = microvm.PortRange{Start: int(binary.BigEndian.Uint16(p)), End: int(binary.BigEndian.Uint16(p[2:]))}
		p = p[4:]
	}
	c.id = string(p)
	if !ValidID(c.id) {
		return bad("bad MicroVM id")
	}
	return c, nil
}

func isBase64URL(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// ValidID reports whether id can name a MicroVM on the endpoint: 1 to
// MaxIDLen letters, digits, '-' or '_' (it is a host name's first label).
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isBase64URL(id[i]) { // the same characters
			return false
		}
	}
	return true
}
