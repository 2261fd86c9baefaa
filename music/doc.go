// Package music turns the audio files of the folders a node shares into a
// library, and the libraries of every online node into one: each track once
// per MD5 with all the nodes that hold it, searchable, with covers, synced
// lyrics and a ban list, played from the local file or through a shards
// reader that fetches the pieces around the playhead.
//
// # Basics
//
// The music folders are shared by shards (they must be among its
// Config.Folders): shards walks, watches and hashes every file once; music
// takes path -> MD5 from its shares and reads the tags of each MD5 once,
// caching them in bbolt, so a renamed or moved file keeps its identity,
// attachments and cache state, and a rescan of unchanged files parses none.
// Covers and lyrics (embedded, sidecar or attached by the user) are shared
// resources whose MD5s a track's list entry carries, so they travel with it.
// A node's track list is the resource list "music" (internal/reslist),
// fetched by others from the node alone and cached by version.
//
// Subpackages meta (tags and audio headers of MP3, FLAC and WAV) and lrc
// (lyrics) parse files; they bound what they read and are fuzzed.
//
// # Caveats
//
// RemoveCache deletes the finished download of a track this node fetched
// to play (shards keeps finished downloads' files otherwise); past
// Config.CacheLimit, the tracks this node fetched to play go by
// themselves, least recently played first (cache.go). Those downloads
// are music's (shards Link.For) until the user fetches the track in the
// Files view: then they are the user's, and neither removes them. A node's tracks
// leave the library when the directory says it is no longer linked to
// this one (mesh.Reachable), not only when its record expires. A track's tags come
// from this node's entry, else from the first holder's by node id: a node
// may lie about the tags of what it holds; it cannot about the bytes.
package music
