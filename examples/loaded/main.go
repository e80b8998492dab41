// Command loaded stands for model inference: it loads a large piece of data
// once, at init (LOAD_MB megabytes, 200 by default), and answers every call
// from memory. Suspended and resumed, it answers again without loading.
package main

import (
	"context"
	"encoding/binary"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

var (
	weights  []byte
	loadTime time.Duration
	inits    int
)

func init() {
	inits++
	mb, err := strconv.Atoi(os.Getenv("LOAD_MB"))
	if err != nil || mb <= 0 {
		mb = 200
	}
	start := time.Now()
	weights = make([]byte, mb<<20)
	for i := 0; i < len(weights); i += 8 {
		binary.LittleEndian.PutUint64(weights[i:], uint64(i)*0x9e3779b97f4a7c15)
	}
	loadTime = time.Since(start)
}

type request struct {
	Input uint64 `json:"input"`
}

type response struct {
	Output   uint64  `json:"output"`
	LoadedMB int     `json:"loadedMB"`
	LoadMs   float64 `json:"loadMs"`
	Inits    int     `json:"inits"`
}

func handle(ctx context.Context, req request) (response, error) {
	// A toy "inference": a few lookups into the loaded weights.
	var out uint64
	n := uint64(len(weights) / 8)
	x := req.Input
	for i := 0; i < 64; i++ {
		x = binary.LittleEndian.Uint64(weights[(x%n)*8:]) ^ x
		out += x
	}
	return response{Output: out, LoadedMB: len(weights) >> 20, LoadMs: float64(loadTime.Microseconds()) / 1000, Inits: inits}, nil
}

func main() { lambda.Start(handle) }
