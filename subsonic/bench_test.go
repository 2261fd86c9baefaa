package subsonic

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/catnest/catnest/music"
)

// benchRequest answers one request in process (no sockets), in JSON.
func benchRequest(b *testing.B, s *Service, method string, q url.Values) {
	v := auth("abcdef")
	v.Set("f", "json")
	for k, vs := range q {
		v[k] = vs
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/rest/"+method+"?"+v.Encode(), nil))
	if rec.Code != http.StatusOK || rec.Body.Len() < 100 {
		b.Fatalf("%s: %d %s", method, rec.Code, rec.Body.String())
	}
}

// benchLibrary is 20,000 tracks by 400 artists on 2,000 albums.
func benchLibrary(b *testing.B) (*testService, *fakeMusic) {
	m := newFakeMusic()
	genLibrary(m, 20_000, 400)
	ts := newTestService(b, m, func(c *Config) { c.LoginBurst = 1 << 30 })
	return ts, m
}

// BenchmarkGetArtists20k: getArtists over a 20,000-track library while
// nothing changes (the index is kept). Reported: ms per request, and ms
// to rebuild the index after a library change (the first request after
// one pays it).
func BenchmarkGetArtists20k(b *testing.B) {
	ts, m := benchLibrary(b)
	benchRequest(b, ts.Service, "getArtists", nil)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		benchRequest(b, ts.Service, "getArtists", nil)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/request")
	b.StopTimer()
	const rebuilds = 5
	start = time.Now()
	for range rebuilds {
		m.events.Publish(music.Event{Library: true})
		benchRequest(b, ts.Service, "getArtists", nil)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/rebuilds, "ms/rebuild+request")
}

// BenchmarkSearch3_20k: search3 over a 20,000-track library, a word
// that matches a few songs, and a page of 500 songs of an empty query
// (how apps copy the library).
func BenchmarkSearch3_20k(b *testing.B) {
	for _, bc := range []struct {
		name string
		q    url.Values
	}{
		{"word", url.Values{"query": {"song 1234"}}},
		{"page500", url.Values{"query": {""}, "songCount": {"500"}, "songOffset": {"10000"}, "artistCount": {"0"}, "albumCount": {"0"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ts, _ := benchLibrary(b)
			benchRequest(b, ts.Service, "search3", bc.q)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				benchRequest(b, ts.Service, "search3", bc.q)
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/request")
		})
	}
}
