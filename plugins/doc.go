// Package plugins is catnest's plugin market: single-file JavaScript
// plugins that nodes publish, that others find in the market, install and
// run in the web UI's sandbox (DESIGN §9).
//
// # Basics
//
// A plugin is one JavaScript module, at most MaxFile bytes, that starts
// with a metadata header (see ParseHeader and plugins/README.md) and
// default-exports a class. A node publishes a plugin by signing (name,
// version, MD5) with its node key (Sign) and sharing the file through
// shards; its published list is a resource list (internal/reslist) named
// "plugins" that others fetch on demand from it alone and cache by
// version. The market is the union of the lists of the online nodes, and
// of the entries seen before whose publisher is now offline.
//
// Installing fetches the file over shards (from any node that holds it),
// and refuses it unless its bytes hash to the id the market named and the
// signature matches its publisher's key, whose hash is the publisher's
// node ID. The user grants some or all of the permissions the header asks
// for. A plugin's identity is its publisher and name: a newer version
// from the same publisher updates it, keeping its data and, where they
// did not grow, its grants.
//
// The service keeps what it needs in the node's database, in the buckets
// whose names start with "plugins/": published and installed plugins,
// their files, per-plugin data (at most MaxData bytes each) and the
// market entries seen.
//
// # Caveats
//
// The sandbox itself is the web UI's: this package checks what comes
// from peers (headers, signatures, sizes) and keeps grants; webui checks
// every call a plugin makes against them. Methods are safe for
// concurrent use. Byte slices returned are the caller's.
package plugins
