// Command mkzip writes a function's zip package: mkzip OUT.zip FILE...
package main

import (
	"fmt"
	"os"

	"github.com/hearthdev/hearth/internal/fnzip"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: mkzip OUT.zip FILE...")
		os.Exit(2)
	}
	if err := fnzip.Write(os.Args[1], os.Args[2:]...); err != nil {
		fmt.Fprintln(os.Stderr, "mkzip:", err)
		os.Exit(1)
	}
}
