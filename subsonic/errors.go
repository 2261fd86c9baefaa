package subsonic

import (
	"errors"
	"fmt"
)

// Subsonic error codes, as the API documents them.
const (
	codeGeneric      = 0
	codeMissingParam = 10
	codeWrongCreds   = 40
	codeAuthMethod   = 42
	codeNotFound     = 70
)

// apiError is an error answered to a client as a Subsonic error.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("subsonic: error %d: %s", e.code, e.msg) }

func errorf(code int, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

func missing(name string) *apiError {
	return errorf(codeMissingParam, "required parameter is missing: %s", name)
}

func notFound(what, id string) *apiError {
	return errorf(codeNotFound, "%s not found: %.80q", what, id)
}

// ErrBadCredentials is returned by SetCredentials for a user name or
// password that cannot be used (empty, too long, or with control
// characters).
var ErrBadCredentials = errors.New("subsonic: bad user name or password")
