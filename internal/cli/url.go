package cli

import (
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/spf13/cobra"
)

func (c *CLI) urlCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "url", Short: "Give functions their own HTTP(S) endpoints"}
	cmd.PersistentFlags().StringP("output", "o", "text", "text or json")
	cmd.AddCommand(c.urlCreateCmd(), c.urlGetCmd(), c.urlDeleteCmd())
	return cmd
}

type corsFlags struct {
	origins, methods, headers, expose []string
	credentials                       bool
	maxAge                            int
}

func (f *corsFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.origins, "cors-allow-origins", nil, "origins allowed to call the URL from a browser ('*' for any)")
	cmd.Flags().StringSliceVar(&f.methods, "cors-allow-methods", nil, "methods allowed (default: *)")
	cmd.Flags().StringSliceVar(&f.headers, "cors-allow-headers", nil, "request headers allowed")
	cmd.Flags().StringSliceVar(&f.expose, "cors-expose-headers", nil, "response headers a page may read")
	cmd.Flags().BoolVar(&f.credentials, "cors-allow-credentials", false, "allow cookies and credentials")
	cmd.Flags().IntVar(&f.maxAge, "cors-max-age", 0, "seconds a browser may cache a preflight (0–86400)")
}

func (f *corsFlags) cors() *types.Cors {
	if len(f.origins) == 0 {
		return nil
	}
	methods := f.methods
	if len(methods) == 0 {
		methods = []string{"*"}
	}
	return &types.Cors{AllowOrigins: f.origins, AllowMethods: methods, AllowHeaders: f.headers, ExposeHeaders: f.expose,
		AllowCredentials: aws.Bool(f.credentials), MaxAge: aws.Int32(int32(f.maxAge))}
}

func (c *CLI) urlCreateCmd() *cobra.Command {
	var auth, qualifier string
	var cf corsFlags
	cmd := &cobra.Command{
		Use:   "create NAME [--auth-type NONE|AWS_IAM]",
		Short: "Create a function URL; prints it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			in := &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String(args[0]),
				AuthType: types.FunctionUrlAuthType(strings.ToUpper(auth)), Cors: cf.cors()}
			if qualifier != "" {
				in.Qualifier = aws.String(qualifier)
			}
			out, err := cl.CreateFunctionUrlConfig(cmd.Context(), in)
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() { fmt.Fprintln(c.Stdout, aws.ToString(out.FunctionUrl)) })
			return nil
		},
	}
	cmd.Flags().StringVar(&auth, "auth-type", "NONE", "NONE (public) or AWS_IAM (SigV4-signed requests only)")
	cmd.Flags().StringVar(&qualifier, "qualifier", "", "a version or an alias")
	cf.register(cmd)
	return cmd
}

func (c *CLI) urlGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Print a function's URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			out, err := cl.GetFunctionUrlConfig(cmd.Context(), &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String(args[0])})
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() { fmt.Fprintln(c.Stdout, aws.ToString(out.FunctionUrl)) })
			return nil
		},
	}
}

func (c *CLI) urlDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a function's URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			if _, err := cl.DeleteFunctionUrlConfig(cmd.Context(), &lambda.DeleteFunctionUrlConfigInput{FunctionName: aws.String(args[0])}); err != nil {
				return apiError(err)
			}
			return nil
		},
	}
}
