package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/network"
)

// fnNetworkPolicyCmd shows or changes a function's egress policy
// (Hearth's own API: the Lambda API has no such setting).
func (c *CLI) fnNetworkPolicyCmd() *cobra.Command {
	var enabled, allowPrivate bool
	var allow, deny []string
	cmd := &cobra.Command{
		Use:   "network-policy NAME",
		Short: "Show or change where a function's environments may connect",
		Long: `Without flags, shows the function's egress policy. With flags, changes the
given parts of it (--allow and --deny replace their lists; "" empties one)
and retires the function's environments, so the new policy holds at once.

By default a function reaches the public internet and DNS, and nothing else:
not the host, not another guest, not link-local or metadata addresses
(169.254.0.0/16, fe80::/10), not private ranges. The host, the other guests
and link-local stay refused whatever the rules; --allow may open a private
range (a database on the LAN), --deny wins over --allow.

A rule is [tcp:|udp:]CIDR[:PORTS], PORTS a comma-separated list of ports and
ranges, e.g.  --allow 192.168.1.20/32:5432  --allow udp:10.0.0.0/8:53,5353
--deny 0.0.0.0/0:25  --allow [fd00::7]:443`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/functions/" + args[0] + "/network-policy"
			p, err := c.getNetworkPolicy(cmd, path)
			if err != nil {
				return err
			}
			f := cmd.Flags()
			if f.Changed("enabled") || f.Changed("allow") || f.Changed("deny") || f.Changed("allow-private") {
				if f.Changed("enabled") {
					p.Enabled = enabled
				}
				if f.Changed("allow-private") {
					p.AllowPrivate = allowPrivate
				}
				if f.Changed("allow") {
					if p.Allow, err = parseRules(allow); err != nil {
						return &exitError{code: ExitBadInput, err: fmt.Errorf("--allow: %w", err)}
					}
				}
				if f.Changed("deny") {
					if p.Deny, err = parseRules(deny); err != nil {
						return &exitError{code: ExitBadInput, err: fmt.Errorf("--deny: %w", err)}
					}
				}
				body, err := json.Marshal(p)
				if err != nil {
					return err
				}
				resp, err := c.hearthRequest(cmd, "PUT", path, body)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				p = network.Policy{}
				if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&p); err != nil {
					return fmt.Errorf("the daemon's answer: %w", err)
				}
			}
			c.output(cmd, p, func() { writePolicy(c.Stdout, args[0], p) })
			return nil
		},
	}
	cmd.Flags().BoolVar(&enabled, "enabled", true, "outbound connections at all (false: none, DNS included)")
	cmd.Flags().StringArrayVar(&allow, "allow", nil, "allow [tcp:|udp:]CIDR[:PORTS] (repeatable)")
	cmd.Flags().StringArrayVar(&deny, "deny", nil, "deny [tcp:|udp:]CIDR[:PORTS] (repeatable); wins over --allow")
	cmd.Flags().BoolVar(&allowPrivate, "allow-private", false, "allow the private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7)")
	return cmd
}

func (c *CLI) getNetworkPolicy(cmd *cobra.Command, path string) (network.Policy, error) {
	var p network.Policy
	resp, err := c.hearthRequest(cmd, "GET", path, nil)
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&p); err != nil {
		return p, fmt.Errorf("the daemon's answer: %w", err)
	}
	return p, nil
}

// parseRules reads the flags' rules; "" alone is no rule. The daemon
// validates the CIDRs and ports.
func parseRules(specs []string) ([]network.Rule, error) {
	rules := []network.Rule{}
	for _, s := range specs {
		if s == "" {
			continue
		}
		r, err := parseRule(s)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// parseRule reads [tcp:|udp:]CIDR[:PORTS]. IPv6 has colons of its own: a
// port list follows the prefix length ("fd00::/8:443"), or a bracketed
// address ("[fd00::7]:443"); a bare IPv6 address has none.
func parseRule(s string) (network.Rule, error) {
	var r network.Rule
	for _, proto := range []string{"tcp", "udp"} {
		if rest, ok := strings.CutPrefix(s, proto+":"); ok {
			r.Protocol, s = proto, rest
		}
	}
	var ports string
	switch {
	case strings.HasPrefix(s, "["):
		addr, rest, ok := strings.Cut(s[1:], "]")
		if !ok || (rest != "" && !strings.HasPrefix(rest, ":")) {
			return r, fmt.Errorf("%q: a bracketed address is [ADDR] or [ADDR]:PORTS", s)
		}
		r.Cidr, ports = addr, strings.TrimPrefix(rest, ":")
	case strings.Contains(s, "/"):
		i := strings.Index(s, "/")
		bits, p, _ := strings.Cut(s[i:], ":")
		r.Cidr, ports = s[:i]+bits, p
	case strings.Count(s, ":") == 1:
		r.Cidr, ports, _ = strings.Cut(s, ":")
	default:
		r.Cidr = s
	}
	if ports != "" {
		r.Ports = strings.Split(ports, ",")
	}
	if r.Cidr == "" {
		return r, fmt.Errorf("%q has no CIDR", s)
	}
	return r, nil
}

func writePolicy(w io.Writer, name string, p network.Policy) {
	if !p.Enabled {
		fmt.Fprintf(w, "%s: no outbound connections\n", name)
		return
	}
	private := "refused"
	if p.AllowPrivate {
		private = "allowed"
	}
	fmt.Fprintf(w, "%s: public internet and DNS allowed; private ranges %s; host, other guests, link-local refused\n", name, private)
	for _, l := range []struct {
		verb  string
		rules []network.Rule
	}{{"deny ", p.Deny}, {"allow", p.Allow}} {
		for _, r := range l.rules {
			fmt.Fprintf(w, "  %s %s", l.verb, r.Cidr)
			if r.Protocol != "" {
				fmt.Fprintf(w, " %s", r.Protocol)
			}
			if len(r.Ports) > 0 {
				fmt.Fprintf(w, " ports %s", strings.Join(r.Ports, ","))
			}
			fmt.Fprintln(w)
		}
	}
}
