package music

import (
	"encoding/json"
	"net/http"
)

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }

// coverExt is the file extension for a cover of the given MIME type (or,
// without one, of what its bytes say).
func coverExt(mime string, data []byte) string {
	if mime == "" {
		mime = http.DetectContentType(data)
	}
	if mime == "image/png" {
		return ".png"
	}
	return ".jpg"
}
