package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"
)

// `hearth bucket …` talks to the daemon's S3 endpoint with aws-sdk-go-v2's
// s3 client, signed with the daemon's keys, as the aws CLI would.

func (c *CLI) bucketCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bucket", Short: "Manage buckets and objects on the daemon's S3 endpoint"}
	cmd.PersistentFlags().StringP("output", "o", "text", "text or json")
	cmd.PersistentFlags().String("s3-endpoint", "", "the S3 endpoint (default $HEARTH_S3_ENDPOINT, else http://127.0.0.1:9002)")
	cmd.AddCommand(c.bucketCreateCmd(), c.bucketListCmd(), c.bucketDeleteCmd(), c.bucketLsCmd(), c.bucketCpCmd(), c.bucketRmCmd(), c.bucketNotifyCmd())
	return cmd
}

func (c *CLI) s3Client(cmd *cobra.Command) (*s3.Client, error) {
	endpoint, _ := cmd.Flags().GetString("s3-endpoint")
	if endpoint == "" {
		endpoint = c.Getenv("HEARTH_S3_ENDPOINT")
	}
	if endpoint == "" {
		endpoint = "http://127.0.0.1:9002"
	}
	id, secret, err := c.keys(cmd)
	if err != nil {
		return nil, err
	}
	return s3.New(s3.Options{BaseEndpoint: aws.String(endpoint), Region: "local", UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, "")}), nil
}

// s3URL splits s3://bucket/key.
func s3URL(s string) (bucket, key string, ok bool) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok || rest == "" {
		return "", "", false
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return bucket, key, bucket != ""
}

func (c *CLI) bucketCreateCmd() *cobra.Command {
	return &cobra.Command{Use: "create NAME", Short: "Create a bucket", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.s3Client(cmd)
			if err != nil {
				return err
			}
			if _, err := cl.CreateBucket(cmd.Context(), &s3.CreateBucketInput{Bucket: aws.String(args[0])}); err != nil {
				return apiError(err)
			}
			c.output(cmd, map[string]string{"Bucket": args[0]}, func() { fmt.Fprintf(c.Stdout, "created bucket %s\n", args[0]) })
			return nil
		}}
}

type bucketInfo struct {
	Name         string
	CreationDate time.Time
}

func (c *CLI) bucketListCmd() *cobra.Command {
	return &cobra.Command{Use: "list", Short: "List the buckets", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.s3Client(cmd)
			if err != nil {
				return err
			}
			out, err := cl.ListBuckets(cmd.Context(), &s3.ListBucketsInput{})
			if err != nil {
				return apiError(err)
			}
			list := []bucketInfo{}
			for _, b := range out.Buckets {
				list = append(list, bucketInfo{Name: aws.ToString(b.Name), CreationDate: aws.ToTime(b.CreationDate)})
			}
			c.output(cmd, list, func() {
				tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tCREATED")
				for _, b := range list {
					fmt.Fprintf(tw, "%s\t%s\n", b.Name, b.CreationDate.Format(time.RFC3339))
				}
				tw.Flush()
			})
			return nil
		}}
}

func (c *CLI) bucketDeleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{Use: "delete NAME", Short: "Delete a bucket (it must be empty, unless --force)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.s3Client(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if force {
				p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(args[0])})
				for p.HasMorePages() {
					page, err := p.NextPage(ctx)
					if err != nil {
						return apiError(err)
					}
					for _, o := range page.Contents {
						if _, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(args[0]), Key: o.Key}); err != nil {
							return apiError(err)
						}
					}
				}
			}
			if _, err := cl.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(args[0])}); err != nil {
				return apiError(err)
			}
			c.output(cmd, map[string]string{"Bucket": args[0]}, func() { fmt.Fprintf(c.Stdout, "deleted bucket %s\n", args[0]) })
			return nil
		}}
	cmd.Flags().BoolVar(&force, "force", false, "delete its objects first")
	return cmd
}

type objectInfo struct {
	Key          string    `json:"Key,omitempty"`
	Prefix       string    `json:"Prefix,omitempty"`
	Size         int64     `json:"Size,omitempty"`
	LastModified time.Time `json:"LastModified,omitzero"`
}

func (c *CLI) bucketLsCmd() *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{Use: "ls s3://BUCKET[/PREFIX]", Short: "List objects (and, unless --recursive, the folders under PREFIX)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bucket, prefix, ok := s3URL(args[0])
			if !ok {
				return &exitError{code: ExitBadInput, err: fmt.Errorf("%q is not s3://BUCKET[/PREFIX]", args[0])}
			}
			cl, err := c.s3Client(cmd)
			if err != nil {
				return err
			}
			in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)}
			if !recursive {
				in.Delimiter = aws.String("/")
			}
			list := []objectInfo{}
			p := s3.NewListObjectsV2Paginator(cl, in)
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return apiError(err)
				}
				for _, cp := range page.CommonPrefixes {
					list = append(list, objectInfo{Prefix: aws.ToString(cp.Prefix)})
				}
				for _, o := range page.Contents {
					list = append(list, objectInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)})
				}
			}
			c.output(cmd, list, func() {
				tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				for _, o := range list {
					if o.Prefix != "" {
						fmt.Fprintf(tw, "\t\tPRE %s\n", o.Prefix)
						continue
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\n", o.LastModified.Format(time.RFC3339), o.Size, o.Key)
				}
				tw.Flush()
			})
			return nil
		}}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "every key under PREFIX, no folders")
	return cmd
}

func (c *CLI) bucketCpCmd() *cobra.Command {
	return &cobra.Command{Use: "cp SRC DST", Short: "Copy a file to an object, an object to a file (- is stdout), or an object to an object",
		Long: "SRC and DST are each a local path or s3://BUCKET/KEY; a DST key ending in / (or empty) takes SRC's file name.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.s3Client(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			sb, sk, srcS3 := s3URL(args[0])
			db, dk, dstS3 := s3URL(args[1])
			if dstS3 && (dk == "" || strings.HasSuffix(dk, "/")) {
				base := args[0]
				if srcS3 {
					base = sk
				}
				dk += base[strings.LastIndex(base, "/")+1:]
			}
			switch {
			case srcS3 && dstS3:
				_, err = cl.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(db), Key: aws.String(dk), CopySource: aws.String(sb + "/" + sk)})
			case dstS3:
				var f *os.File
				if f, err = os.Open(args[0]); err != nil {
					return &exitError{code: ExitBadInput, err: err}
				}
				defer f.Close()
				_, err = cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(db), Key: aws.String(dk), Body: f})
			case srcS3:
				err = c.download(cmd, cl, sb, sk, args[1])
			default:
				return &exitError{code: ExitBadInput, err: errors.New("one of SRC and DST must be s3://BUCKET/KEY")}
			}
			if err != nil {
				var ee *exitError
				if errors.As(err, &ee) {
					return err
				}
				return apiError(err)
			}
			if args[1] != "-" {
				c.output(cmd, map[string]string{"From": args[0], "To": args[1]}, func() { fmt.Fprintf(c.Stdout, "copied %s to %s\n", args[0], args[1]) })
			}
			return nil
		}}
}

// download writes an object to path (- is stdout), whole or not at all.
func (c *CLI) download(cmd *cobra.Command, cl *s3.Client, bucket, key, path string) error {
	out, err := cl.GetObject(cmd.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	if path == "-" {
		_, err = io.Copy(c.Stdout, out.Body)
		return err
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = strings.TrimSuffix(path, "/") + "/" + key[strings.LastIndex(key, "/")+1:]
	}
	tmp := path + ".hearth-download"
	f, err := os.Create(tmp)
	if err != nil {
		return &exitError{code: ExitBadInput, err: err}
	}
	if _, err := io.Copy(f, out.Body); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func (c *CLI) bucketRmCmd() *cobra.Command {
	return &cobra.Command{Use: "rm s3://BUCKET/KEY", Short: "Delete an object", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bucket, key, ok := s3URL(args[0])
			if !ok || key == "" {
				return &exitError{code: ExitBadInput, err: fmt.Errorf("%q is not s3://BUCKET/KEY", args[0])}
			}
			cl, err := c.s3Client(cmd)
			if err != nil {
				return err
			}
			if _, err := cl.DeleteObject(cmd.Context(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
				return apiError(err)
			}
			c.output(cmd, map[string]string{"Deleted": args[0]}, func() { fmt.Fprintf(c.Stdout, "deleted %s\n", args[0]) })
			return nil
		}}
}
