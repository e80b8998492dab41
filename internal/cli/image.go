package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/server"
)

func (c *CLI) imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Container images for functions of PackageType Image"}
	cmd.PersistentFlags().StringP("output", "o", "text", "text or json")
	cmd.AddCommand(c.imageImportCmd())
	return cmd
}

// imageImportCmd builds an image from a file into the daemon's image cache
// (in the data folder, on this host), with no registry: the function is
// then created with the URI it prints, hearth-local@<digest>, which the
// daemon finds in its cache by the digest alone.
func (c *CLI) imageImportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE|FOLDER",
		Short: "Import a `docker save` tarball or an OCI image layout folder; prints the URI to create a function with",
		Long: `Import a container image without a registry: a tarball written by
` + "`docker save IMAGE > FILE`" + ` (one image), or an OCI image layout folder
(skopeo copy … oci:FOLDER, or docker buildx --output type=oci,tar=false).
The image is built into a root disk in the daemon's cache (the data folder
on this host) and its URI printed, to give to
  hearth fn create NAME --image hearth-local@sha256:…
or the Lambda API's Code.ImageUri. The image must be built for linux/amd64.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fi, err := os.Stat(args[0])
			if err != nil {
				return &exitError{code: ExitBadInput, err: err}
			}
			b, err := rootfs.New(server.ImageCacheDir(c.dataDir(cmd)), rootfs.Options{Logger: c.logger(cmd)})
			if err != nil {
				return &exitError{code: ExitHostError, err: err}
			}
			t0 := time.Now()
			open := b.OpenTarball
			if fi.IsDir() {
				open = b.OpenLayout
			}
			img, err := open(args[0])
			if err != nil {
				return imageError(err)
			}
			root, err := b.Build(cmd.Context(), img)
			if err != nil {
				return imageError(err)
			}
			out := map[string]any{"Digest": root.Digest, "ImageUri": api.LocalImageURI(root.Digest), "DiskBytes": root.Size,
				"BuildMs": time.Since(t0).Milliseconds()}
			c.output(cmd, out, func() {
				fmt.Fprintf(c.Stdout, "%s\n%s\n", root.Digest, api.LocalImageURI(root.Digest))
			})
			return nil
		},
	}
}

// imageError is a bad image (exit 2) or a failure of this host (exit 3).
func imageError(err error) error {
	if _, ok := rootfs.AsError(err); ok {
		return &exitError{code: ExitBadInput, err: err}
	}
	return &exitError{code: ExitHostError, err: err}
}
