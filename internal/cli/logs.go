package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/spf13/cobra"
)

func (c *CLI) logsCmd() *cobra.Command {
	var follow bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs NAME [--follow]",
		Short: "Print a function's log: its output and its START, END and REPORT lines",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			endpoint, _ := cmd.Flags().GetString("endpoint")
			if endpoint == "" {
				endpoint = c.Getenv("HEARTH_ENDPOINT")
			}
			if endpoint == "" {
				endpoint = "http://127.0.0.1:9000"
			}
			id, secret, err := c.keys(cmd)
			if err != nil {
				return err
			}
			q := url.Values{"tail": {strconv.Itoa(tail)}}
			if follow {
				q.Set("follow", "1")
			}
			u := endpoint + "/hearth/v1/functions/" + url.PathEscape(args[0]) + "/logs?" + q.Encode()
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			empty := sha256.Sum256(nil)
			hash := hex.EncodeToString(empty[:])
			req.Header.Set("X-Amz-Content-Sha256", hash)
			creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}
			if err := v4.NewSigner().SignHTTP(cmd.Context(), creds, req, hash, "lambda", "local", time.Now()); err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return &exitError{code: ExitHostError, err: err}
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				code := ExitBadInput
				if resp.StatusCode >= 500 {
					code = ExitHostError
				}
				return &exitError{code: code, err: fmt.Errorf("%s: %s", resp.Header.Get("X-Amzn-ErrorType"), b)}
			}
			_, err = io.Copy(c.Stdout, resp.Body)
			if cmd.Context().Err() != nil {
				return nil // --follow ended by the user
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what is logged")
	cmd.Flags().IntVar(&tail, "tail", 100, "lines of the past to print first")
	return cmd
}
