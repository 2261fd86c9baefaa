// Package webui serves a node's local web interface: a small JSON API under
// /api/, a stream of live updates as server-sent events at /api/events, and
// a single-page UI (plain ES modules, embedded in the binary, no build step)
// at /.
//
// # Basics
//
// cmd/catnest builds a Server with New from a Config and the node (anything
// that has the methods of Node; the concrete *mesh.Node does), then runs
// Serve with a listener until its context ends:
//
//	srv, err := webui.New(webui.Config{Addr: "127.0.0.1:7070", Logger: log}, node)
//	ln, err := net.Listen("tcp", cfg.Addr)
//	err = srv.Serve(ctx, ln)
//
// Handler returns the same routes as an http.Handler, for tests or for
// mounting in another server.
//
// # API
//
//	GET /api/node       {"id", "name", "version"}
//	GET /api/apikey     {"key", "header"}: the API key, for the UI's settings; only to
//	                    the node's own page (or a script that has the key); 404 without a key
//	GET /api/peers      [{"id", "name", "rtt_ms", "outbound", "since", "route", "relayed", "bytes_in", "bytes_out"}, ...]
//	                    sorted by name, then id; route is "direct", "turn" or "bridge"
//	GET /api/directory  [{"id", "name", "seq", "neighbors", "resources", "heard", "self"}, ...]
//	                    the online nodes, this one included (self: true), sorted by name, then id;
//	                    neighbors and resources are never null
//	GET /api/events     text/event-stream; "peers" events carry the /api/peers array,
//	                    "directory" events the /api/directory array, "chat" events
//	                    each ChatEvent as it happens ({"type": "resync"} stands for
//	                    events dropped because the client was slow: fetch again)
//
// With Config.Chat set, the chat API (Channel and Message are the
// shapes; arrays are never null):
//
//	GET    /api/channels                              joined channels first, then by name
//	POST   /api/channels                              {"name", "burn"} → 201 and the channel
//	POST   /api/channels/{id}/join                    204
//	POST   /api/channels/{id}/leave                   204
//	PUT    /api/channels/{id}/settings                {"range": {"days", "count"}, "burn"}, each optional → 204
//	GET    /api/channels/{id}/messages                ?before=RFC3339|unix-ms&limit=N (default 100, at most 500); newest last
//	POST   /api/channels/{id}/messages                {"text"} (at most 16 KiB) → 201 and the message
//	POST   /api/channels/{id}/messages/{mid}/retract  204
//	POST   /api/channels/{id}/messages/{mid}/mark     204; DELETE unmarks
//	POST   /api/channels/{id}/messages/{mid}/read     204: a burn message was shown, forget it
//
// Request bodies are at most 64 KiB (else 413) and hold one JSON object
// without unknown fields. The chatlog errors map to 404 (unknown channel or
// message), 403 (not owner or author), 400 (invalid input) and 409 (not
// joined). Without Config.Chat every chat endpoint answers 404 and the UI
// leaves out its Chat view.
//
// With Config.Files set, the files API (shards.Transfer, shards.File and
// shards.PushStatus are the shapes; arrays are never null, "sources" never
// null):
//
//	GET    /api/shards                  this node's shares and transfers, newest first; ?offset=N&limit=M
//	                                    (at most 1000) a page of them, X-Total-Count how many in all
//	POST   /api/shards                  {"path"} (absolute, a readable regular file) → 201 and the share
//	POST   /api/shards/fetch            {"link"} or {"id"}, optional {"dir"} → 201 and the transfer; "dir"
//	                                    (absolute, a folder the node can write to, else 400) is where a new
//	                                    download is saved and seeded from, instead of the downloads folder
//	POST   /api/shards/{id}/pause       204; …/resume likewise
//	DELETE /api/shards/{id}             204: cancel a download and delete its partial data, or stop sharing
//	                                    (a finished download's file is the user's: kept, no longer shared;
//	                                    fetching the id again takes it back once it checks out, not a second copy)
//	POST   /api/shards/push             {"id", "to": [node ids], "plan": "matrix" | "chain"} → 201 {"id"}
//	                                    or {"id", "channel": id or name, "plan"}: the channel's online members
//	GET    /api/shards/push/{pid}       the push's progress
//	GET    /api/shards/{id}/content     the bytes, with Range (206), a Content-Type from the name and
//	                                    a sandbox Content-Security-Policy; ?download asks to save it
//	GET    /api/files                   every online node's files with their holders, by name;
//	                                    paged like GET /api/shards
//
// and "shards" events: each shards.Event ({"resync": true} stands for
// events dropped because the client was slow). The shards errors map to
// 400 (bad id, link or path, too large) and 404 (unknown resource, no
// holders). A request for content that a browser says comes from another
// site is refused (403): opening a remote resource starts fetching it.
//
// With Config.Music set, the music API (music.Track, music.Lyrics and
// music.ScanStatus are the shapes; arrays are never null):
//
//	GET    /api/music/tracks                  the mesh-wide library, each MD5 once; ?banned=1 adds the
//	                                          banned tracks, marked "banned": true
//	GET    /api/music/tracks/{md5}/stream     the bytes, with Range (206) and the format's Content-Type;
//	                                          403 banned, 404 unknown; revalidated on every use (no-cache)
//	GET    /api/music/tracks/{md5}/cover      the cover (JPEG, PNG, GIF or WebP; anything else as
//	                                          application/octet-stream); ?thumb=1 for the list's thumbnail
//	PUT    /api/music/tracks/{md5}/cover      body: the image, at most 8 MiB, its type read from its bytes → 204
//	GET    /api/music/tracks/{md5}/lyrics     {"synced", "lines": [{"t", "text"}], "raw"}
//	PUT    /api/music/tracks/{md5}/lyrics     {"raw"}, or the LRC or text file itself (UTF-8, at most 256 KiB) → 204
//	DELETE /api/music/tracks/{md5}/cache      204: the cached copy of a fetched track goes
//	GET    /api/music/bans                    {"patterns": [...]}
//	PUT    /api/music/bans                    {"patterns": [...]} (at most 1000, each at most 1 KiB, not
//	                                          empty) → 200 and the list; an invalid one → 400 with the
//	                                          reason, and nothing changes
//	GET    /api/music/scan                    {"state", "files", "done", "bytes", "errors": [{"path", "reason"}]}
//
// and "music" events: each music.Event ({"library": true}: read the
// library again; {"scan": {...}}: progress). Events dropped for a slow
// client are replaced by one {"library": true}. The music errors map to
// 400 (bad id, input or pattern), 403 (banned) and 404 (unknown track, no
// cover, no lyrics). Like a file's content, a track's stream and cover
// are refused (403) to a request a browser says comes from another site:
// opening a remote track fetches it.
//
// Errors are JSON objects {"error": "message"} with a matching status code.
// Each service adds its routes to the route table (see apiRoutes) and its
// live feeds to the event stream (see feeds for states, relays for
// discrete events); the UI adds a view module to the view registry in
// static/app.js.
//
// # Security
//
// A web server on localhost can be reached by any web page the user opens,
// so every request passes these checks, in this order:
//
//   - On a loopback address, the Host header must name a loopback host
//     (127.0.0.1, ::1, localhost) and the port the request came in on, else
//     403. This defeats DNS rebinding, where a hostile name is made to
//     resolve to 127.0.0.1.
//   - A request that carries Config.APIKey, as "X-API-Key: KEY" or
//     "Authorization: Bearer KEY", is a script's: it needs no token and no
//     Origin. A wrong key in X-API-Key, or a Bearer value that is neither
//     the key nor the token, gets 401. Keys are compared in constant time.
//   - When Config.Token is set (it must be for a non-loopback address), the
//     request must carry the API key, "Authorization: Bearer TOKEN", the
//     query parameter token=TOKEN, or the cookie that such a query sets,
//     else 401. The query form sets an HttpOnly, SameSite=Strict cookie so
//     that the page's own fetches and EventSource work; a page load with
//     ?token is redirected to the same URL without it, to keep the token
//     out of history. The token is the browser's credential; the API key
//     is accepted wherever the token is, so scripts need only the key.
//   - A request with a method other than GET, HEAD or OPTIONS must carry an
//     Origin header equal to its own origin, or no Origin and
//     "Sec-Fetch-Site: same-origin", else 403. This stops cross-site form
//     posts, which ride on the user's cookies. A script with the API key
//     may send no Origin; a foreign Origin is refused even with the key.
//     A browser never adds the key by itself, and a page elsewhere cannot
//     read it: GET /api/apikey answers only same-origin requests, and
//     carries no CORS headers.
//
// The Subsonic API (Config.Subsonic, /rest/) passes the Host check only:
// music apps log in with the Subsonic user and password on every request
// (no cookie a page elsewhere could ride on), off loopback too, and the
// service limits failed logins. The rest of the API keeps the rules above.
//
// Responses carry a strict Content-Security-Policy: the page loads scripts,
// styles and connections from its own origin only.
//
// # Caveats
//
// The Host check also wants the port: to reach a loopback UI through a
// tunnel, keep the port number (ssh -L 7070:127.0.0.1:7070).
// Serve may be called on several listeners at once (for example IPv4 and
// IPv6); each stops when its context ends. Event streams end when the
// client goes away or Serve's context ends; Handler used on its own ends a
// stream only when its client goes away. The token and the API key are
// sent in clear text: use a non-loopback address only on a network you
// trust, or behind TLS. On loopback, other users of the machine can reach
// the port too; without the key they can still read, and a program (unlike
// a browser) can forge an Origin header, so share the machine only with
// people you trust.
package webui
