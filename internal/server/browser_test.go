package server_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Headless Chromium loads a page served by one function URL; the page's
// script calls another function URL across origins (CORS), and the test
// reads what the page shows.
func TestBrowserPageCallsAnotherFunctionURL(t *testing.T) {
	chromium := "/usr/bin/chromium" // Debian's, which scripts/install-deps.sh installs
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium is not installed (apt-get install chromium): %v", err)
	}
	u := startWithURLs(t)
	ctx := context.Background()
	web := readZip(t, "./examples/web")
	for _, name := range []string{"page", "api"} {
		if _, err := u.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: types.RuntimeProvidedal2023,
			Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: web}, Timeout: aws.Int32(30)}); err != nil {
			t.Fatal(err)
		}
	}
	pageURL := u.createURL(t, "page", "NONE", nil)
	origin := strings.TrimSuffix(pageURL, "/")
	apiURL := u.createURL(t, "api", "NONE", &types.Cors{AllowOrigins: []string{origin}, AllowMethods: []string{"GET"}})
	// Boot both functions first, so that the browser's wait is not a cold start.
	for _, url := range []string{pageURL, apiURL + "greet"} {
		if resp, _ := do(t, u.http, "GET", url, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("warming %s: %d", url, resp.StatusCode)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=20000", "--dump-dom", pageURL+"?api="+apiURL)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `<p id="result">Hello, Browser!</p>`) {
		t.Errorf("the page shows:\n%s", out)
	}
}
