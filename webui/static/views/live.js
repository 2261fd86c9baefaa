// The Live view: the mesh's live rooms, going live (camera, microphone or
// screen, published over WHIP to this node), watching over WHEP from this
// node, and the room's chat beside the video.
import { h, shortID, countRead, freshness } from '../dom.js';
import { t, plural } from '../i18n/index.js';
import { getJSON, sendJSON, failure, served } from '../api.js';
import { formatSince } from '../format.js';

// el is h with event listeners: attributes named on<event> whose value is
// a function are added with addEventListener (the page's CSP forbids
// inline handlers).
function el(tag, attrs = {}, ...children) {
  const events = [];
  const rest = {};
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on') && typeof v === 'function') events.push([k.slice(2), v]);
    else rest[k] = v;
  }
  const e = h(tag, rest, ...children);
  for (const [name, fn] of events) e.addEventListener(name, fn);
  return e;
}

// gathered waits until pc has its ICE candidates (the node takes one
// offer, no trickle), or two seconds.
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') resolve();
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, 2000);
  });
}

// negotiate posts pc's offer to a WHIP or WHEP URL and applies the answer;
// it returns the session's Location.
async function negotiate(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
  if (!res.ok) throw await failure(res);
  const location = res.headers.get('Location');
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  } catch (err) {
    // pc was closed while the offer was on its way (the user went to
    // another room): the node's session would wait for an ICE timeout.
    if (location) fetch(location, { method: 'DELETE' }).catch(() => {});
    throw err;
  }
  return location;
}

async function capture(source, mic) {
  if (source === 'screen') {
    const s = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: mic });
    return s;
  }
  return navigator.mediaDevices.getUserMedia({ video: source === 'camera', audio: mic });
}

export default {
  id: 'live',
  title: 'nav.live',

  // available says whether the node runs live rooms.
  available: () => served('api/live/rooms'),

  mount(root, { events, onLang, toast }) {
    let rooms = null;
    let self = null;
    let watching = null; // {room, pc, location}
    let hosting = null; // {room, pc, stream, location, token, url}
    let messages = [];
    let tree = null;
    const video = el('video', { id: 'live-video', autoplay: true, playsinline: true, controls: true });
    const preview = el('video', { id: 'live-preview', autoplay: true, playsinline: true, muted: true });
    preview.muted = true;

    getJSON('api/node').then((n) => { self = n.id; render(); }).catch(() => {});

    // Every chat event reads the messages again, so reads overlap and an
    // older answer may come last: of the reads begun, only the newest
    // answer read so far is shown. The same goes for the tree's polls.
    const chatFresh = freshness();
    async function loadChat() {
      const room = watching?.room || hosting?.room;
      if (!room?.chat) {
        chatFresh.touch(); // reads on their way are of another room
        messages = [];
        return;
      }
      const ticket = chatFresh.begin();
      let got;
      try {
        got = await getJSON(`api/channels/${room.chat}/messages?limit=50`);
      } catch {
        got = [];
      }
      countRead(root, 'readLiveChat');
      if (!ticket.fresh()) return;
      messages = got;
      render();
    }

    // shownRoom is the room whose chat and tree are shown. When the room
    // changes they go at once, and reads of the other room on their way
    // are dropped: its chat would show in this room's pane.
    let shownRoom = null;
    function roomChanged() {
      const room = watching?.room || hosting?.room || null;
      if ((room?.id ?? null) === shownRoom) return;
      shownRoom = room?.id ?? null;
      messages = [];
      tree = null;
      chatFresh.touch();
      treeFresh.touch();
    }

    async function watch(room) {
      stopWatching();
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const stream = new MediaStream();
      pc.ontrack = (e) => {
        stream.addTrack(e.track);
        video.srcObject = stream;
      };
      const w = { room, pc, location: null };
      watching = w;
      roomChanged();
      // The connection, for a look at its stats in the console (and tests).
      video.peer = pc;
      render();
      // The user may go to another room while the offer is on its way:
      // what comes back then is this room's, not the one now watched.
      let location;
      try {
        location = await negotiate(pc, `api/live/rooms/${room.id}/whep`);
      } catch (err) {
        if (watching !== w) return;
        toast(t('live.watchFailed', { msg: err.message }));
        stopWatching();
        return;
      }
      if (watching !== w) {
        if (location) fetch(location, { method: 'DELETE' }).catch(() => {});
        return;
      }
      w.location = location;
      if (room.chat) sendJSON('POST', `api/channels/${room.chat}/join`).catch(() => {});
      loadChat();
      refreshTree();
    }

    function stopWatching() {
      if (!watching) return;
      watching.pc.close();
      if (watching.location) fetch(watching.location, { method: 'DELETE' }).catch(() => {});
      watching = null;
      roomChanged();
      video.srcObject = null;
      render();
    }

    const treeFresh = freshness();
    async function refreshTree() {
      const room = watching?.room || hosting?.room;
      if (!room) return;
      const ticket = treeFresh.begin();
      let got;
      try {
        got = await getJSON(`api/live/rooms/${room.id}/tree`);
      } catch {
        got = null;
      }
      countRead(root, 'readTree');
      if (!ticket.fresh()) return;
      tree = got;
      render();
    }
    const treeTimer = setInterval(refreshTree, 2000);

    async function goLive(form) {
      const title = form.querySelector('#live-title').value.trim();
      const description = form.querySelector('#live-desc').value.trim();
      const source = form.querySelector('#live-source').value;
      const mic = form.querySelector('#live-mic').checked;
      const cover = form.querySelector('#live-cover').files[0];
      if (!title) return;
      let stream = null;
      if (source !== 'obs') {
        try {
          stream = await capture(source, mic);
        } catch (err) {
          toast(t('live.captureFailed', { msg: err.message }));
          return;
        }
      }
      let room;
      try {
        room = await sendJSON('POST', 'api/live/rooms', { title, description });
        if (cover) {
          await fetch(`api/live/rooms/${room.id}/cover`, { method: 'PUT', body: cover });
        }
      } catch (err) {
        toast(t('live.createFailed', { msg: err.message }));
        return;
      }
      hosting = { room, stream, pc: null, location: null, token: room.whip_token, url: room.whip_url };
      roomChanged();
      if (stream) {
        preview.srcObject = stream;
        const pc = new RTCPeerConnection();
        for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly' });
        hosting.pc = pc;
        try {
          hosting.location = await negotiate(pc, `api/live/rooms/${room.id}/whip`, room.whip_token);
        } catch (err) {
          toast(t('live.publishFailed', { msg: err.message }));
        }
      }
      loadChat();
      render();
    }

    async function endLive() {
      if (!hosting) return;
      const { room, pc, stream } = hosting;
      hosting = null;
      roomChanged();
      if (pc) pc.close();
      if (stream) for (const tr of stream.getTracks()) tr.stop();
      preview.srcObject = null;
      try {
        await sendJSON('DELETE', `api/live/rooms/${room.id}`);
      } catch (err) {
        toast(err.message);
      }
      render();
    }

    async function post(form) {
      const room = watching?.room || hosting?.room;
      const input = form.querySelector('input');
      const text = input.value.trim();
      if (!room?.chat || !text) return;
      input.value = '';
      try {
        await sendJSON('POST', `api/channels/${room.chat}/messages`, { text });
      } catch (err) {
        toast(err.message);
      }
      loadChat();
    }

    function roomCard(r, now) {
      const [since, sinceTitle] = formatSince(r.since, now);
      return el('li', { class: 'card live-room', dataset: { id: r.id } },
        r.has_cover ? el('img', { class: 'live-cover', src: `api/live/rooms/${r.id}/cover`, alt: '' })
          : el('div', { class: 'live-cover empty-icon', 'aria-hidden': 'true' }, '▶'),
        el('div', { class: 'live-meta' },
          el('h3', { class: 'live-title' }, r.title),
          r.description && el('p', { class: 'muted' }, r.description),
          el('p', { class: 'muted' },
            t('live.by', { host: r.host_name || shortID(r.host) }), ' · ',
            el('span', { class: 'live-viewers' }, plural('live.viewers', r.viewers)), ' · ',
            el('span', { title: sinceTitle }, since)),
          el('button', { class: 'btn live-watch', type: 'button', onclick: () => watch(r) }, t('live.watch')),
          r.host === self && el('button', { class: 'btn', type: 'button', onclick: () => sendJSON('DELETE', `api/live/rooms/${r.id}`).catch((e) => toast(e.message)) }, t('live.end'))));
    }

    function chatPane() {
      const room = watching?.room || hosting?.room;
      if (!room?.chat) return null;
      return el('div', { class: 'card live-chat' },
        el('h2', {}, t('live.chat')),
        el('ul', { class: 'live-messages' }, messages.map((m) => el('li', {},
          el('strong', {}, (m.guest ? t('chat.guestOf', { name: m.guest, node: m.author_name || shortID(m.author || '') }) : (m.author_name || shortID(m.author || ''))) + ': '), m.text ?? m.body ?? ''))),
        el('form', { onsubmit: (e) => { e.preventDefault(); post(e.target); } },
          el('input', { type: 'text', placeholder: t('live.say'), maxlength: 1000 }),
          el('button', { class: 'btn', type: 'submit' }, t('live.send'))));
    }

    function render() {
      const now = Date.now();
      const list = rooms || [];
      const form = el('form', { class: 'card live-form', id: 'live-form', onsubmit: (e) => { e.preventDefault(); goLive(e.target); } },
        el('h2', {}, t('live.create')),
        el('input', { id: 'live-title', type: 'text', placeholder: t('live.titleField'), maxlength: 120, required: true }),
        el('input', { id: 'live-desc', type: 'text', placeholder: t('live.descField'), maxlength: 2000 }),
        el('label', {}, t('live.cover'), ' ', el('input', { id: 'live-cover', type: 'file', accept: 'image/*' })),
        el('select', { id: 'live-source' },
          el('option', { value: 'camera' }, t('live.camera')),
          el('option', { value: 'screen' }, t('live.screen')),
          el('option', { value: 'audio' }, t('live.micOnly')),
          el('option', { value: 'obs' }, t('live.obs'))),
        el('label', {}, el('input', { id: 'live-mic', type: 'checkbox', checked: true }), ' ', t('live.mic')),
        el('button', { class: 'btn primary', id: 'live-go', type: 'submit' }, t('live.goLive')));
      const host = hosting && el('div', { class: 'card live-hosting', id: 'live-hosting' },
        el('h2', {}, t('live.onAir', { title: hosting.room.title })),
        preview,
        el('p', {}, t('live.whip'), ' ', el('code', { id: 'live-whip-url' }, hosting.url)),
        el('p', {}, t('live.token'), ' ', el('code', { id: 'live-whip-token' }, hosting.token)),
        el('button', { class: 'btn', type: 'button', id: 'live-stop', onclick: endLive }, t('live.stop')));
      const player = watching && el('div', { class: 'card live-player', id: 'live-player' },
        el('h2', {}, watching.room.title),
        video,
        tree && el('p', { class: 'muted', id: 'live-tree' }, tree.host ? t('live.treeHost', { n: tree.children.length })
          : t('live.treeRelay', { parent: shortID(tree.parent || ''), depth: tree.depth, n: tree.children.length })),
        el('button', { class: 'btn', type: 'button', onclick: stopWatching }, t('live.leave')));
      const index = rooms === null ? el('p', { class: 'muted loading' }, t('node.loading'))
        : list.length === 0 ? el('div', { class: 'empty', id: 'live-empty' }, el('h2', {}, t('live.empty')))
          : el('ul', { class: 'live-rooms', id: 'live-rooms' }, list.map((r) => roomCard(r, now)));
      root.replaceChildren(
        el('div', { class: 'view-head' }, el('h1', {}, t('live.title'))),
        el('div', { class: 'live-main' }, player, host, chatPane()),
        index, form);
    }

    render();
    const offLive = events.on('live', (data) => {
      rooms = Array.isArray(data) ? data : [];
      if (watching && !rooms.some((r) => r.id === watching.room.id)) stopWatching();
      render();
    });
    const offChat = events.on('chat', () => loadChat());
    const offLang = onLang(render);
    return () => {
      offLive();
      offChat();
      offLang();
      clearInterval(treeTimer);
      stopWatching();
    };
  },
};
