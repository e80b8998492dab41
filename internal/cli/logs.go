package cli

import (
	"bytes"
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
			q := url.Values{"tail": {strconv.Itoa(tail)}}
			if follow {
				q.Set("follow", "1")
			}
			resp, err := c.hearthRequest(cmd, http.MethodGet, "/functions/"+url.PathEscape(args[0])+"/logs?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
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

// hearthRequest sends a signed request to the daemon's own API (beside
// Lambda's, under /hearth/v1) and checks its status.
func (c *CLI) hearthRequest(cmd *cobra.Command, method, path string, body []byte) (*http.Response, error) {
	endpoint := c.endpoint(cmd)
	id, secret, err := c.keys(cmd)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, endpoint+"/hearth/v1"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hash)
	req.Header.Set("Content-Type", "application/json")
	creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(cmd.Context(), creds, req, hash, "lambda", "local", time.Now()); err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, &exitError{code: ExitHostError, err: err}
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		code := ExitBadInput
		if resp.StatusCode >= 500 {
			code = ExitHostError
		}
		return nil, &exitError{code: code, err: fmt.Errorf("%s: %s", resp.Header.Get("X-Amzn-ErrorType"), bytes.TrimSpace(b))}
	}
	return resp, nil
}
