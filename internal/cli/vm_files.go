package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/client/microvm"
)

// remotePath reads ID:/path; ok is false for a local path.
func remotePath(arg string) (id, p string, ok bool) {
	id, p, found := strings.Cut(arg, ":")
	if !found || id == "" || strings.ContainsAny(id, `/\`) || !strings.HasPrefix(p, "/") {
		return "", "", false
	}
	return id, p, true
}

func mustRemote(arg string) (string, string, error) {
	id, p, ok := remotePath(arg)
	if !ok {
		return "", "", &exitError{code: ExitBadInput, err: fmt.Errorf("%q is not ID:/path", arg)}
	}
	return id, p, nil
}

func (c *CLI) vmCpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy a file into or out of a MicroVM (one side ID:/path; - is stdin or stdout)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sid, sp, srcRemote := remotePath(args[0])
			did, dp, dstRemote := remotePath(args[1])
			if srcRemote == dstRemote {
				return &exitError{code: ExitBadInput, err: errors.New("one of SRC and DST must be ID:/path in a MicroVM, the other a local path")}
			}
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if dstRemote {
				var r io.Reader = c.Stdin
				size := int64(-1)
				mode := os.FileMode(0o644)
				if args[0] != "-" {
					f, err := os.Open(args[0])
					if err != nil {
						return &exitError{code: ExitBadInput, err: err}
					}
					defer f.Close()
					fi, err := f.Stat()
					if err != nil {
						return err
					}
					if fi.IsDir() {
						return &exitError{code: ExitBadInput, err: fmt.Errorf("%s is a folder: cp copies files", args[0])}
					}
					r, size, mode = f, fi.Size(), fi.Mode().Perm()
					if strings.HasSuffix(dp, "/") {
						dp += filepath.Base(args[0])
					}
				}
				n, err := cl.Upload(ctx, did, dp, mode, r, size)
				if err != nil {
					return vmError(err)
				}
				c.output(cmd, microvm.WriteResult{Path: dp, BytesWritten: n}, func() {})
				return nil
			}
			rc, fi, err := cl.Download(ctx, sid, sp)
			if err != nil {
				return vmError(err)
			}
			defer rc.Close()
			if args[1] == "-" {
				_, err := io.Copy(c.Stdout, rc)
				return err
			}
			dst := args[1]
			if st, err := os.Stat(dst); err == nil && st.IsDir() {
				dst = filepath.Join(dst, path.Base(sp))
			}
			mode := fi.Mode.Perm()
			if mode == 0 {
				mode = 0o644
			}
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
			if err != nil {
				return &exitError{code: ExitBadInput, err: err}
			}
			n, err := io.Copy(f, rc)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return &exitError{code: ExitHostError, err: fmt.Errorf("copying %s: %w", args[0], err)}
			}
			if fi.Size >= 0 && n != fi.Size {
				return &exitError{code: ExitHostError, err: fmt.Errorf("copying %s: got %d of %d bytes", args[0], n, fi.Size)}
			}
			return nil
		},
	}
}

func (c *CLI) vmLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls ID:/path",
		Short: "List a folder in a MicroVM",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, p, err := mustRemote(args[0])
			if err != nil {
				return err
			}
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			fi, err := cl.Stat(cmd.Context(), id, p)
			if err != nil {
				return vmError(err)
			}
			entries := []microvm.FileInfo{fi}
			if fi.IsDir {
				if entries, err = cl.ListDir(cmd.Context(), id, p); err != nil {
					return vmError(err)
				}
			}
			c.output(cmd, microvm.DirList{Entries: entries}, func() {
				tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				for _, e := range entries {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", e.Mode, e.Size, e.ModTime.Local().Format("2006-01-02 15:04"), e.Name)
				}
				_ = tw.Flush()
			})
			return nil
		},
	}
}

func (c *CLI) vmRmCmd() *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "rm ID:/path",
		Short: "Remove a file or folder in a MicroVM",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, p, err := mustRemote(args[0])
			if err != nil {
				return err
			}
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			if err := cl.Remove(cmd.Context(), id, p, recursive); err != nil {
				return vmError(err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove a folder and everything in it")
	return cmd
}
