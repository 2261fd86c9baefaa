// Package subsonic answers the Subsonic API (1.16.1, with the OpenSubsonic
// extensions) under /rest/, so that the music apps people already use
// (DSub, Symfonium, Ultrasonic, Feishin, Submariner…) browse, search and
// play the mesh-wide library of a node: every online node's tracks, remote
// ones streamed through the shards reader exactly as the web player does.
//
// # Basics
//
// A Service is an http.Handler for "/rest/{method}" and
// "/rest/{method}.view", GET or POST (form parameters), answering XML or
// JSON (f=json). Requests authenticate with u and a salted token (t, s)
// or a password (p, plain or "enc:" and hex). The single user and password
// live in the subsonic bucket of the node's database (they are set from
// the serve flags or the web UI); the password is kept as it was given,
// because token authentication needs it (the database file is mode 0600).
//
// The library comes from the music service (through the Music interface
// declared here): banned tracks are never listed, streamed, or shown.
// Ids are derived from content and names, so they stay valid across
// restarts and apps' caches with them: a song's id is its MD5 (hex), an
// album's "al-" and the MD5 of its artist and name (normalised), an
// artist's "ar-" and the MD5 of the normalised name. There are no genres
// (the music service reads none), so genre lists are empty.
//
// Playlists, stars, ratings, play counts and what is playing now are the
// node's, kept in the bucket "subsonic" and its children.
//
// # Caveats
//
// The index of artists and albums is rebuilt from the music service's
// track list after the music service says the library changed (its
// events are read at request time, so a ban in force is in force for the
// next request). Streams are the tracks' own bytes: maxBitRate and format
// are accepted and ignored (no transcoding). Failed logins are limited per
// client address (per /64 for IPv6), so a password cannot be guessed
// quickly off loopback; a page in the user's browser guesses from the
// loopback address, as slowly, and while it does, apps on the same
// machine are held back too.
package subsonic
