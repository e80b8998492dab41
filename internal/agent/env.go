package agent

import (
	"maps"
	"slices"
	"strconv"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// reservedEnv are set by the agent and win over the function's variables, as
// in Lambda, where these are reserved and cannot be overridden.
func runtimeEnv(in guestproto.Init, cfg Config) []string {
	env := map[string]string{
		"PATH":            "/usr/local/bin:/usr/bin:/bin:/opt/bin",
		"LANG":            "en_US.UTF-8",
		"LD_LIBRARY_PATH": "/var/task:/var/task/lib:/opt/lib:/lib64:/usr/lib64",
		"TZ":              ":UTC",
		// Lambda sets no HOME (lambci/docker-lambda#115), which breaks
		// tools that want one; /tmp is the one writable place.
		"HOME": FunctionHome,
	}
	maps.Copy(env, in.Env)
	reserved := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          cfg.RuntimeAPIAddr,
		"AWS_LAMBDA_FUNCTION_NAME":        in.FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION":     in.FunctionVersion,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(in.MemoryMB),
		"AWS_LAMBDA_LOG_GROUP_NAME":       in.LogGroup,
		"AWS_LAMBDA_LOG_STREAM_NAME":      in.LogStream,
		"AWS_LAMBDA_INITIALIZATION_TYPE":  initType(in.InitType),
		"AWS_REGION":                      in.Region,
		"AWS_DEFAULT_REGION":              in.Region,
		"AWS_EXECUTION_ENV":               "AWS_Lambda_provided.al2023",
		"LAMBDA_TASK_ROOT":                cfg.TaskRoot,
		"LAMBDA_RUNTIME_DIR":              "/var/runtime",
		"_HANDLER":                        in.Handler,
	}
	maps.Copy(env, reserved)
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func initType(t string) string {
	if t == "" {
		return "on-demand"
	}
	return t
}
