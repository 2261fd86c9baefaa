package browsertest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestFind(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "chromium")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, env string
		wantErr   bool
	}{
		{"executable", exe, false},
		{"missing", filepath.Join(dir, "nope"), true},
		{"not executable", plain, true},
		{"directory", dir, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvChromium, tt.env)
			got, err := Find()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Find() = %q, %v; want error %v", got, err, tt.wantErr)
			}
			if err == nil && got != tt.env {
				t.Fatalf("Find() = %q, want %q", got, tt.env)
			}
		})
	}
}

func TestLanguageAndWait(t *testing.T) {
	var (
		mu             sync.Mutex
		acceptLanguage string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		acceptLanguage = r.Header.Get("Accept-Language")
		mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><title>t</title><p id=p>wait</p>
<script>setTimeout(() => {
  document.getElementById("p").textContent = "done " + navigator.language;
  document.body.append(Object.assign(document.createElement("b"), {id: "late", textContent: "here"}));
}, 300)</script>`)
	}))
	defer srv.Close()

	ctx := New(t)
	if err := SetLanguage(ctx, "zh-CN"); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	// Until the element exists, reading it throws; that must count as false.
	Until(t, ctx, 5*time.Second, `document.getElementById("late").textContent === "here"`)

	got, err := chromedp.Run(ctx, chromedp.Text(`#p`, chromedp.NodeVisible))
	if err != nil {
		t.Fatal(err)
	}
	if got != "done zh-CN" {
		t.Errorf("page says %q, want %q", got, "done zh-CN")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acceptLanguage) < 5 || acceptLanguage[:5] != "zh-CN" {
		t.Errorf("Accept-Language = %q, want zh-CN first", acceptLanguage)
	}

	// A condition that never holds must time out with an error.
	if err := Wait(ctx, 200*time.Millisecond, `false`); err == nil {
		t.Error("Wait(false) returned nil")
	}
}
