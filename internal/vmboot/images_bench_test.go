package vmboot_test

import (
	"archive/zip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

// What a host without a function's code image pays on its first cold
// start before the boot, against one that has it (README's routing
// paragraph: placement prefers the host that has it). Boots no VM.
//
//	go test -run XXX -bench BenchmarkCodeImage ./internal/vmboot/
func BenchmarkCodeImage(b *testing.B) {
	hello := testvm.FunctionZip(b, "./examples/hello")
	h := &vmboot.Host{Agent: testvm.Agent(b), AgentDigest: "bench", Kernel: testvm.Kernel(b)}
	for _, extraMB := range []int{0, 20, 90} {
		z := hello
		if extraMB > 0 {
			z = padZip(b, hello, extraMB)
		}
		data, err := os.ReadFile(z)
		if err != nil {
			b.Fatal(err)
		}
		sum := sha256.Sum256(data)
		digest := hex.EncodeToString(sum[:])
		name := fmt.Sprintf("zip=%dKB", len(data)>>10)
		b.Run(name+"/build", func(b *testing.B) {
			for range b.N {
				if _, err := h.CodeImage(context.Background(), b.TempDir(), digest, z); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/built", func(b *testing.B) {
			dir := b.TempDir()
			if _, err := h.CodeImage(context.Background(), dir, digest, z); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := h.CodeImage(context.Background(), dir, digest, z); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// padZip is the zip at base with mb more MB of files (half random, half
// zeros: they compress about as libraries do).
func padZip(b *testing.B, base string, mb int) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "padded.zip")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	src, err := zip.OpenReader(base)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	for _, fl := range src.File {
		if err := zw.Copy(fl); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, 1<<20)
	for i := range mb {
		w, err := zw.Create(fmt.Sprintf("lib/part%03d", i))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = rand.Read(buf[:len(buf)/2])
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}
