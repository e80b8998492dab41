package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hearthdev/hearth/internal/network"
)

// Function is a function's configuration, in the shape of the Lambda API's
// FunctionConfiguration, so the API returns it as it is.
type Function struct {
	FunctionName     string       `json:"FunctionName"`
	FunctionArn      string       `json:"FunctionArn"`
	Runtime          string       `json:"Runtime"`
	Role             string       `json:"Role,omitempty"`
	Handler          string       `json:"Handler"`
	Description      string       `json:"Description"`
	MemorySize       int          `json:"MemorySize"`
	Timeout          int          `json:"Timeout"`
	CodeSize         int64        `json:"CodeSize"`
	CodeSha256       string       `json:"CodeSha256"`
	Version          string       `json:"Version"`
	LastModified     string       `json:"LastModified"`
	RevisionID       string       `json:"RevisionId"`
	State            string       `json:"State"`
	LastUpdateStatus string       `json:"LastUpdateStatus"`
	PackageType      string       `json:"PackageType"`
	Architectures    []string     `json:"Architectures"`
	Environment      *Environment `json:"Environment,omitempty"`
	// EphemeralStorage is the size of /tmp; LoggingConfig where and how
	// the function's logs go; SnapStart whether published versions start
	// from a snapshot. Rows stored before these existed load with Lambda's
	// defaults (see withDefaults).
	EphemeralStorage *EphemeralStorage `json:"EphemeralStorage,omitempty"`
	LoggingConfig    *LoggingConfig    `json:"LoggingConfig,omitempty"`
	SnapStart        *SnapStart        `json:"SnapStart,omitempty"`
	// Layers are the layer versions unpacked into /opt, in order.
	Layers []Layer `json:"Layers,omitempty"`
	// DeadLetterConfig is where the function's asynchronous events go
	// when every attempt failed.
	DeadLetterConfig *DeadLetterConfig `json:"DeadLetterConfig,omitempty"`
	// IdlePolicy is Hearth's: how long an idle environment stays warm
	// before it is suspended, and how long a suspended one is kept.
	IdlePolicy IdlePolicy `json:"HearthIdlePolicy"`
	// NetworkPolicy is Hearth's too: where the function's environments
	// may connect. Functions stored before it existed load with
	// network.DefaultPolicy (see withDefaults).
	NetworkPolicy *network.Policy `json:"HearthNetworkPolicy,omitempty"`
	// StateReason and its code say why a function is Pending or Failed;
	// LastUpdateStatusReason and its code why its last update failed.
	StateReason                string `json:"StateReason,omitempty"`
	StateReasonCode            string `json:"StateReasonCode,omitempty"`
	LastUpdateStatusReason     string `json:"LastUpdateStatusReason,omitempty"`
	LastUpdateStatusReasonCode string `json:"LastUpdateStatusReasonCode,omitempty"`
	// ImageConfigResponse is a container image function's ImageConfig, as
	// Lambda reports it.
	ImageConfigResponse *ImageConfigResponse `json:"ImageConfigResponse,omitempty"`
	// Image is Hearth's record of a container image function's image.
	Image *FunctionImage `json:"HearthImage,omitempty"`
}

// Package types.
const (
	PackageZip   = "Zip"
	PackageImage = "Image"
)

// ImageConfig overrides an image's ENTRYPOINT, CMD and WORKDIR.
type ImageConfig struct {
	EntryPoint       []string `json:"EntryPoint,omitempty"`
	Command          []string `json:"Command,omitempty"`
	WorkingDirectory string   `json:"WorkingDirectory,omitempty"`
}

// ImageConfigResponse is Lambda's report of a function's ImageConfig.
type ImageConfigResponse struct {
	ImageConfig *ImageConfig `json:"ImageConfig,omitempty"`
}

// FunctionImage is a container image function's image: the URI it was
// given, and once its root is built, the digest it resolved to and what
// an environment needs to run it.
type FunctionImage struct {
	ImageURI         string `json:"ImageUri"`
	ResolvedImageURI string `json:"ResolvedImageUri,omitempty"`
	Digest           string `json:"Digest,omitempty"`
	// RootDisk is the built root's path and RootSize its size.
	RootDisk string `json:"RootDisk,omitempty"`
	RootSize int64  `json:"RootSize,omitempty"`
	// Command is the runtime's argv (ImageConfig over the image's
	// ENTRYPOINT and CMD), WorkingDir its folder, Env the image's ENV.
	Command    []string `json:"Command,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
	Env        []string `json:"Env,omitempty"`
	// Update is the image being built for the function (at its creation,
	// or for an UpdateFunctionCode), until the build ends.
	Update *ImageUpdate `json:"Update,omitempty"`
}

// ImageUpdate is an image build in progress: a daemon that restarts finds
// it here and builds it again.
type ImageUpdate struct {
	ID          string       `json:"Id"`
	ImageURI    string       `json:"ImageUri"`
	ImageConfig *ImageConfig `json:"ImageConfig,omitempty"`
	// Publish publishes a version once the image is built.
	Publish bool `json:"Publish,omitempty"`
}

// Environment holds a function's environment variables.
type Environment struct {
	Variables map[string]string `json:"Variables"`
}

// EphemeralStorage is the size of a function's /tmp, in MB (512 to 10240).
type EphemeralStorage struct {
	Size int `json:"Size"`
}

// LoggingConfig is a function's log format and destination, as Lambda
// shapes it; the levels apply to the JSON format only.
type LoggingConfig struct {
	LogFormat           string `json:"LogFormat,omitempty"`
	ApplicationLogLevel string `json:"ApplicationLogLevel,omitempty"`
	SystemLogLevel      string `json:"SystemLogLevel,omitempty"`
	LogGroup            string `json:"LogGroup,omitempty"`
}

// SnapStart says whether published versions start from a snapshot
// (ApplyOn "PublishedVersions") or boot ("None"). OptimizationStatus is
// what Lambda reports: "On" for a published version made with ApplyOn
// PublishedVersions, else "Off".
type SnapStart struct {
	ApplyOn            string `json:"ApplyOn"`
	OptimizationStatus string `json:"OptimizationStatus,omitempty"`
}

// Lambda's defaults for the settings a function may leave out.
const (
	DefaultEphemeralStorageMB = 512
	DefaultLogFormat          = "Text"
	SnapStartNone             = "None"
	SnapStartPublished        = "PublishedVersions"
)

// DefaultLogGroup is the log group Lambda gives a function.
func DefaultLogGroup(function string) string { return "/aws/lambda/" + function }

// withDefaults fills in the settings Lambda always reports, for functions
// created without them or stored before Hearth had them.
func (f *Function) withDefaults() {
	if f.EphemeralStorage == nil {
		f.EphemeralStorage = &EphemeralStorage{Size: DefaultEphemeralStorageMB}
	}
	if f.LoggingConfig == nil {
		f.LoggingConfig = &LoggingConfig{}
	}
	if f.LoggingConfig.LogFormat == "" {
		f.LoggingConfig.LogFormat = DefaultLogFormat
	}
	if f.LoggingConfig.LogGroup == "" {
		f.LoggingConfig.LogGroup = DefaultLogGroup(f.FunctionName)
	}
	if f.SnapStart == nil {
		f.SnapStart = &SnapStart{ApplyOn: SnapStartNone}
	}
	if f.NetworkPolicy == nil {
		p := network.DefaultPolicy()
		f.NetworkPolicy = &p
	}
	if f.SnapStart.OptimizationStatus == "" {
		f.SnapStart.OptimizationStatus = "Off"
	}
}

// decodeFunction reads a stored configuration.
func decodeFunction(cfg string) (Function, error) {
	var f Function
	if err := json.Unmarshal([]byte(cfg), &f); err != nil {
		return f, fmt.Errorf("stored function configuration: %w", err)
	}
	f.withDefaults()
	return f, nil
}

// IdlePolicy says what happens to idle environments.
type IdlePolicy struct {
	KeepWarmSeconds int `json:"KeepWarmSeconds"`
	// KeepPausedSeconds is how long an environment stays paused after
	// keep-warm before it is suspended: nil for the daemon's default (a
	// policy stored before there was a paused tier), 0 for no paused tier.
	KeepPausedSeconds  *int `json:"KeepPausedSeconds,omitempty"`
	KeepSuspendedHours int  `json:"KeepSuspendedHours"`
}

// CodeDigest is the hex SHA-256 of the function's code, as the code folder
// names it; "" for a container image function, which has no zip.
func (f Function) CodeDigest() string {
	if f.PackageType == PackageImage {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(f.CodeSha256)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(b)
}

// PutCode stores a zip and returns its SHA-256 as Lambda reports it
// (base64) and as the code folder names it (hex).
func (s *Store) PutCode(zip []byte) (b64, hexSum string, err error) {
	sum := sha256.Sum256(zip)
	hexSum = hex.EncodeToString(sum[:])
	// Durable before the function that names it is stored: a crash must
	// never leave a function whose code is missing or half written. A
	// prune's wait for it starts again (see PruneCode).
	s.codeMu.Lock()
	err = writeOnce(s.CodePath(hexSum), zip)
	delete(s.codeUnnamed, hexSum)
	s.codeMu.Unlock()
	if err != nil {
		return "", "", fmt.Errorf("store code: %w", err)
	}
	// And in the hosts' store before a function that names it is in the
	// log (the API gives PutCode no context: a bound of its own).
	ctx, cancel := context.WithTimeout(context.Background(), blobPutTimeout)
	defer cancel()
	if err := s.putBlob(ctx, codeBlob(hexSum), zip); err != nil {
		return "", "", fmt.Errorf("store code: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sum[:]), hexSum, nil
}

// CodePath is where the zip with this hex digest is.
func (s *Store) CodePath(hexSum string) string { return filepath.Join(s.codeDir, hexSum+".zip") }

// CreateFunction stores a new function ($LATEST).
func (s *Store) CreateFunction(ctx context.Context, f Function) error {
	defer s.configChanged()
	f.withDefaults()
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return s.write(ctx, "CreateFunction", func(w *writeTx) error {
		_, err := w.ExecContext(ctx, sqlInsertFunction, f.FunctionName, string(b))
		if err != nil && strings.Contains(err.Error(), "UNIQUE") {
			return fmt.Errorf("function %s: %w", f.FunctionName, ErrExists)
		}
		return err
	})
}

// GetFunction returns a function's $LATEST configuration.
func (s *Store) GetFunction(ctx context.Context, name string) (Function, error) {
	var cfg string
	err := s.db.QueryRowContext(ctx, `SELECT config FROM functions WHERE name = ?`, name).Scan(&cfg)
	if errors.Is(err, sql.ErrNoRows) {
		return Function{}, fmt.Errorf("function %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Function{}, err
	}
	return decodeFunction(cfg)
}

// GetVersion returns a function at a version ("$LATEST" or a number).
func (s *Store) GetVersion(ctx context.Context, name, version string) (Function, error) {
	if version == "" || version == "$LATEST" {
		return s.GetFunction(ctx, name)
	}
	var cfg string
	err := s.db.QueryRowContext(ctx, `SELECT config FROM versions WHERE name = ? AND version = ?`, name, version).Scan(&cfg)
	if errors.Is(err, sql.ErrNoRows) {
		return Function{}, fmt.Errorf("function %s version %s: %w", name, version, ErrNotFound)
	}
	if err != nil {
		return Function{}, err
	}
	return decodeFunction(cfg)
}

// ListFunctions returns up to max functions ($LATEST) in name order after
// marker, and the marker of the next page ("" at the end).
func (s *Store) ListFunctions(ctx context.Context, marker string, max int) ([]Function, string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT config FROM functions WHERE name > ? ORDER BY name LIMIT ?`, marker, max+1)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []Function
	for rows.Next() {
		var cfg string
		if err := rows.Scan(&cfg); err != nil {
			return nil, "", err
		}
		f, err := decodeFunction(cfg)
		if err != nil {
			return nil, "", err
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > max {
		out = out[:max]
		next = out[max-1].FunctionName
	}
	return out, next, nil
}

// UpdateFunction changes $LATEST with fn, atomically.
func (s *Store) UpdateFunction(ctx context.Context, name string, fn func(*Function) error) (Function, error) {
	defer s.configChanged()
	var f Function
	err := s.write(ctx, "UpdateFunction", func(w *writeTx) error {
		var cfg string
		err := w.QueryRowContext(ctx, `SELECT config FROM functions WHERE name = ?`, name).Scan(&cfg)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("function %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if f, err = decodeFunction(cfg); err != nil {
			return err
		}
		if err := fn(&f); err != nil {
			return err
		}
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		_, err = w.ExecContext(ctx, sqlUpdateFunctionConfig, string(b), name)
		return err
	})
	if err != nil {
		return Function{}, err
	}
	return f, nil
}

// DeleteFunction removes a function with its versions and aliases.
func (s *Store) DeleteFunction(ctx context.Context, name string) error {
	defer s.configChanged()
	return s.write(ctx, "DeleteFunction", func(w *writeTx) error {
		res, err := w.ExecContext(ctx, sqlDeleteFunction, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("function %s: %w", name, ErrNotFound)
		}
		for _, q := range []string{sqlDeleteVersions, sqlDeleteAliases, sqlDeleteURLConfigs, sqlDeleteTags, sqlDeletePolicies} {
			if _, err := w.ExecContext(ctx, q, name); err != nil {
				return err
			}
		}
		return nil
	})
}

// PublishVersion snapshots $LATEST as the next numbered version. When
// $LATEST has not changed since the last published version, that version is
// returned, as Lambda does.
func (s *Store) PublishVersion(ctx context.Context, name, description string) (Function, error) {
	defer s.configChanged()
	var v Function
	err := s.write(ctx, "PublishVersion", func(w *writeTx) error {
		var cfg string
		var seq int
		err := w.QueryRowContext(ctx, `SELECT config, version_seq FROM functions WHERE name = ?`, name).Scan(&cfg, &seq)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("function %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		f, err := decodeFunction(cfg)
		if err != nil {
			return err
		}
		if seq > 0 {
			var lastCfg string
			if err := w.QueryRowContext(ctx, `SELECT config FROM versions WHERE name = ? AND version = ?`, name, strconv.Itoa(seq)).Scan(&lastCfg); err == nil {
				if last, err := decodeFunction(lastCfg); err == nil && last.RevisionID == f.RevisionID {
					v = last
					return nil
				}
			}
		}
		seq++
		v = f
		v.Version = strconv.Itoa(seq)
		v.FunctionArn = f.FunctionArn + ":" + v.Version
		if description != "" {
			v.Description = description
		}
		// A version made while SnapStart applies to published versions is
		// optimized; $LATEST never is.
		snap := *f.SnapStart
		snap.OptimizationStatus = "Off"
		if snap.ApplyOn == SnapStartPublished {
			snap.OptimizationStatus = "On"
		}
		v.SnapStart = &snap
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := w.ExecContext(ctx, sqlInsertVersion, name, v.Version, string(b)); err != nil {
			return err
		}
		_, err = w.ExecContext(ctx, sqlSetFunctionVersionSeq, seq, name)
		return err
	})
	if err != nil {
		return Function{}, err
	}
	return v, nil
}

// ListVersions returns $LATEST and every published version.
func (s *Store) ListVersions(ctx context.Context, name string) ([]Function, error) {
	latest, err := s.GetFunction(ctx, name)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT config FROM versions WHERE name = ? ORDER BY CAST(version AS INTEGER)`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Function{latest}
	for rows.Next() {
		var cfg string
		if err := rows.Scan(&cfg); err != nil {
			return nil, err
		}
		f, err := decodeFunction(cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// Concurrency returns a function's reserved concurrency, nil if unset.
func (s *Store) Concurrency(ctx context.Context, name string) (*int, error) {
	var n sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT concurrency FROM functions WHERE name = ?`, name).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("function %s: %w", name, ErrNotFound)
	}
	if err != nil || !n.Valid {
		return nil, err
	}
	v := int(n.Int64)
	return &v, nil
}

// SetConcurrency sets (or, with nil, removes) a function's reserved
// concurrency.
func (s *Store) SetConcurrency(ctx context.Context, name string, n *int) error {
	defer s.configChanged()
	var v any
	if n != nil {
		v = *n
	}
	return s.write(ctx, "SetConcurrency", func(w *writeTx) error {
		res, err := w.ExecContext(ctx, sqlSetConcurrency, v, name)
		if err != nil {
			return err
		}
		if c, _ := res.RowsAffected(); c == 0 {
			return fmt.Errorf("function %s: %w", name, ErrNotFound)
		}
		return nil
	})
}

// FunctionCount is how many functions there are.
func (s *Store) FunctionCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM functions`).Scan(&n)
	return n, err
}

// ReservedConcurrency is the sum of the functions' reserved concurrency.
func (s *Store) ReservedConcurrency(ctx context.Context) (int, error) {
	var n sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT SUM(concurrency) FROM functions`).Scan(&n)
	return int(n.Int64), err
}

// CodeStorage is the bytes the stored code packages take, and the bytes
// still free for more on the file system that holds them.
func (s *Store) CodeStorage() (used, free int64, err error) {
	entries, err := os.ReadDir(s.codeDir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".zip") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed since the listing
		}
		used += fi.Size()
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.codeDir, &st); err != nil {
		return used, 0, fmt.Errorf("statfs %s: %w", s.codeDir, err)
	}
	return used, int64(st.Bavail) * st.Bsize, nil
}
