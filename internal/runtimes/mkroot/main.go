// Command mkroot turns a managed runtime's package tar (mmdebstrap's output,
// on standard input) into its read-only root disk, with the runtime
// interface client added; scripts/build-runtimes.sh runs it.
//
//	mkroot -packages python3.11              prints the Debian packages to install
//	mkroot -runtime python3.11 -o root.ext4  reads the tar, writes root.ext4 and root.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/runtimes"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkroot:", err)
		os.Exit(1)
	}
}

func run() error {
	packages := flag.String("packages", "", "print the Debian packages of this runtime and exit")
	name := flag.String("runtime", "", "the runtime whose root to build")
	out := flag.String("o", "", "the ext4 image to write; its manifest goes beside it, .json for .ext4")
	flag.Parse()
	if *packages != "" {
		rt, err := runtimes.Lookup(*packages)
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(rt.Packages, ","))
		return nil
	}
	if *name == "" || *out == "" || !strings.HasSuffix(*out, ".ext4") {
		return fmt.Errorf("usage: mkroot -runtime NAME -o FILE.ext4 < packages.tar")
	}
	rt, err := runtimes.Lookup(*name)
	if err != nil {
		return err
	}
	opts := runtimes.BuildOptions{ModTime: time.Unix(0, 0)}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		opts.ModTime = time.Unix(sec, 0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	f, err := os.OpenFile(*out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := runtimes.WriteRoot(ctx, os.Stdin, rt, f, opts)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(strings.TrimSuffix(*out, ".ext4")+".json", append(raw, '\n'), 0o644)
}
