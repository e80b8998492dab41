package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/spf13/cobra"
)

// notifyEvents reads --events: created, removed, or S3's names.
func notifyEvents(list []string) ([]types.Event, error) {
	var out []types.Event
	for _, e := range list {
		switch e = strings.TrimSpace(e); e {
		case "created":
			out = append(out, types.EventS3ObjectCreated)
		case "removed":
			out = append(out, types.EventS3ObjectRemoved)
		default:
			if !strings.HasPrefix(e, "s3:") {
				return nil, fmt.Errorf("--events: %q is not created, removed or an S3 event name (s3:ObjectCreated:Put)", e)
			}
			out = append(out, types.Event(e))
		}
	}
	return out, nil
}

// notifyRow is one configuration as listed.
type notifyRow struct {
	ID, Target, Events, Prefix, Suffix string
}

func notifyRows(cfg *s3.GetBucketNotificationConfigurationOutput) []notifyRow {
	rows := []notifyRow{}
	row := func(id *string, target string, events []types.Event, f *types.NotificationConfigurationFilter) notifyRow {
		r := notifyRow{ID: aws.ToString(id), Target: target}
		var names []string
		for _, e := range events {
			names = append(names, string(e))
		}
		r.Events = strings.Join(names, ",")
		if f != nil && f.Key != nil {
			for _, fr := range f.Key.FilterRules {
				switch strings.ToLower(string(fr.Name)) {
				case "prefix":
					r.Prefix = aws.ToString(fr.Value)
				case "suffix":
					r.Suffix = aws.ToString(fr.Value)
				}
			}
		}
		return r
	}
	for _, c := range cfg.LambdaFunctionConfigurations {
		rows = append(rows, row(c.Id, aws.ToString(c.LambdaFunctionArn), c.Events, c.Filter))
	}
	for _, c := range cfg.QueueConfigurations {
		rows = append(rows, row(c.Id, aws.ToString(c.QueueArn), c.Events, c.Filter))
	}
	return rows
}

func (c *CLI) bucketNotifyCmd() *cobra.Command {
	var function, queueName, prefix, suffix, id, remove string
	var events []string
	var clear bool
	cmd := &cobra.Command{Use: "notify BUCKET", Args: cobra.ExactArgs(1),
		Short: "Send a bucket's object events to a function or a queue (without --function/--queue/--remove/--clear: list)",
		Long: `Bucket notifications: objects created (s3:ObjectCreated:*) or removed
(s3:ObjectRemoved:*) whose keys match --prefix and --suffix invoke a function
asynchronously (retried, with its destinations and dead-letter queue) or go
to a queue, as S3's event. A configuration is added beside the bucket's
others (one of the same --id is replaced); S3 refuses two that could match
the same event of the same key.

  hearth bucket notify photos --function thumbnailer --prefix in/ --suffix .jpg
  hearth bucket notify photos --queue deletions --events removed
  hearth bucket notify photos                 # list
  hearth bucket notify photos --remove ID`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.s3Client(cmd)
			if err != nil {
				return err
			}
			ctx, bucket := cmd.Context(), aws.String(args[0])
			cur, err := cl.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: bucket})
			if err != nil {
				return apiError(err)
			}
			if function == "" && queueName == "" && remove == "" && !clear {
				rows := notifyRows(cur)
				c.output(cmd, rows, func() {
					tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tTARGET\tEVENTS\tPREFIX\tSUFFIX")
					for _, r := range rows {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Target, r.Events, r.Prefix, r.Suffix)
					}
					tw.Flush()
				})
				return nil
			}
			if function != "" && queueName != "" {
				return errors.New("--function or --queue, not both")
			}
			next := &types.NotificationConfiguration{}
			drop := func(cid *string) bool {
				return clear || aws.ToString(cid) == remove || (id != "" && aws.ToString(cid) == id)
			}
			for _, fc := range cur.LambdaFunctionConfigurations {
				if !drop(fc.Id) {
					next.LambdaFunctionConfigurations = append(next.LambdaFunctionConfigurations, fc)
				}
			}
			for _, qc := range cur.QueueConfigurations {
				if !drop(qc.Id) {
					next.QueueConfigurations = append(next.QueueConfigurations, qc)
				}
			}
			evs, err := notifyEvents(events)
			if err != nil {
				return err
			}
			var filter *types.NotificationConfigurationFilter
			if prefix != "" || suffix != "" {
				filter = &types.NotificationConfigurationFilter{Key: &types.S3KeyFilter{}}
				if prefix != "" {
					filter.Key.FilterRules = append(filter.Key.FilterRules, types.FilterRule{Name: types.FilterRuleNamePrefix, Value: aws.String(prefix)})
				}
				if suffix != "" {
					filter.Key.FilterRules = append(filter.Key.FilterRules, types.FilterRule{Name: types.FilterRuleNameSuffix, Value: aws.String(suffix)})
				}
			}
			var cid *string
			if id != "" {
				cid = aws.String(id)
			}
			switch {
			case function != "":
				arn := function
				if !strings.HasPrefix(arn, "arn:") {
					// The function's ARN as the daemon names it (its region).
					lc, err := c.client(cmd)
					if err != nil {
						return err
					}
					f, err := lc.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(function)})
					if err != nil {
						return apiError(err)
					}
					arn = aws.ToString(f.Configuration.FunctionArn)
				}
				next.LambdaFunctionConfigurations = append(next.LambdaFunctionConfigurations,
					types.LambdaFunctionConfiguration{Id: cid, LambdaFunctionArn: aws.String(arn), Events: evs, Filter: filter})
			case queueName != "":
				arn := queueName
				if !strings.HasPrefix(arn, "arn:") {
					sq, err := c.sqsClient(cmd)
					if err != nil {
						return err
					}
					a, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: c.queueURL(cmd, queueName),
						AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
					if err != nil {
						return apiError(err)
					}
					arn = a.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
				}
				next.QueueConfigurations = append(next.QueueConfigurations,
					types.QueueConfiguration{Id: cid, QueueArn: aws.String(arn), Events: evs, Filter: filter})
			}
			if _, err := cl.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: bucket, NotificationConfiguration: next}); err != nil {
				return apiError(err)
			}
			after, err := cl.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: bucket})
			if err != nil {
				return apiError(err)
			}
			rows := notifyRows(after)
			c.output(cmd, rows, func() {
				fmt.Fprintf(c.Stdout, "bucket %s: %d notification configuration(s)\n", args[0], len(rows))
			})
			return nil
		}}
	cmd.Flags().StringVar(&function, "function", "", "the function to invoke (a name or an ARN)")
	cmd.Flags().StringVar(&queueName, "queue", "", "the queue to send the events to (a name or an ARN)")
	cmd.Flags().StringVar(&prefix, "prefix", "", "only keys that start so")
	cmd.Flags().StringVar(&suffix, "suffix", "", "only keys that end so")
	cmd.Flags().StringSliceVar(&events, "events", []string{"created"}, "created, removed, or S3's event names (s3:ObjectCreated:Put, …), separated by commas")
	cmd.Flags().StringVar(&id, "id", "", "the configuration's id (made if empty); an existing one of that id is replaced")
	cmd.Flags().StringVar(&remove, "remove", "", "remove the configuration of this id")
	cmd.Flags().BoolVar(&clear, "clear", false, "remove every configuration of the bucket")
	return cmd
}
