// ==CatnestPlugin==
// @name        Karaoke
// @description Shows the line of the lyrics being sung, large, under the track's title.
// @version     1.0.0
// @author      catnest
// @permissions player-read ui-panel
// ==/CatnestPlugin==

// Karaoke follows the player: the lyrics lines of the track playing come
// as onLyricsLine events, and it shows them in its panel.
export default class Karaoke {
  constructor(api) {
    this.api = api;
  }

  async start() {
    document.body.innerHTML = '';
    const style = document.createElement('style');
    style.textContent = `
      body { text-align: center; font: 600 26px/1.3 system-ui, sans-serif; }
      #title { font: 13px system-ui, sans-serif; opacity: .6; }
      #line { transition: opacity .2s; min-height: 1.3em; }
      #line.idle { opacity: .35; }`;
    this.title = document.createElement('div');
    this.title.id = 'title';
    this.line = document.createElement('div');
    this.line.id = 'line';
    this.line.className = 'idle';
    this.line.textContent = '♪';
    document.head.append(style);
    document.body.append(this.title, this.line);
    const tr = await this.api.player.current();
    this.onTrackChange(tr);
    await this.api.ui.showPanel({ height: 90, title: 'Karaoke' });
  }

  onTrackChange(track) {
    this.title.textContent = track ? [track.title, track.artist].filter(Boolean).join(' — ') : 'Nothing playing';
    this.line.textContent = '♪';
    this.line.className = 'idle';
  }

  onLyricsLine(line) {
    this.line.textContent = line && line.text ? line.text : '♪';
    this.line.className = line && line.text ? '' : 'idle';
  }
}
