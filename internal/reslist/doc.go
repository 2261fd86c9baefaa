// Package reslist is a node's resource list, as the mesh shares it: the
// node keeps its own list (Local), advertises a summary {count, version} in
// its directory record, and serves it in pages in key order; other nodes
// fetch it on demand from its owner alone and cache it by (node, version)
// (Remote), within bounds on entries, bytes and time, since the owner may be
// hostile. shards' file catalog ("files") and music's track list ("music")
// are both one; each brings its own entry type and wire encoding.
//
// # Caveats
//
// Slices returned by Local.Entries, Remote.Get and Remote.Lists are shared
// with the cache: callers must not change them.
package reslist
