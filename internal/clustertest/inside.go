package clustertest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"golang.org/x/sys/unix"
)

// SQS is an aws-sdk-go-v2 SQS client of h's API (queues are served on
// the API's address), with h's keys.
func (h *Host) SQS() *sqs.Client {
	return sqs.New(sqs.Options{BaseEndpoint: aws.String(h.API), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(h.Keys.AccessKeyID, h.Keys.SecretAccessKey, "")})
}

// LambdaInside is a Lambda client of h's API whose connections are made
// from inside h's network namespace: it reaches h while h is partitioned
// (as a client on h's own machine would).
func (h *Host) LambdaInside() *lambda.Client {
	tr := &http.Transport{DialContext: h.dialInside, DisableKeepAlives: true}
	return lambda.New(lambda.Options{BaseEndpoint: aws.String(h.API), Region: "local", RetryMaxAttempts: 1,
		HTTPClient:  &http.Client{Transport: tr},
		Credentials: credentials.NewStaticCredentialsProvider(h.Keys.AccessKeyID, h.Keys.SecretAccessKey, "")})
}

// dialInside makes the socket on a thread switched into h's namespace (a
// socket stays in the namespace it was made in), then switches back; a
// thread that cannot switch back is left locked, so Go ends it.
func (h *Host) dialInside(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, err}
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + h.Netns)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, fmt.Errorf("entering %s: %w", h.Netns, err)}
			return
		}
		// Connecting to h's own address inside its namespace does not
		// wait on the network: a short bound is enough.
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, network, addr)
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// This thread stays in h's namespace: let it die with the
			// goroutine (no UnlockOSThread).
			if c != nil {
				c.Close()
			}
			done <- result{nil, fmt.Errorf("leaving %s: %w", h.Netns, err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}
