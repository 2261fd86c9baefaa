package subsonic

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits of a request's parameters.
const (
	// maxBody bounds a POST body of form parameters (a playlist of
	// thousands of songIds fits).
	maxBody = 1 << 20
	// maxValues bounds the values of one repeated parameter (id,
	// songId…), maxParamLen one value.
	maxValues   = maxPlaylistSongs
	maxParamLen = 4096
)

// params are a request's parameters: the query's and, for a POST, the
// form body's.
type params struct {
	v url.Values
}

// readParams parses a request's parameters, bounding the body.
func readParams(w http.ResponseWriter, r *http.Request) (params, *apiError) {
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	}
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return params{}, errorf(codeGeneric, "request body too large: at most %d bytes", maxBody)
		}
		return params{}, errorf(codeGeneric, "malformed parameters: %v", err)
	}
	return params{r.Form}, nil
}

// str returns a parameter's first value ("" if absent).
func (p params) str(name string) string {
	v := p.v.Get(name)
	if len(v) > maxParamLen {
		v = v[:maxParamLen]
	}
	return v
}

func (p params) has(name string) bool { return p.v.Has(name) }

// required returns a parameter that must be there and not empty.
func (p params) required(name string) (string, *apiError) {
	v := p.str(name)
	if v == "" {
		return "", missing(name)
	}
	return v, nil
}

// all returns the values of a repeated parameter, at most maxValues.
func (p params) all(name string) ([]string, *apiError) {
	vs := p.v[name]
	if len(vs) > maxValues {
		return nil, errorf(codeGeneric, "too many values of %s: %d, at most %d", name, len(vs), maxValues)
	}
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		if len(v) > maxParamLen {
			return nil, errorf(codeGeneric, "a value of %s is too long", name)
		}
		out = append(out, v)
	}
	return out, nil
}

// integer reads an integer parameter, def when absent, clamped to
// [lo, hi]: a huge count or offset is the largest allowed, not an error.
// A value that is no integer is an error.
func (p params) integer(name string, def, lo, hi int64) (int64, *apiError) {
	s := strings.TrimSpace(p.str(name))
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if !errors.As(err, &ne) || ne.Err != strconv.ErrRange {
			return 0, errorf(codeGeneric, "parameter %s: %.40q is not an integer", name, s)
		}
		n = math.MaxInt64
		if strings.HasPrefix(s, "-") {
			n = math.MinInt64
		}
	}
	return min(max(n, lo), hi), nil
}

// count reads a list size and offset pair: size defaults to def and is
// clamped to [0, hi]; the offset to [0, maxOffset].
func (p params) page(sizeName, offsetName string, def, hi int64) (size, offset int, e *apiError) {
	n, e := p.integer(sizeName, def, 0, hi)
	if e != nil {
		return 0, 0, e
	}
	o, e := p.integer(offsetName, 0, 0, maxOffset)
	if e != nil {
		return 0, 0, e
	}
	return int(n), int(o), nil
}

// maxOffset bounds offsets: a library is smaller.
const maxOffset = 1 << 30

// boolean reads "true" or "false" (def when absent).
func (p params) boolean(name string, def bool) (bool, *apiError) {
	switch s := strings.ToLower(strings.TrimSpace(p.str(name))); s {
	case "":
		return def, nil
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	default:
		return false, errorf(codeGeneric, "parameter %s: %.40q is not true or false", name, s)
	}
}

// millis reads a time in milliseconds since the epoch (def when absent).
func (p params) millis(v string, def time.Time) (time.Time, *apiError) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<50 {
		return time.Time{}, errorf(codeGeneric, "time %.40q is not milliseconds since 1970", v)
	}
	return time.UnixMilli(n).UTC(), nil
}

// format is the answer's format the request asks for (f): JSON or XML.
func (p params) format() format {
	if strings.EqualFold(p.v.Get("f"), "json") {
		return "json"
	}
	return "xml"
}

// maxSalt bounds the salt of token authentication.
const maxSalt = 256

// authenticate checks a request's credentials against the user and
// password kept: u with t (the MD5 of the password and the salt s, in
// hex) or with p (the password, plain or "enc:" and its hex). It compares
// in constant time.
func authenticate(p params, user, password string) *apiError {
	if p.has("apiKey") {
		return errorf(codeAuthMethod, "API key authentication is not supported: use u with t and s, or u with p")
	}
	u := p.v.Get("u")
	if u == "" {
		return missing("u")
	}
	if user == "" || password == "" {
		return errorf(codeWrongCreds, "no Subsonic user is set on this node: set one with catnest serve --subsonic-user and --subsonic-password, or in the web UI's Settings")
	}
	var ok bool
	switch {
	case p.has("t") || p.has("s"):
		t, salt := p.v.Get("t"), p.v.Get("s")
		if t == "" || salt == "" {
			if t == "" {
				return missing("t")
			}
			return missing("s")
		}
		if len(salt) > maxSalt {
			return errorf(codeWrongCreds, "wrong username or password")
		}
		sum := md5.Sum([]byte(password + salt))
		want := hex.EncodeToString(sum[:])
		ok = subtle.ConstantTimeCompare([]byte(strings.ToLower(t)), []byte(want)) == 1
	case p.has("p"):
		given, e := decodePassword(p.v.Get("p"))
		if e != nil {
			return e
		}
		ok = subtle.ConstantTimeCompare([]byte(given), []byte(password)) == 1
	default:
		return missing("t and s, or p")
	}
	sameUser := subtle.ConstantTimeCompare([]byte(u), []byte(user)) == 1
	if !ok || !sameUser {
		return errorf(codeWrongCreds, "wrong username or password")
	}
	return nil
}

// decodePassword reads the p parameter: the password, or "enc:" and the
// hex of its bytes.
func decodePassword(p string) (string, *apiError) {
	if len(p) > 2*maxPasswordLen+4 {
		return "", errorf(codeWrongCreds, "wrong username or password")
	}
	h, ok := strings.CutPrefix(p, "enc:")
	if !ok {
		return p, nil
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return "", errorf(codeWrongCreds, "p=enc:… is not hex: %v", err)
	}
	return string(b), nil
}
