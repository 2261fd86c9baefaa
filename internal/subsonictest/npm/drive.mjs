// drive.mjs walks a catnest node's Subsonic API with the subsonic-api
// client library, as a music app would, and prints what it saw as JSON on
// stdout. The Go test (subsonic.TestInteropSubsonicAPI) decides whether
// that is right; this script only reports.
//
// Environment: SUBSONIC_URL (the node, without /rest), SUBSONIC_USER,
// SUBSONIC_PASS, SUBSONIC_PLAN (JSON: {remote, rangeFrom, rangeTo,
// search, lyricsArtist, lyricsTitle}).
import { createHash } from "node:crypto";
import { SubsonicAPI } from "subsonic-api";

const url = process.env.SUBSONIC_URL;
const username = process.env.SUBSONIC_USER;
const password = process.env.SUBSONIC_PASS;
const plan = JSON.parse(process.env.SUBSONIC_PLAN);

// A fetch that adds a Range header while one is set, for the seek.
let range = null;
const fetchWithRange = (input, init = {}) => {
  if (range) {
    init = { ...init, headers: { ...(init.headers || {}), Range: range } };
  }
  return fetch(input, init);
};

const api = new SubsonicAPI({ url, auth: { username, password }, fetch: fetchWithRange });
const post = new SubsonicAPI({ url, auth: { username, password }, post: true });
const wrong = new SubsonicAPI({ url, auth: { username, password: password + "x" } });

const md5 = (buf) => createHash("md5").update(buf).digest("hex");
const err = (r) => (r.status === "ok" ? null : r.error);
const out = {};

out.ping = (await api.ping()).status;
out.pingPost = (await post.ping()).status;
out.wrongPassword = err(await wrong.ping());
out.license = (await api.getLicense()).license;
out.extensions = (await api.getOpenSubsonicExtensions()).openSubsonicExtensions.map((e) => e.name);
out.folders = (await api.getMusicFolders()).musicFolders.musicFolder.length;

// Browse: every artist, album and song.
const artists = (await api.getArtists()).artists.index.flatMap((i) => i.artist);
out.artists = artists.map((a) => a.name);
out.songs = [];
for (const a of artists) {
  const artist = (await api.getArtist({ id: a.id })).artist;
  for (const al of artist.album) {
    const album = (await api.getAlbum({ id: al.id })).album;
    for (const s of album.song) {
      out.songs.push({ id: s.id, title: s.title, artist: s.artist, album: s.album, albumId: s.albumId,
        coverArt: s.coverArt || "", duration: s.duration, suffix: s.suffix, size: s.size });
    }
  }
}
out.indexes = (await api.getIndexes()).indexes.index.flatMap((i) => i.artist).length;
out.newest = (await api.getAlbumList2({ type: "newest", size: 500 })).albumList2.album.length;
out.random = (await api.getRandomSongs({ size: 3 })).randomSongs.song.length;
out.search = ((await api.search3({ query: plan.search })).searchResult3.song || []).map((s) => s.title);
out.searchPost = ((await post.search3({ query: plan.search })).searchResult3.song || []).map((s) => s.title);
out.song = (await api.getSong({ id: plan.remote })).song.title;

// Stream the remote track: a seek (Range), then whole; download too.
range = `bytes=${plan.rangeFrom}-${plan.rangeTo}`;
let res = await api.stream({ id: plan.remote, maxBitRate: 128 });
let body = Buffer.from(await res.arrayBuffer());
out.range = { status: res.status, contentRange: res.headers.get("content-range"), length: body.length, md5: md5(body) };
range = null;
res = await api.stream({ id: plan.remote });
body = Buffer.from(await res.arrayBuffer());
out.stream = { status: res.status, type: res.headers.get("content-type"), length: body.length, md5: md5(body) };
res = await api.download({ id: plan.remote });
body = Buffer.from(await res.arrayBuffer());
out.download = { status: res.status, length: body.length, md5: md5(body) };

// A cover, scaled.
const withCover = out.songs.find((s) => s.coverArt);
res = await api.getCoverArt({ id: withCover.coverArt, size: 64 });
out.cover = { status: res.status, type: res.headers.get("content-type"), base64: Buffer.from(await res.arrayBuffer()).toString("base64") };

// Lyrics, structured and by artist and title.
const lyricsSong = out.songs.find((s) => s.title === plan.lyricsTitle);
out.lyricsBySongId = (await api.getLyricsBySongId({ id: lyricsSong.id })).lyricsList.structuredLyrics;
out.lyrics = (await api.getLyrics({ artist: plan.lyricsArtist, title: plan.lyricsTitle })).lyrics;

// Playlists: create, add, remove, read, list, delete.
const ids = out.songs.map((s) => s.id);
let pl = (await api.createPlaylist({ name: "Interop", songId: ids.slice(0, 3) })).playlist;
out.playlistCreated = { id: pl.id, songCount: pl.songCount };
err(await api.updatePlaylist({ playlistId: pl.id, songIdToAdd: [ids[3]], songIndexToRemove: [0], comment: "by npm" }));
pl = (await api.getPlaylist({ id: pl.id })).playlist;
out.playlist = { name: pl.name, comment: pl.comment, entries: pl.entry.map((e) => e.id) };
out.playlists = (await api.getPlaylists()).playlists.playlist.map((p) => p.name);
out.deleted = (await api.deletePlaylist({ id: pl.id })).status;
out.playlistsAfter = ((await api.getPlaylists()).playlists.playlist || []).length;

// Stars.
out.star = (await api.star({ id: plan.remote })).status;
out.starred = ((await api.getStarred2()).starred2.song || []).map((s) => s.id);
out.unstar = (await api.unstar({ id: plan.remote })).status;
out.starredAfter = ((await api.getStarred2()).starred2.song || []).length;

// Now playing.
out.scrobble = (await api.scrobble({ id: plan.remote, submission: false })).status;
out.nowPlaying = ((await api.getNowPlaying()).nowPlaying.entry || []).map((e) => ({ id: e.id, user: e.username, player: e.playerName }));

// Errors.
out.unknownMethod = err(await api.customJSON("noSuchMethod.view", {}));
out.notFound = err(await api.getSong({ id: "00000000000000000000000000000000" }));
out.missing = err(await api.getSong({}));
out.huge = ((await api.search3({ query: "", songCount: "99999999999999999999", songOffset: 0 })).searchResult3.song || []).length;

process.stdout.write(JSON.stringify(out));
