// ==CatnestPlugin==
// @name        Now playing
// @description Posts the track you start playing to the chat channel you last opened.
// @version     1.0.0
// @author      catnest
// @permissions player-read chat-read chat-write
// ==/CatnestPlugin==

// At most one announcement every MIN_GAP ms, and never the same track
// twice in a row: skipping through a playlist does not flood the channel.
const MIN_GAP = 15000;

export default class NowPlaying {
  constructor(api) {
    this.api = api;
    this.last = null;
    this.at = 0;
  }

  async onTrackChange(track) {
    if (!track || track.id === this.last || Date.now() - this.at < MIN_GAP) return;
    const channels = await this.api.chat.channels();
    const ch = channels.find((c) => c.current) || channels[0];
    if (!ch) return;
    this.last = track.id;
    this.at = Date.now();
    const what = [track.title, track.artist].filter(Boolean).join(' — ');
    await this.api.chat.post(ch.id, `🎵 Now playing: ${what}`);
  }
}
