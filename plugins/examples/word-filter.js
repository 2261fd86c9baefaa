// ==CatnestPlugin==
// @name        Word filter
// @description Hides chat messages that contain words on your list. Edit the list from the toolbar button.
// @version     1.0.0
// @author      catnest
// @permissions chat-filter storage ui-panel
// ==/CatnestPlugin==

const DEFAULT = ['spoiler'];

export default class WordFilter {
  constructor(api) {
    this.api = api;
    this.open = false;
  }

  async start() {
    const saved = await this.api.storage.get('words');
    this.words = saved ? JSON.parse(saved) : DEFAULT;
    await this.api.chat.setFilter(this.words);
    document.body.innerHTML = '';
    const label = document.createElement('label');
    label.textContent = 'Hide messages containing (comma separated): ';
    this.input = document.createElement('input');
    this.input.style.width = '60%';
    this.input.value = this.words.join(', ');
    const save = document.createElement('button');
    save.textContent = 'Save';
    save.onclick = () => this.save();
    this.status = document.createElement('span');
    label.append(this.input);
    document.body.append(label, ' ', save, ' ', this.status);
    await this.api.ui.setButton({ label: '🚫 Filter', title: 'Edit the word filter' });
  }

  async save() {
    this.words = this.input.value.split(',').map((w) => w.trim()).filter(Boolean).slice(0, 200);
    await this.api.storage.set('words', JSON.stringify(this.words));
    const n = await this.api.chat.setFilter(this.words);
    this.status.textContent = `${n} words filtered`;
  }

  async onToolbarClick() {
    this.open = !this.open;
    if (this.open) await this.api.ui.showPanel({ height: 70, title: 'Word filter' });
    else await this.api.ui.hidePanel();
  }
}
