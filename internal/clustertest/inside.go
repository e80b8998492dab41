package clustertest

import (
	"context"
	"fmt"
	"io"
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

// dialInside makes the connection from inside h's namespace.
func (h *Host) dialInside(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.inside(func() (io.Closer, error) {
		// Connecting to h's own address inside its namespace does not
		// wait on the network: a short bound is enough.
		d := net.Dialer{Timeout: 5 * time.Second}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return c, err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// inside runs open on a thread switched into h's network namespace (a
// socket stays in the namespace it was made in), then switches back; a
// thread that cannot switch back is left locked, so Go ends it with its
// goroutine, and what open made is closed.
func (h *Host) inside(open func() (io.Closer, error)) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + h.Netns)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("entering %s: %w", h.Netns, err)
			return
		}
		made, err := open()
		if serr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); serr != nil {
			if err == nil {
				made.Close()
			}
			done <- fmt.Errorf("leaving %s: %w", h.Netns, serr)
			return
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}
