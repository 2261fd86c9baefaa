package browsertest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// NewWithFlags is New with extra Chromium command-line switches, such as
// "--allow-loopback-in-peer-connection". Each switch is "--name" or
// "--name=value" (the leading dashes may be left out). The feature lists
// "--enable-features=..." and "--disable-features=..." are added to the
// features that chromedp's default options already list, instead of
// replacing them; any other switch that New sets anyway is replaced.
//
// With no extra switches it starts the browser the way New does.
func NewWithFlags(t testing.TB, extra ...string) context.Context {
	t.Helper()
	return NewForWithFlags(t, DefaultTimeout, extra...)
}

// NewForWithFlags is NewWithFlags for a test that needs the browser for
// longer than DefaultTimeout.
func NewForWithFlags(t testing.TB, timeout time.Duration, extra ...string) context.Context {
	t.Helper()
	var (
		opts     []chromedp.ExecAllocatorOption
		features = map[string][]string{} // "enable-features" etc: values to add
		order    []string                // feature switch names, first use first
	)
	for _, f := range extra {
		name, value, hasValue := strings.Cut(strings.TrimLeft(f, "-"), "=")
		switch {
		case name == "":
			t.Fatalf("browsertest: empty Chromium switch %q", f)
		case name == "enable-features" || name == "disable-features":
			if _, ok := features[name]; !ok {
				order = append(order, name)
			}
			features[name] = append(features[name], value)
		case hasValue:
			opts = append(opts, chromedp.Flag(name, value))
		default:
			opts = append(opts, chromedp.Flag(name, true))
		}
	}
	if len(order) > 0 {
		// The allocator keeps one value per switch, so merge the feature
		// lists into the command line it has built.
		opts = append(opts, chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			for _, name := range order {
				cmd.Args = mergeFeatures(cmd.Args, name, features[name])
			}
		}))
	}
	return newBrowser(t, timeout, opts)
}

// mergeFeatures adds the comma-separated features in add to the switch
// --name=... in args, or appends the switch before the trailing URL when
// args has none.
func mergeFeatures(args []string, name string, add []string) []string {
	prefix := "--" + name + "="
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, prefix); ok {
			list := append(splitFeatures(v), splitFeatures(strings.Join(add, ","))...)
			args[i] = prefix + strings.Join(list, ",")
			return args
		}
	}
	sw := prefix + strings.Join(splitFeatures(strings.Join(add, ",")), ",")
	if n := len(args); n > 1 && !strings.HasPrefix(args[n-1], "-") {
		// Keep the URL (about:blank) last.
		return append(args[:n-1:n-1], sw, args[n-1])
	}
	return append(args, sw)
}

func splitFeatures(v string) []string {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// newBrowser starts the browser for New and NewWithFlags, with extra
// allocator options applied after the standard ones.
func newBrowser(t testing.TB, timeout time.Duration, extra []chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	exe, err := Find()
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("browsertest: %v (and %s=1)", err, EnvRequire)
		}
		t.Skipf("chromium not installed: apt-get install -y chromium (%v)", err)
	}
	profile := t.TempDir()

	if d, ok := deadline(t); ok {
		if left := time.Until(d) - 5*time.Second; left < timeout {
			timeout = max(left, time.Second)
		}
	}
	base, cancelBase := context.WithTimeout(context.Background(), timeout)

	// logf writes to the test log until the test is over: chromedp may still
	// report something while it shuts down, and t.Logf after the test has
	// finished panics.
	var (
		logMu   sync.Mutex
		logDone bool
	)
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if !logDone {
			t.Logf("browser: "+format, args...)
		}
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox, // containers and root often have no usable sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 800),
	)
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(base, opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(logf))

	// Start the browser now, so that a broken installation fails here with
	// a clear message and the console is watched from the first page on.
	if err := chromedp.Do(ctx); err != nil {
		cancelCtx()
		cancelAlloc()
		cancelBase()
		t.Fatalf("browsertest: start %s: %v", exe, err)
	}

	consoleDone := make(chan struct{})
	messages := chromedp.Console(ctx)
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			logf("console %s", m)
		}
	}()

	t.Cleanup(func() {
		// Close the browser gracefully first; the cancels below then stop
		// whatever is left and wait for the process to exit, before
		// t.TempDir removes the profile.
		closeCtx, cancelClose := context.WithTimeout(ctx, 5*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil && !errors.Is(err, context.Canceled) {
			logf("close: %v", err)
		}
		cancelClose()
		cancelCtx()
		cancelAlloc()
		cancelBase()
		<-consoleDone
		logMu.Lock()
		logDone = true
		logMu.Unlock()
	})
	return ctx
}
