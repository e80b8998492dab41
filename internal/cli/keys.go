package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/server"
)

func (c *CLI) keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the daemon's access keys"}
	var revoke bool
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new access key; the old one stays valid as profile \"previous\" until the next rotation (in a cluster: on every host)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := server.RotateKeys(c.dataDir(cmd), revoke)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.Stdout, "new access key %s in %s (the running daemon takes it at once; in a cluster it carries the change to every host)\n", p.AccessKeyID, server.CredentialsFile(c.dataDir(cmd)))
			return nil
		},
	}
	rotate.Flags().BoolVar(&revoke, "revoke-previous", false, "invalidate the old key at once")
	cmd.AddCommand(rotate)
	return cmd
}
