// Package music turns the audio files of the folders a node shares into a
// library, and the libraries of every online node into one: each track once
// per MD5 with all the nodes that hold it, searchable, with covers, synced
// lyrics and a ban list, played from the local file or through a shards
// reader that fetches the pieces around the playhead.
//
// Subpackages meta (tags and audio headers of MP3, FLAC and WAV) and lrc
// (lyrics) parse files; they bound what they read and are fuzzed.
package music
