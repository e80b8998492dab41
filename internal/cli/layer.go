package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/spf13/cobra"
)

func (c *CLI) layerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "layer", Short: "Manage layers: zips unpacked into a function's /opt (the Lambda API)"}
	cmd.PersistentFlags().StringP("output", "o", "text", "text or json")
	cmd.AddCommand(c.layerPublishCmd(), c.layerListCmd(), c.layerVersionsCmd(), c.layerGetCmd(), c.layerDeleteCmd())
	return cmd
}

// layerVersionArg reads a VERSION argument.
func layerVersionArg(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, &exitError{code: ExitBadInput, err: fmt.Errorf("version %q is not a positive number", s)}
	}
	return v, nil
}

func (c *CLI) layerPublishCmd() *cobra.Command {
	var zip, desc, license string
	var runtimes, archs []string
	cmd := &cobra.Command{
		Use:   "publish NAME --zip FILE [--compatible-runtimes R,R]",
		Short: "Publish a new version of a layer; prints its ARN",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			content, err := os.ReadFile(zip)
			if err != nil {
				return &exitError{code: ExitBadInput, err: err}
			}
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			in := &lambda.PublishLayerVersionInput{LayerName: aws.String(args[0]), Content: &types.LayerVersionContentInput{ZipFile: content}}
			for _, r := range runtimes {
				in.CompatibleRuntimes = append(in.CompatibleRuntimes, types.Runtime(r))
			}
			for _, a := range archs {
				in.CompatibleArchitectures = append(in.CompatibleArchitectures, types.Architecture(a))
			}
			if desc != "" {
				in.Description = aws.String(desc)
			}
			if license != "" {
				in.LicenseInfo = aws.String(license)
			}
			out, err := cl.PublishLayerVersion(cmd.Context(), in)
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() { fmt.Fprintln(c.Stdout, aws.ToString(out.LayerVersionArn)) })
			return nil
		},
	}
	cmd.Flags().StringVar(&zip, "zip", "", "the layer: a zip unpacked into /opt (python/, nodejs/node_modules/, bin/, lib/…)")
	_ = cmd.MarkFlagRequired("zip")
	cmd.Flags().StringSliceVar(&runtimes, "compatible-runtimes", nil, "runtimes the layer is for, such as python3.11,nodejs18.x (used to filter lists)")
	cmd.Flags().StringSliceVar(&archs, "compatible-architectures", nil, "x86_64, arm64")
	cmd.Flags().StringVar(&desc, "description", "", "description of this version")
	cmd.Flags().StringVar(&license, "license-info", "", "the layer's license: an SPDX id, a URL or its text")
	return cmd
}

func runtimeList(rs []types.Runtime) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return strings.Join(out, ",")
}

func (c *CLI) layerListCmd() *cobra.Command {
	var runtime, arch string
	cmd := &cobra.Command{
		Use:   "list [--compatible-runtime R]",
		Short: "List layers, each with its latest version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			in := &lambda.ListLayersInput{CompatibleRuntime: types.Runtime(runtime), CompatibleArchitecture: types.Architecture(arch)}
			var all []types.LayersListItem
			p := lambda.NewListLayersPaginator(cl, in)
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return apiError(err)
				}
				all = append(all, page.Layers...)
			}
			c.output(cmd, map[string]any{"Layers": all}, func() {
				tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tLATEST\tRUNTIMES\tDESCRIPTION")
				for _, l := range all {
					v := l.LatestMatchingVersion
					if v == nil {
						v = &types.LayerVersionsListItem{}
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", aws.ToString(l.LayerName), v.Version, runtimeList(v.CompatibleRuntimes), aws.ToString(v.Description))
				}
				_ = tw.Flush()
			})
			return nil
		},
	}
	cmd.Flags().StringVar(&runtime, "compatible-runtime", "", "only layers whose latest such version declares this runtime")
	cmd.Flags().StringVar(&arch, "compatible-architecture", "", "only layers whose latest such version declares this architecture")
	return cmd
}

func (c *CLI) layerVersionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "versions NAME",
		Short: "List a layer's versions, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			var all []types.LayerVersionsListItem
			p := lambda.NewListLayerVersionsPaginator(cl, &lambda.ListLayerVersionsInput{LayerName: aws.String(args[0])})
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return apiError(err)
				}
				all = append(all, page.LayerVersions...)
			}
			c.output(cmd, map[string]any{"LayerVersions": all}, func() {
				tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tCREATED\tRUNTIMES\tARN")
				for _, v := range all {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", v.Version, aws.ToString(v.CreatedDate), runtimeList(v.CompatibleRuntimes), aws.ToString(v.LayerVersionArn))
				}
				_ = tw.Flush()
			})
			return nil
		},
	}
}

func (c *CLI) layerGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME VERSION",
		Short: "Show a layer version",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := layerVersionArg(args[1])
			if err != nil {
				return err
			}
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			out, err := cl.GetLayerVersion(cmd.Context(), &lambda.GetLayerVersionInput{LayerName: aws.String(args[0]), VersionNumber: aws.Int64(v)})
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() {
				fmt.Fprintln(c.Stdout, aws.ToString(out.LayerVersionArn))
				if out.Content != nil {
					fmt.Fprintf(c.Stdout, "size %d bytes, sha256 %s\n", out.Content.CodeSize, aws.ToString(out.Content.CodeSha256))
				}
				if len(out.CompatibleRuntimes) > 0 {
					fmt.Fprintf(c.Stdout, "runtimes %s\n", runtimeList(out.CompatibleRuntimes))
				}
				if d := aws.ToString(out.Description); d != "" {
					fmt.Fprintln(c.Stdout, d)
				}
			})
			return nil
		},
	}
}

func (c *CLI) layerDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME VERSION",
		Short: "Delete a layer version; functions that use it keep it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := layerVersionArg(args[1])
			if err != nil {
				return err
			}
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			if _, err := cl.DeleteLayerVersion(cmd.Context(), &lambda.DeleteLayerVersionInput{LayerName: aws.String(args[0]), VersionNumber: aws.Int64(v)}); err != nil {
				return apiError(err)
			}
			return nil
		},
	}
}
