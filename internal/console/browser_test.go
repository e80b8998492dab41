package console_test

import (
	"context"
	"os"
	"testing"

	"github.com/chromedp/chromedp"
)

// chromium is Debian's, which scripts/install-deps.sh installs.
const chromium = "/usr/bin/chromium"

// newBrowser starts a headless Chromium that lives as long as ctx (and
// the test) and returns a tab in it.
func newBrowser(ctx context.Context, t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium is not installed (apt-get install chromium): %v", err)
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true))
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(bcancel)
	return bctx
}
