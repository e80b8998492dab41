package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/queue"
)

// sqsClient is the SQS API client for the daemon's queues: the real
// aws-sdk-go-v2 client, signing with the daemon's keys.
func (c *CLI) sqsClient(cmd *cobra.Command) (*sqs.Client, error) {
	id, secret, err := c.keys(cmd)
	if err != nil {
		return nil, err
	}
	return sqs.New(sqs.Options{
		BaseEndpoint: aws.String(c.endpoint(cmd)), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""),
	}), nil
}

// queueURL is a queue's URL on the daemon.
func (c *CLI) queueURL(cmd *cobra.Command, name string) *string {
	return aws.String(strings.TrimSuffix(c.endpoint(cmd), "/") + "/" + queue.AccountID + "/" + name)
}

func (c *CLI) queueCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "queue", Short: "Manage queues: SQS-compatible queues on the daemon (the SQS API)"}
	cmd.PersistentFlags().StringP("output", "o", "text", "text or json")
	cmd.AddCommand(c.queueCreateCmd(), c.queueListCmd(), c.queueSendCmd(), c.queueReceiveCmd(), c.queueDeleteMessageCmd(),
		c.queuePurgeCmd(), c.queueDeleteCmd(), c.queueStatsCmd())
	return cmd
}

// queueRun runs fn with an SQS client; an API error is a refusal.
func (c *CLI) queueRun(fn func(cmd *cobra.Command, cl *sqs.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cl, err := c.sqsClient(cmd)
		if err != nil {
			return err
		}
		return fn(cmd, cl, args)
	}
}

func (c *CLI) queueCreateCmd() *cobra.Command {
	var attrs []string
	var dlq string
	var maxReceives int
	cmd := &cobra.Command{
		Use:   "create NAME [--attribute NAME=VALUE]… [--dead-letter-queue DLQ --max-receive-count N]",
		Short: "Create a queue; prints its URL",
		Args:  cobra.ExactArgs(1),
		RunE: c.queueRun(func(cmd *cobra.Command, cl *sqs.Client, args []string) error {
			in := &sqs.CreateQueueInput{QueueName: aws.String(args[0]), Attributes: map[string]string{}}
			for _, a := range attrs {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					return &exitError{code: ExitBadInput, err: fmt.Errorf("--attribute %q: want NAME=VALUE (VisibilityTimeout=60)", a)}
				}
				in.Attributes[k] = v
			}
			if dlq != "" {
				in.Attributes["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":"arn:aws:sqs:%s:%s:%s","maxReceiveCount":%d}`, c.region(), queue.AccountID, dlq, maxReceives)
			}
			out, err := cl.CreateQueue(cmd.Context(), in)
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() { fmt.Fprintln(c.Stdout, aws.ToString(out.QueueUrl)) })
			return nil
		}),
	}
	cmd.Flags().StringArrayVar(&attrs, "attribute", nil, "a queue attribute: VisibilityTimeout, MessageRetentionPeriod, DelaySeconds, ReceiveMessageWaitTimeSeconds, MaximumMessageSize")
	cmd.Flags().StringVar(&dlq, "dead-letter-queue", "", "the queue that gets messages received more than --max-receive-count times")
	cmd.Flags().IntVar(&maxReceives, "max-receive-count", 5, "receives before a message goes to the dead-letter queue")
	return cmd
}

// region is the region the daemon's ARNs name.
func (c *CLI) region() string {
	if r := c.Getenv("HEARTH_REGION"); r != "" {
		return r
	}
	return "local"
}

func (c *CLI) queueListCmd() *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "list [--prefix P]",
		Short: "List the queues",
		Args:  cobra.NoArgs,
		RunE: c.queueRun(func(cmd *cobra.Command, cl *sqs.Client, args []string) error {
			var urls []string
			p := sqs.NewListQueuesPaginator(cl, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(prefix), MaxResults: aws.Int32(1000)})
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return apiError(err)
				}
				urls = append(urls, page.QueueUrls...)
			}
			c.output(cmd, map[string][]string{"QueueUrls": urls}, func() {
				for _, u := range urls {
					fmt.Fprintln(c.Stdout, u[strings.LastIndex(u, "/")+1:])
				}
			})
			return nil
		}),
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only the queues whose names start with this")
	return cmd
}

func (c *CLI) queueSendCmd() *cobra.Command {
	var delay int
	cmd := &cobra.Command{
		Use:   "send NAME BODY [--delay S]",
		Short: "Send a message; prints its id",
		Args:  cobra.ExactArgs(2),
		RunE: c.queueRun(func(cmd *cobra.Command, cl *sqs.Client, args []string) error {
			out, err := cl.SendMessage(cmd.Context(), &sqs.SendMessageInput{QueueUrl: c.queueURL(cmd, args[0]), MessageBody: aws.String(args[1]), DelaySeconds: int32(delay)})
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() { fmt.Fprintln(c.Stdout, aws.ToString(out.MessageId)) })
			return nil
		}),
	}
	cmd.Flags().IntVar(&delay, "delay", 0, "seconds before the message can be received (0–900)")
	return cmd
}

func (c *CLI) queueReceiveCmd() *cobra.Command {
	var maxN, wait, visibility int
	cmd := &cobra.Command{
		Use:   "receive NAME [--max N] [--wait S] [--visibility S]",
		Short: "Receive messages (they stay in the queue, hidden, until deleted)",
		Args:  cobra.ExactArgs(1),
		RunE: c.queueRun(func(cmd *cobra.Command, cl *sqs.Client, args []string) error {
			in := &sqs.ReceiveMessageInput{QueueUrl: c.queueURL(cmd, args[0]), MaxNumberOfMessages: int32(maxN), WaitTimeSeconds: int32(wait),
				MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}, MessageAttributeNames: []string{"All"}}
			if visibility >= 0 {
				in.VisibilityTimeout = int32(visibility)
			}
			out, err := cl.ReceiveMessage(cmd.Context(), in)
			if err != nil {
				return apiError(err)
			}
			c.output(cmd, out, func() {
				w := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "MESSAGE ID\tRECEIVES\tBODY\tRECEIPT HANDLE")
				for _, m := range out.Messages {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", aws.ToString(m.MessageId), m.Attributes["ApproximateReceiveCount"], strconv.Quote(aws.ToString(m.Body)), aws.ToString(m.ReceiptHandle))
				}
				w.Flush()
			})
			return nil
		}),
	}
	cmd.Flags().IntVar(&maxN, "max", 1, "messages to receive at most (1–10)")
	cmd.Flags().IntVar(&wait, "wait", 0, "seconds to wait for a message (0–20)")
	cmd.Flags().IntVar(&visibility, "visibility", -1, "seconds the messages stay hidden (default: the queue's VisibilityTimeout)")
	return cmd
}

func (c *CLI) queueDeleteMessageCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete-message NAME RECEIPT-HANDLE",
		Short: "Delete a received message",
		Args:  cobra.ExactArgs(2),
		RunE: c.queueRun(func(cmd *cobra.Command, cl *sqs.Client, args []string) error {
			if _, err := cl.DeleteMessage(cmd.Context(), &sqs.DeleteMessageInput{QueueUrl: c.queueURL(cmd, args[0]), ReceiptHandle: aws.String(args[1])}); err != nil {
				return apiError(err)
			}
			return nil
		}),
	}
}

func (c *CLI) queuePurgeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "purge NAME",
		Short: "Delete every message of a queue",
		Args:  cobra.ExactArgs(1),
		RunE: c.queueRun(func(cmd *cobra.Command, cl *sqs.Client, args []string) error {
			if _, err := cl.PurgeQueue(cmd.Context(), &sqs.PurgeQueueInput{QueueUrl: c.queueURL(cmd, args[0])}); err != nil {
				return apiError(err)
			}
			return nil
		}),
	}
}

func (c *CLI) queueDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a queue and its messages",
		Args:  cobra.ExactArgs(1),
		RunE: c.queueRun(func(cmd *cobra.Command, cl *sqs.Client, args []string) error {
			if _, err := cl.DeleteQueue(cmd.Context(), &sqs.DeleteQueueInput{QueueUrl: c.queueURL(cmd, args[0])}); err != nil {
				return apiError(err)
			}
			return nil
		}),
	}
}

func (c *CLI) queueStatsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stats NAME",
		Short: "A queue's messages (visible, in flight, delayed) and settings",
		Args:  cobra.ExactArgs(1),
		RunE: c.queueRun(func(cmd *cobra.Command, cl *sqs.Client, args []string) error {
			out, err := cl.GetQueueAttributes(cmd.Context(), &sqs.GetQueueAttributesInput{QueueUrl: c.queueURL(cmd, args[0]),
				AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
			if err != nil {
				return apiError(err)
			}
			a := out.Attributes
			c.output(cmd, a, func() {
				w := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
				for _, k := range []string{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
					"VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds", "RedrivePolicy", "QueueArn"} {
					if v, ok := a[k]; ok {
						fmt.Fprintf(w, "%s\t%s\n", k, v)
					}
				}
				w.Flush()
			})
			return nil
		}),
	}
}
