package api

import (
	"regexp"
	"strings"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// The settings of a function beyond memory, timeout and environment, as
// CreateFunction and UpdateFunctionConfiguration take them: each check
// returns the setting to store, or an InvalidParameterValueException.

// hostArchitecture is the one architecture Hearth runs: guests run the
// host's instruction set.
const hostArchitecture = "x86_64"

// checkArchitectures accepts what CreateFunction and UpdateFunctionCode
// may send: nothing, or ["x86_64"].
func checkArchitectures(archs []string) error {
	if archs == nil {
		return nil
	}
	if len(archs) != 1 {
		return lambdaerr.InvalidParameter("Architectures must hold exactly one architecture (got %d)", len(archs))
	}
	switch archs[0] {
	case hostArchitecture:
		return nil
	case "arm64":
		return lambdaerr.InvalidParameter("Architectures [arm64] is not supported: this host runs x86_64, and Hearth runs functions on the host's architecture only")
	default:
		return lambdaerr.InvalidParameter("Value [%s] at 'architectures' failed to satisfy constraint: Member must satisfy enum value set: [x86_64, arm64]", archs[0])
	}
}

// checkEphemeralStorage checks /tmp's size: 512 to 10,240 MB, as Lambda.
func checkEphemeralStorage(e *store.EphemeralStorage) error {
	if e != nil && (e.Size < 512 || e.Size > 10240) {
		return lambdaerr.InvalidParameter("EphemeralStorage.Size must be between 512 and 10240 MB (got %d)", e.Size)
	}
	return nil
}

var (
	logGroupRE        = regexp.MustCompile(`^[\.\-_/#A-Za-z0-9]{1,512}$`)
	applicationLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	systemLevels      = []string{"DEBUG", "INFO", "WARN"}
)

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

// mergeLogging applies the LoggingConfig a request sent (in, whose empty
// fields were not sent) to the current one (cur, nil for a new function).
// The levels exist only with the JSON format; JSON without them logs at
// INFO, as Lambda.
func mergeLogging(function string, cur, in *store.LoggingConfig) (*store.LoggingConfig, error) {
	out := store.LoggingConfig{LogFormat: store.DefaultLogFormat, LogGroup: store.DefaultLogGroup(function)}
	if cur != nil {
		out = *cur
	}
	if in == nil {
		return &out, nil
	}
	if in.LogFormat != "" {
		if in.LogFormat != "Text" && in.LogFormat != "JSON" {
			return nil, lambdaerr.InvalidParameter("LoggingConfig.LogFormat must be Text or JSON (got %q)", in.LogFormat)
		}
		out.LogFormat = in.LogFormat
	}
	if in.LogGroup != "" {
		if !logGroupRE.MatchString(in.LogGroup) {
			return nil, lambdaerr.InvalidParameter("LoggingConfig.LogGroup %q must be 1 to 512 letters, digits or . - _ / #", in.LogGroup)
		}
		out.LogGroup = in.LogGroup
	}
	if in.ApplicationLogLevel != "" && !oneOf(in.ApplicationLogLevel, applicationLevels) {
		return nil, lambdaerr.InvalidParameter("LoggingConfig.ApplicationLogLevel must be one of %s (got %q)", strings.Join(applicationLevels, ", "), in.ApplicationLogLevel)
	}
	if in.SystemLogLevel != "" && !oneOf(in.SystemLogLevel, systemLevels) {
		return nil, lambdaerr.InvalidParameter("LoggingConfig.SystemLogLevel must be one of %s (got %q)", strings.Join(systemLevels, ", "), in.SystemLogLevel)
	}
	if out.LogFormat != "JSON" {
		if in.ApplicationLogLevel != "" || in.SystemLogLevel != "" {
			return nil, lambdaerr.InvalidParameter("LoggingConfig: ApplicationLogLevel and SystemLogLevel can be set only when LogFormat is JSON")
		}
		out.ApplicationLogLevel, out.SystemLogLevel = "", ""
		return &out, nil
	}
	if in.ApplicationLogLevel != "" {
		out.ApplicationLogLevel = in.ApplicationLogLevel
	}
	if in.SystemLogLevel != "" {
		out.SystemLogLevel = in.SystemLogLevel
	}
	if out.ApplicationLogLevel == "" {
		out.ApplicationLogLevel = "INFO"
	}
	if out.SystemLogLevel == "" {
		out.SystemLogLevel = "INFO"
	}
	return &out, nil
}

// checkSnapStart turns the SnapStart a request sent into what $LATEST
// stores: ApplyOn, and OptimizationStatus Off (only published versions
// are optimized).
func checkSnapStart(s *store.SnapStart) (*store.SnapStart, error) {
	if s == nil {
		return nil, nil
	}
	if s.ApplyOn != store.SnapStartNone && s.ApplyOn != store.SnapStartPublished {
		return nil, lambdaerr.InvalidParameter("SnapStart.ApplyOn must be None or PublishedVersions (got %q)", s.ApplyOn)
	}
	return &store.SnapStart{ApplyOn: s.ApplyOn, OptimizationStatus: "Off"}, nil
}

// Lambda's limits on tags.
const (
	maxTags        = 50
	maxTagKeyLen   = 128
	maxTagValueLen = 256
)

// checkTags checks tags a request adds.
func checkTags(tags map[string]string) error {
	for k, v := range tags {
		if k == "" || len(k) > maxTagKeyLen {
			return lambdaerr.InvalidParameter("tag key %q must be 1 to %d characters", k, maxTagKeyLen)
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return lambdaerr.InvalidParameter("tag key %q: the aws: prefix is reserved for AWS", k)
		}
		if len(v) > maxTagValueLen {
			return lambdaerr.InvalidParameter("the value of tag %q must be at most %d characters", k, maxTagValueLen)
		}
	}
	return nil
}

// tooManyTags words the 50-tag limit.
func tooManyTags(n int) error {
	return lambdaerr.InvalidParameter("a function holds at most %d tags (this would make %d)", maxTags, n)
}
