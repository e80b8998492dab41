package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/network"
)

// fileConfig is the optional config file: defaults for flags, below the
// flags and the environment variables.
//
//	{"dataDir": "/srv/hearth", "listen": "0.0.0.0:9000", "endpoint": "http://10.0.0.5:9000",
//	 "prices": {"label": "my rates", "perGBSecond": 0.00001, "perMillionRequests": 0.1, "perGBHourSuspended": 0.002},
//	 "networkPolicy": {"Enabled": true, "Allow": [{"Cidr": "192.168.1.20/32", "Ports": ["5432"]}]}}
type fileConfig struct {
	DataDir  string `json:"dataDir"`
	Listen   string `json:"listen"`
	Endpoint string `json:"endpoint"`
	// Prices replace Lambda's public prices in `hearth cost`.
	Prices *meter.Prices `json:"prices"`
	// NetworkPolicy is the egress policy new functions get (in the API's
	// shape); none is network.DefaultPolicy.
	NetworkPolicy *network.Policy `json:"networkPolicy"`
}

// configPath is $HEARTH_CONFIG, else the user's config folder's
// hearth/config.json.
func (c *CLI) configPath() string {
	if p := c.Getenv("HEARTH_CONFIG"); p != "" {
		return p
	}
	if d := c.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "hearth", "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".config", "hearth", "config.json")
}

// config reads the config file; a missing one is an empty config, a broken
// one an error that names it.
func (c *CLI) config() (fileConfig, error) {
	var fc fileConfig
	p := c.configPath()
	if p == "" {
		return fc, nil
	}
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return fc, nil
	}
	if err != nil {
		return fc, err
	}
	if err := json.Unmarshal(b, &fc); err != nil {
		return fc, fmt.Errorf("config file %s: %w", p, err)
	}
	return fc, nil
}
