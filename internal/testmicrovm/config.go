package main

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// config is what the environment sets; read once at start, so that a
// test image's behaviour is fixed by the image's ENV.
type config struct {
	appPort, grpcPort, hookPort int
	hooksFile                   string
	ready503                    int
	validateFail                bool
	hookDelay                   time.Duration
	hookDelayOnly               string
	sseDelay                    time.Duration
	// outboundTo, when set, is a host:port the server connects to every
	// outboundEvery, forever: a guest that works with the network.
	outboundTo    string
	outboundEvery time.Duration
}

func configFromEnv(getenv func(string) string) (config, error) {
	c := config{appPort: 8080, grpcPort: 8081, hookPort: 9000, hooksFile: "/tmp/hooks.jsonl", sseDelay: 50 * time.Millisecond, outboundEvery: 500 * time.Millisecond}
	ints := []struct {
		name string
		dst  *int
	}{{"APP_PORT", &c.appPort}, {"GRPC_PORT", &c.grpcPort}, {"HOOK_PORT", &c.hookPort}, {"READY_503", &c.ready503}}
	for _, v := range ints {
		if s := getenv(v.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return config{}, fmt.Errorf("%s=%q: want a number ≥ 0", v.name, s)
			}
			*v.dst = n
		}
	}
	durs := []struct {
		name string
		dst  *time.Duration
	}{{"HOOK_DELAY_MS", &c.hookDelay}, {"SSE_DELAY_MS", &c.sseDelay}}
	for _, v := range durs {
		if s := getenv(v.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return config{}, fmt.Errorf("%s=%q: want milliseconds ≥ 0", v.name, s)
			}
			*v.dst = time.Duration(n) * time.Millisecond
		}
	}
	if s := getenv("HOOKS_FILE"); s != "" {
		c.hooksFile = s
	}
	if s := getenv("OUTBOUND_TO"); s != "" {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return config{}, fmt.Errorf("OUTBOUND_TO=%q: want host:port", s)
		}
		c.outboundTo = s
	}
	if s := getenv("OUTBOUND_EVERY"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return config{}, fmt.Errorf("OUTBOUND_EVERY=%q: want a duration > 0 (e.g. 500ms)", s)
		}
		c.outboundEvery = d
	}
	c.validateFail = getenv("VALIDATE_FAIL") == "1"
	c.hookDelayOnly = getenv("HOOK_DELAY_ONLY")
	return c, nil
}
